/**
 * Bad input against the indexer and the proxy. fast-check mutates valid layers (byte flips, cuts, splices
 * in tar headers and gzip streams) and every outcome must be a zTOC, a skipped layer or an error with a
 * code — never another exception or a hang. Hand-written cases: bad header checksums, negative and huge
 * sizes, path traversal names, symlink loops, hard links to missing targets, deep nesting, and a gzip
 * bomb that the --max-layer-uncompressed bound (reachable from the proxy config) turns into a skipped
 * layer. Against the proxy: malformed, oversized and unknown-type manifests from upstream get the
 * upstream's bytes or a clean OCI error, and the proxy stays up.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { randomBytes, startProxy, tempDir, writeTar, type Proxy, type TarEntry } from '../harness/index.js';
import { indexLayer, type LayerIndexResult } from '../../src/indexer/layer-indexer.js';
import { MediaType } from '../../src/oci/media-types.js';
import { ACCEPT, get, judge, sha } from './common.js';
import { startHttpUpstream, type HttpUpstream } from './http-upstream.js';
import { record, tally } from './summary.js';

const HAVE_DIST = existsSync(new URL('../../dist/cli.js', import.meta.url));
const t = tally();

async function* chunks(b: Uint8Array, size = 7000): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** Runs the indexer; returns the result or the error code; fails the test on an uncoded exception or a hang. */
async function outcome(blob: Uint8Array, mediaType: string, extra: Record<string, number> = {}): Promise<LayerIndexResult | string> {
  t.faultsInjected++;
  const run = indexLayer(chunks(blob), { mediaType, spanSize: 16 * 1024, engine: 'js', ...extra }).then(
    (r) => r,
    (err: unknown) => {
      const code = (err as { code?: unknown })?.code;
      if (typeof code !== 'string') {
        t.crashes++;
        throw err;
      }
      return code;
    },
  );
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race([run, new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), 10_000)))]);
  clearTimeout(timer);
  if (res === 'hang') t.hangs++;
  assert.notEqual(res, 'hang');
  return res;
}

const TAR = MediaType.ociLayerTar ?? 'application/vnd.oci.image.layer.v1.tar';
const GZ = MediaType.ociLayerGzip ?? 'application/vnd.oci.image.layer.v1.tar+gzip';

const baseTar = writeTar([
  { type: 'dir', path: 'a' },
  { type: 'file', path: 'a/one.bin', content: randomBytes(40_000, 1) },
  { type: 'file', path: 'a/two.txt', content: Buffer.from('hello\n'.repeat(500)) },
  { type: 'symlink', path: 'a/link', target: 'one.bin' },
]);

describe('bad input: indexer', () => {
  after(() => {
    if (!HAVE_DIST) record('bad-input', t);
  });

  test('fast-check: mutated tars and gzip streams give a zTOC, a skip or a coded error', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat()),
        async (gz, flips, cut) => {
          const src = Buffer.from(gz ? gzipSync(baseTar) : baseTar);
          for (const [at, x] of flips) src[at % src.length] = (src[at % src.length] as number) ^ x;
          const blob = cut === null ? src : src.subarray(0, cut % src.length);
          await outcome(blob, gz ? GZ : TAR);
        },
      ),
      { numRuns: 150, seed: 4242 },
    );
    assert.equal(t.crashes + t.hangs, 0);
  });

  test('hand-written tar cases', async () => {
    const header = (name: string, size: string, type = '0', checksumOk = true): Buffer => {
      const h = Buffer.alloc(512);
      h.write(name, 0);
      h.write('0000644\0', 100);
      h.write('0000000\0', 108);
      h.write('0000000\0', 116);
      h.write(size, 124);
      h.write('00000000000\0', 136);
      h[156] = type.charCodeAt(0);
      h.write('ustar\x0000', 257);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(`${(checksumOk ? sum : sum + 1).toString(8).padStart(6, '0')}\0 `, 148);
      return h;
    };
    const end = Buffer.alloc(1024);
    const cases: Array<[string, Buffer]> = [
      ['bad checksum', Buffer.concat([header('f', '00000000012\0', '0', false), Buffer.alloc(512), end])],
      ['negative size', Buffer.concat([header('f', '-0000000012\0'), Buffer.alloc(512), end])],
      ['huge size', Buffer.concat([header('f', '77777777777\0'), Buffer.alloc(512), end])],
      ['base-256 huge size', Buffer.concat([(() => { const h = header('f', '00000000000\0'); h.fill(0xff, 124, 136); return h; })(), end])],
      ['garbage octal', Buffer.concat([header('f', 'zzzzzzzzzzz\0'), end])],
    ];
    const entries: Array<[string, TarEntry[]]> = [
      ['path traversal', [{ type: 'file', path: '../../etc/passwd', content: Buffer.from('x') }, { type: 'file', path: '/abs/file', content: Buffer.from('y') }, { type: 'file', path: 'a/../../b', content: Buffer.from('z') }]],
      ['symlink loop', [{ type: 'symlink', path: 'l1', target: 'l2' }, { type: 'symlink', path: 'l2', target: 'l1' }, { type: 'symlink', path: 'self', target: 'self' }]],
      ['hard link to a missing target', [{ type: 'hardlink', path: 'h', target: 'missing/file' }]],
      ['deep nesting', [{ type: 'file', path: `${Array.from({ length: 400 }, (_, i) => `d${i}`).join('/')}/leaf`, content: Buffer.from('deep') }]],
    ];
    for (const [name, es] of entries) cases.push([name, writeTar(es)]);
    for (const [name, tar] of cases) {
      for (const [blob, mt] of [[tar, TAR], [gzipSync(tar), GZ]] as const) {
        const r = await outcome(blob, mt);
        if (typeof r !== 'string' && r.status === 'indexed') assert.ok(r.ztoc.length > 0, name);
      }
    }
  });

  test('a gzip bomb is a skipped layer under the configured bound, in bounded memory', async () => {
    const bomb = gzipSync(Buffer.alloc(200 * 1024 * 1024), { level: 9 });
    const rss0 = process.memoryUsage().rss;
    const r = await outcome(bomb, GZ, { maxUncompressedSize: 32 * 1024 * 1024 });
    assert.ok(typeof r !== 'string' && r.status === 'skipped' && r.code === 'TOO_LARGE', JSON.stringify(r));
    assert.ok(process.memoryUsage().rss - rss0 < 256 * 2 ** 20);
  });
});

describe('bad input: proxy', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  const work = tempDir('faults-badinput');
  let up: HttpUpstream;
  let proxy: Proxy;
  const docs = new Map<string, { type: string; body: Buffer }>();

  before(async () => {
    const manyLayers = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig ?? 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: Array.from({ length: 5000 }, (_, i) => ({ mediaType: GZ, digest: `sha256:${i.toString(16).padStart(64, '0')}`, size: 20_000_000 })) };
    docs.set('malformed', { type: MediaType.ociManifest, body: Buffer.from('{"schemaVersion": 2, "layers": [ {') });
    docs.set('notjson', { type: MediaType.ociIndex, body: randomBytes(3000, 9) });
    docs.set('unknown', { type: 'application/x-weird', body: Buffer.from('{}') });
    docs.set('manylayers', { type: MediaType.ociManifest, body: Buffer.from(JSON.stringify(manyLayers)) });
    docs.set('oversized', { type: MediaType.ociManifest, body: Buffer.from(JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(5 * 1024 * 1024) })) });
    docs.set('negsize', { type: MediaType.ociManifest, body: Buffer.from(JSON.stringify({ ...manyLayers, layers: [{ mediaType: GZ, digest: `sha256:${'b'.repeat(64)}`, size: -5 }] })) });
    up = await startHttpUpstream(undefined, (q) => {
      const m = /\/manifests\/(.+)$/.exec(q.path);
      if (q.path === '/v2/') return { status: 200, body: '{}' };
      if (!m) return { status: 404, body: '{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}' };
      const ref = m[1]!;
      const d = docs.get(ref) ?? [...docs.values()].find((x) => sha(x.body) === ref);
      if (!d) return { status: 404, body: '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}' };
      return { status: 200, headers: { 'Content-Type': d.type, 'Docker-Content-Digest': sha(d.body) }, body: d.body };
    });
    proxy = await startProxy({ upstream: up.url, dir: join(work.path, 'p'), extraArgs: ['--cache-dir', join(work.path, 'cache'), '--index-wait', '10', '--log-level', 'warn'] });
  });
  after(async () => {
    t.faultsInjected += up?.injected ?? 0;
    t.crashes += proxy?.daemon.exited ? 1 : 0;
    record('bad-input', t);
    await proxy?.stop();
    await up?.close();
    work.remove();
  });

  test('malformed, oversized, unknown-type and absurd manifests: upstream bytes or a clean error', async () => {
    for (const [name, d] of docs) {
      for (const method of ['GET', 'HEAD']) {
        const r = await get(`${proxy.url}/v2/bad/x/manifests/${name}`, { accept: ACCEPT }, 20_000, method);
        if (r.status === 200 && method === 'GET') assert.ok(judge(t, r, d.body), `${name}: 200 means the upstream's own bytes`);
        else judge(t, r, undefined);
        assert.notEqual(r.status, -1, `${name} hung`);
      }
    }
    assert.equal((await get(`${proxy.url}/healthz`)).status, 200);
    assert.ok(!proxy.daemon.exited);
    assert.equal(t.wrongBytes, 0);
  });
});
