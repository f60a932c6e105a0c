/**
 * Smoke tests of the shared test harness (test/harness): every daemon starts, answers and stops by PID;
 * every fixture image builds, pushes and reads back byte for byte; containerd pulls from the test registry
 * and runs the python fixture under runc.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/media-types.js';
import {
  startDaemon, startRegistry, startRedis, redisCommand, startContainerd, pidGone, tempDir, runCommand, writeTar,
  smallImage, mixedImage, multiPlatformImage, pythonImage, pushImage, skopeoPush, inspectRaw, freePort,
  type Registry,
} from './harness/index.js';

describe('process', () => {
  test('a daemon that exits early fails with its log tail', async () => {
    const dir = tempDir('proc');
    await assert.rejects(
      startDaemon({ name: 'early', cmd: 'sh', args: ['-c', 'echo boom-marker; exit 3'], logFile: join(dir.path, 'log'), ready: () => false }),
      (e: Error) => /exited before it was ready/.test(e.message) && /boom-marker/.test(e.message),
    );
    dir.remove();
  });

  test('readiness timeout kills the daemon; stop escalates to SIGKILL', async () => {
    const dir = tempDir('proc');
    const port = await freePort();
    await assert.rejects(
      startDaemon({ name: 'slow', cmd: 'sleep', args: ['30'], logFile: join(dir.path, 'a'), ready: { tcpPort: port }, timeoutMs: 300 }),
      /not ready after 300 ms/,
    );
    const d = await startDaemon({
      name: 'stubborn', cmd: 'sh', args: ['-c', 'trap "" TERM; echo up; exec sleep 30'], logFile: join(dir.path, 'b'),
      ready: { logMatch: /^up$/m }, graceMs: 300,
    });
    assert.equal(pidGone(d.pid), false);
    const info = await d.stop();
    assert.equal(info.signal, 'SIGKILL');
    assert.equal(pidGone(d.pid), true);
    dir.remove();
  });
});

test('tar writer output reads back with python tarfile', async () => {
  const dir = tempDir('tar');
  const long = `deep/${'n'.repeat(120)}/file.txt`;
  writeFileSync(join(dir.path, 't.tar'), writeTar([
    { type: 'dir', path: 'deep' },
    { type: 'file', path: long, content: Buffer.from('abc'), mode: 0o750 },
    { type: 'symlink', path: 'deep/ln', target: 'x'.repeat(150) },
    { type: 'hardlink', path: 'deep/hl', target: long },
  ], { paxGlobal: { comment: 'hello' } }));
  const py = 'import tarfile,sys,json; t=tarfile.open(sys.argv[1]); print(json.dumps([t.pax_headers, [[m.name, m.type.decode(), m.size, m.linkname, m.mode] for m in t]]))';
  const out = JSON.parse((await runCommand('python3', ['-c', py, join(dir.path, 't.tar')])).stdout);
  assert.deepEqual(out, [{ comment: 'hello' }, [
    ['deep', '5', 0, '', 0o755],
    [long, '0', 3, '', 0o750],
    ['deep/ln', '2', 0, 'x'.repeat(150), 0o777],
    ['deep/hl', '1', 0, long, 0o644],
  ]]);
  dir.remove();
});

test('redis: PING, SET/GET, stop by PID', async () => {
  const r = await startRedis();
  assert.equal(await redisCommand(r.port, ['PING']), 'PONG');
  assert.equal(await redisCommand(r.port, ['SET', 'k', 'v1']), 'OK');
  assert.equal(await redisCommand(r.port, ['GET', 'k']), 'v1');
  const info = String(await redisCommand(r.port, ['INFO', 'server']));
  assert.match(info, new RegExp(`process_id:${r.daemon.pid}\\r\\n`), 'the recorded PID is redis-server itself');
  await r.stop();
  assert.equal(pidGone(r.daemon.pid), true);
});

describe('registry and images', () => {
  let reg: Registry;
  after(async () => reg?.stop());

  test('htpasswd auth, skopeo push of smallImage, inspect, access log bytes', async () => {
    reg = await startRegistry({ auth: { htpasswd: { user: 'tester', password: 's3cret' } } });
    assert.equal((await fetch(`${reg.url}/v2/`)).status, 401);
    assert.equal((await fetch(`${reg.url}/v2/`, { headers: { authorization: reg.authorization! } })).status, 200);
    const img = await smallImage();
    assert.equal(img.manifest.mediaType, undefined, 'umoci manifests carry no mediaType');
    assert.equal(img.layers.length, 2);
    await skopeoPush(img, { dest: `${reg.host}/test/small:v1`, creds: 'tester:s3cret' });
    assert.equal(await inspectRaw(`${reg.host}/test/small:v1`, 'tester:s3cret'), img.manifestBytes.toString('utf8'));

    const layer = img.layers[1]!;
    const from = (await reg.settle(), reg.requests().length);
    const url = `${reg.url}/v2/test/small/blobs/${layer.descriptor.digest}`;
    const full = Buffer.from(await (await fetch(url, { headers: { authorization: reg.authorization! } })).arrayBuffer());
    assert.deepEqual(full, layer.blob);
    const part = await fetch(url, { headers: { authorization: reg.authorization!, range: 'bytes=0-9' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), layer.blob.subarray(0, 10));
    await reg.settle();
    const mine = reg.requests().slice(from);
    assert.deepEqual(mine.map((e) => [e.method, e.status, e.bytes, e.blob, e.repo]), [
      ['GET', 200, layer.blob.length, layer.descriptor.digest, 'test/small'],
      ['GET', 206, 10, layer.descriptor.digest, 'test/small'],
    ]);
    assert.equal(reg.blobBytes(layer.descriptor.digest, from), layer.blob.length + 10);
  });

  test('mixedImage pushes byte-exact and has one layer per indexing case', async () => {
    const img = await mixedImage();
    const { roles, layers } = img;
    const min = 64 * 1024;
    assert.ok(layers[roles.large]!.blob.length >= min && layers[roles.large]!.descriptor.mediaType === MediaType.ociLayerGzip);
    assert.equal(layers[roles.uncompressed]!.descriptor.mediaType, MediaType.ociLayerTar);
    assert.ok(layers[roles.uncompressed]!.blob.length >= min);
    assert.equal(String.fromCharCode(layers[roles.paxGlobal]!.tar[156]!), 'g');
    assert.ok(layers[roles.paxGlobal]!.blob.length >= min);
    const mm = layers[roles.multiMember]!;
    assert.ok(mm.blob.length >= min);
    assert.notDeepEqual(mm.blob, gzipSync(mm.tar), 'multi-member blob is not a single member');
    assert.ok(mm.blob.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), 10) > 0, 'a second gzip member header follows');
    assert.ok(layers[roles.small]!.blob.length < min);
    for (const l of layers) {
      assert.equal(l.descriptor.digest, sha256(l.blob));
      assert.equal(l.diffId, sha256(l.tar));
      if (l.descriptor.mediaType.endsWith('gzip')) assert.deepEqual(gunzipSync(l.blob), l.tar);
    }
    await pushImage(img, { registry: reg.url, repo: 'test/mixed', authorization: reg.authorization });
    const accept = { authorization: reg.authorization!, accept: MediaType.ociManifest };
    const m = await fetch(`${reg.url}/v2/test/mixed/manifests/mixed`, { headers: accept });
    assert.deepEqual(Buffer.from(await m.arrayBuffer()), img.manifestBytes);
    for (const d of [img.manifest.config, ...img.manifest.layers]) {
      const res = await fetch(`${reg.url}/v2/test/mixed/blobs/${d.digest}`, { headers: accept });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(body.length, d.size);
      assert.equal(sha256(body), d.digest);
    }
  });

  test('multiPlatformImage: skopeo --all pushes the index with both platforms', async () => {
    const idx = await multiPlatformImage();
    await skopeoPush(idx, { dest: `${reg.host}/test/multi:v1`, all: true, creds: 'tester:s3cret' });
    const raw = await inspectRaw(`${reg.host}/test/multi:v1`, 'tester:s3cret');
    assert.equal(raw, idx.indexBytes.toString('utf8'));
    const parsed = JSON.parse(raw) as { manifests: { platform: { architecture: string; variant?: string } }[] };
    assert.deepEqual(parsed.manifests.map((d) => [d.platform.architecture, d.platform.variant]), [['amd64', undefined], ['arm64', 'v8']]);
    for (const img of idx.images) {
      assert.equal(await inspectRaw(`${reg.host}/test/multi@${img.descriptor.digest}`, 'tester:s3cret'), img.manifestBytes.toString('utf8'));
    }
  });
});

test('containerd: ctr version, pull smallImage, run pythonImage', { timeout: 60_000 }, async () => {
  const reg = await startRegistry();
  const ctd = await startContainerd({ proxyPlugins: { ghost: '/nonexistent/ghost.sock' } });
  try {
    const v = await ctd.ctr(['version']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /Server:[\s\S]*Version:\s+1\.6/);
    const plugins = await ctd.ctr(['plugins', 'ls']);
    assert.match(plugins.stdout, /io\.containerd\.snapshotter\.v1\s+ghost\s+-\s+ok/);

    const small = await smallImage();
    await skopeoPush(small, { dest: `${reg.host}/test/small:v1` });
    const pull = await ctd.ctr(['image', 'pull', '--plain-http', `${reg.host}/test/small:v1`]);
    assert.equal(pull.code, 0, pull.stderr);
    const ls = await ctd.ctr(['image', 'ls', '-q']);
    assert.deepEqual(ls.stdout.trim().split('\n'), [`${reg.host}/test/small:v1`]);

    const py = await pythonImage();
    await pushImage(py, { registry: reg.url, repo: 'test/python' });
    const ref = `${reg.host}/test/python:python`;
    assert.equal((await ctd.ctr(['image', 'pull', '--plain-http', ref])).code, 0);
    const run = await ctd.ctr(['run', '--rm', ref, 'harness-py']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), '{"ok": 1}');
  } finally {
    await ctd.stop();
    await reg.stop();
  }
  assert.equal(pidGone(ctd.daemon.pid), true);
  assert.equal(pidGone(reg.daemon.pid), true);
});
