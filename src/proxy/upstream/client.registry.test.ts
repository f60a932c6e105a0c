/** UpstreamClient against a real anonymous docker-registry 2.8 (and one over TLS). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OciError } from '../../oci/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { MediaType } from '../../oci/media-types.js';
import { sha256 } from '../../oci/digest.js';
import { normalizeUpstream, type UpstreamsConfig } from './config.js';
import { UpstreamClient } from './client.js';
import { resolveRoute } from './route.js';
import { makeSelfSignedCert, pushTestImage, startFakeServer, startRegistry, type FakeServer, type PushedImage, type TestRegistry } from './testing/index.js';

async function caught(p: Promise<unknown>): Promise<OciError> {
  try { await p; } catch (e) { return e as OciError; }
  throw new Error('expected a rejection');
}
const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

describe('UpstreamClient on an anonymous docker-registry', () => {
  let reg: TestRegistry;
  let img: PushedImage;
  let client: UpstreamClient;
  before(async () => {
    reg = await startRegistry();
    img = await pushTestImage(reg, 'test/img');
    for (let i = 0; i < 5; i++) await reg.pushManifest('test/img', `t${i}`, img.ociManifest, MediaType.ociManifest);
    client = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }));
  });
  after(async () => { await client?.close(); await reg?.stop(); });

  test('OCI manifest by tag: type from Content-Type, exact bytes, digest', async () => {
    const m = await client.getManifest('test/img', 'oci', { accept: [MediaType.dockerManifest] });
    assert.equal(m.status, 200);
    assert.equal(m.mediaType, MediaType.ociManifest);
    assert.deepEqual(Buffer.from(m.bytes!), Buffer.from(img.ociManifest));
    assert.equal(m.digest, img.ociDigest);
    assert.equal(m.size, img.ociManifest.length);
  });
  test('docker manifest by digest is verified and byte-exact', async () => {
    const m = await client.getManifest('test/img', img.dockerDigest, { accept: [] });
    assert.equal(m.mediaType, MediaType.dockerManifest);
    assert.equal(m.digest, img.dockerDigest);
    assert.deepEqual(Buffer.from(m.bytes!), Buffer.from(img.dockerManifest));
  });
  test('HEAD manifest gives digest, type and size without bytes', async () => {
    const m = await client.getManifest('test/img', 'oci', { method: 'HEAD' });
    assert.deepEqual(m, { status: 200, mediaType: MediaType.ociManifest, digest: img.ociDigest, size: img.ociManifest.length });
  });
  test('whole blob streams back byte-exact', async () => {
    const b = await client.getBlob('test/img', img.layerDigest);
    assert.equal(b.status, 200);
    assert.equal(b.rangeIgnored, false);
    assert.equal(b.headers['content-length'], String(img.layer.length));
    const got = await buffer(b.body);
    assert.equal(sha256(got), img.layerDigest);
    assert.ok(got.equals(img.layer));
  });
  test('range requests come back 206 with Content-Range and the exact slice', async () => {
    for (const [s, e] of [[0, 0], [0, 9], [1000, 70_000], [img.layer.length - 7, img.layer.length - 1]] as const) {
      const b = await client.getBlob('test/img', img.layerDigest, { range: `bytes=${s}-${e}` });
      assert.equal(b.status, 206);
      assert.equal(b.rangeIgnored, false);
      assert.equal(b.headers['content-range'], `bytes ${s}-${e}/${img.layer.length}`);
      assert.ok((await buffer(b.body)).equals(img.layer.subarray(s, e + 1)));
    }
  });
  test('headBlob', async () => {
    const h = await client.headBlob('test/img', img.configDigest);
    assert.equal(h.size, img.config.length);
    assert.equal(h.digest, img.configDigest);
  });
  test('listTags (docker-registry 2.8 ignores n; Link parsing is tested with a fake upstream)', async () => {
    const all = await client.listTags('test/img');
    assert.deepEqual([...all.tags].sort(), ['docker', 'oci', 't0', 't1', 't2', 't3', 't4']);
    assert.equal(all.name, 'test/img');
    assert.equal(all.next, undefined);
  });
  test('ping', async () => {
    assert.deepEqual(await client.ping(), { reachable: true, status: 200 });
  });
  test('404s map to MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN', async () => {
    await assert.rejects(client.getManifest('test/img', 'nope'), code('MANIFEST_UNKNOWN'));
    await assert.rejects(client.getManifest('test/img', 'nope', { method: 'HEAD' }), code('MANIFEST_UNKNOWN'));
    await assert.rejects(client.getManifest('test/img', sha256('x')), code('MANIFEST_UNKNOWN'));
    const blob = await caught(client.getBlob('test/img', sha256('nothing')));
    assert.equal(blob.code, 'BLOB_UNKNOWN');
    assert.equal(blob.status, 404);
    await assert.rejects(client.headBlob('test/img', sha256('nothing')), code('BLOB_UNKNOWN'));
    await assert.rejects(client.listTags('no/such'), code('NAME_UNKNOWN'));
    await assert.rejects(client.getManifest('test/img', 'bad tag!'), code('MANIFEST_INVALID'));
    await assert.rejects(client.getBlob('test/img', 'sha256:zz'), code('DIGEST_INVALID'));
  });

  test('a name that is not a configured upstream never produces a connection', async () => {
    const trap: FakeServer = await startFakeServer((_q, res) => res.end('trap'));
    try {
      const config: UpstreamsConfig = { upstreams: [{ name: reg.host, url: reg.url }], defaultUpstream: reg.host };
      const viaPrefix = resolveRoute(config, `127.0.0.1/test/img`)!; // host-looking first component, not configured
      const viaNs = resolveRoute(config, 'test/img', trap.host)!;
      assert.equal(viaPrefix.upstream.origin, reg.url);
      assert.equal(viaNs.upstream.origin, reg.url);
      assert.throws(() => resolveRoute(config, `${trap.host}/test/img`), code('NAME_INVALID'));
      const c = new UpstreamClient(viaNs.upstream);
      await c.getManifest(viaNs.repository, 'oci');
      await assert.rejects(c.getManifest(viaPrefix.repository, 'oci'), code('MANIFEST_UNKNOWN')); // repo 127.0.0.1/test/img on the default
      await c.close();
      assert.equal(trap.connections, 0);
      assert.equal(trap.requests.length, 0);
    } finally {
      await trap.stop();
    }
  });
});

describe('UpstreamClient over TLS', () => {
  let dir: string;
  let reg: TestRegistry;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upstream-tls-'));
    const cert = makeSelfSignedCert(dir, 'registry');
    reg = await startRegistry({ tls: { certFile: cert.certFile, keyFile: cert.keyFile } });
    await reg.pushManifest('t/x', 'v1', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] })), MediaType.ociIndex);
  });
  after(async () => { await reg?.stop(); rmSync(dir, { recursive: true, force: true }); });

  test('an unknown CA is refused; the upstream caFile makes it trusted; http is never tried', async () => {
    assert.ok(reg.url.startsWith('https://'));
    const untrusted = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url, retry: { attempts: 1 } }));
    const err = await caught(untrusted.getManifest('t/x', 'v1'));
    assert.equal(err.code, 'UNAVAILABLE');
    await untrusted.close();
    const trusted = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url, caFile: join(dir, 'registry.crt') }));
    const m = await trusted.getManifest('t/x', 'v1');
    assert.equal(m.mediaType, MediaType.ociIndex);
    assert.deepEqual(JSON.parse(Buffer.from(m.bytes!).toString('utf8')).manifests, []);
    await trusted.close();
  });
});
