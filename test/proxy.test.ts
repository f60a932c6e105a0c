/**
 * The proxy end to end, against real parts: docker-registry 2.8 as the upstream, the built CLI
 * (`dist/cli.js serve`) as the proxy, skopeo and containerd's `ctr` as clients. Checks the SOCI chain as
 * soci-snapshotter resolves it, every span of every zTOC fetched through the proxy with Range against
 * the layer's real tar bytes, pulls by original digest, skips, and access control on a private upstream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  mixedImage, multiPlatformImage, pushImage, runCommand, startContainerd, startProxy, startRegistry, tempDir,
  type MixedImage, type Proxy, type Registry,
} from './harness/index.js';
import { verifySociChain } from '../src/indexer/soci/index.js';
import { ZtocReader } from '../src/indexer/reader.js';
import { parseIndex, parseManifest, marshalManifest } from '../src/oci/go-json.js';
import { Annotation, MediaType } from '../src/oci/media-types.js';

const HAVE_DIST = existsSync(new URL('../dist/cli.js', import.meta.url));
const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const r = await fetch(url, { headers });
  return { status: r.status, headers: r.headers, body: new Uint8Array(await r.arrayBuffer()) };
}

describe('proxy against docker-registry', { skip: HAVE_DIST ? false : 'run `npm run build` first (dist/cli.js missing)' }, () => {
  let registry: Registry;
  let proxy: Proxy;
  let mixed: MixedImage;
  const work = tempDir('proxy-test');

  before(async () => {
    registry = await startRegistry();
    mixed = await mixedImage();
    await pushImage(mixed, { registry: registry.url, repo: 'test/mixed', tag: 'latest' });
    const multi = await multiPlatformImage();
    await pushImage(multi, { registry: registry.url, repo: 'test/multi', tag: 'latest' });
    proxy = await startProxy({
      upstream: registry.url,
      dir: join(work.path, 'proxy'),
      extraArgs: ['--cache-dir', join(work.path, 'cache'), '--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--log-level', 'warn'],
    });
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('a tag answers the SOCI-enabled index, and the chain resolves as soci-snapshotter resolves it', async () => {
    const r = await get(`${proxy.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), MediaType.ociIndex);
    assert.equal(r.headers.get('docker-content-digest'), sha(r.body));
    const head = await fetch(`${proxy.url}/v2/test/mixed/manifests/latest`, { method: 'HEAD', headers: { accept: ACCEPT } });
    assert.equal(head.headers.get('docker-content-digest'), sha(r.body), 'HEAD and GET agree on the digest');
    assert.equal(head.headers.get('content-length'), String(r.body.length));

    const fetchByDigest = async (digest: string): Promise<Uint8Array | undefined> => {
      const m = await get(`${proxy.url}/v2/test/mixed/manifests/${digest}`, { accept: ACCEPT });
      if (m.status === 200) return m.body;
      const b = await get(`${proxy.url}/v2/test/mixed/blobs/${digest}`);
      return b.status === 200 ? b.body : undefined;
    };
    const platforms = await verifySociChain(r.body, fetchByDigest);
    assert.equal(platforms.length, 1);

    const index = parseIndex(r.body);
    const manifestDesc = index.manifests[0]!;
    const manifestBytes = (await fetchByDigest(manifestDesc.digest))!;
    const manifest = parseManifest(manifestBytes);
    const sociDigest = manifest.annotations?.[Annotation.sociIndexDigest];
    assert.ok(sociDigest, 'rewritten manifest carries the SOCI index digest');
    // §2.4: HEAD then GET of the SOCI index with the manifest media type, exact length and digest.
    const sh = await fetch(`${proxy.url}/v2/test/mixed/manifests/${sociDigest}`, { method: 'HEAD', headers: { accept: MediaType.ociManifest } });
    assert.equal(sh.status, 200);
    assert.equal(sh.headers.get('content-type'), MediaType.ociManifest);
    const sociBytes = (await fetchByDigest(sociDigest))!;
    assert.equal(sh.headers.get('content-length'), String(sociBytes.length));
    assert.equal(sha(sociBytes), sociDigest);
    const soci = parseManifest(sociBytes);
    assert.deepEqual(marshalManifest(soci), sociBytes, 'SOCI index bytes equal their Go-style re-serialization');
    assert.equal(soci.config.mediaType, MediaType.sociIndexV2);

    // Which layers got zTOCs: large gzip and uncompressed tar yes; PAX global, multi-member, small no.
    const indexed = new Set(soci.layers.map((l) => l.annotations?.[Annotation.imageLayerDigest]));
    const { roles } = mixed;
    assert.ok(indexed.has(mixed.layers[roles.large]!.descriptor.digest));
    assert.ok(indexed.has(mixed.layers[roles.uncompressed]!.descriptor.digest));
    assert.ok(!indexed.has(mixed.layers[roles.paxGlobal]!.descriptor.digest));
    assert.ok(!indexed.has(mixed.layers[roles.multiMember]!.descriptor.digest));
    assert.ok(!indexed.has(mixed.layers[roles.small]!.descriptor.digest));

    // Every span of every zTOC, fetched through the proxy with Range, restores the layer's real tar bytes.
    for (const zdesc of soci.layers) {
      const layerDigest = zdesc.annotations![Annotation.imageLayerDigest]!;
      const layer = mixed.layers.find((l) => l.descriptor.digest === layerDigest)!;
      const zbytes = (await get(`${proxy.url}/v2/test/mixed/blobs/${zdesc.digest}`)).body;
      assert.equal(sha(zbytes), zdesc.digest);
      const reader = ZtocReader.fromBytes(zbytes);
      const src = {
        read: async (start: number, end: number): Promise<Uint8Array> => {
          const res = await get(`${proxy.url}/v2/test/mixed/blobs/${layerDigest}`, { range: `bytes=${start}-${end - 1}` });
          assert.equal(res.status, 206, 'a ranged blob GET is answered 206');
          assert.equal(res.headers.get('content-range'), `bytes ${start}-${end - 1}/${layer.blob.length}`);
          return res.body;
        },
      };
      for (const span of reader.spans) {
        const data = await reader.readSpan(src, span.id);
        assert.ok(Buffer.from(data).equals(layer.tar.subarray(span.outStart, span.outEnd)), `span ${span.id} of ${layerDigest} restores the tar bytes`);
      }
      for (const e of reader.ztoc.toc.filter((x) => x.type === 'reg')) {
        const content = await reader.readFile(src, e);
        assert.ok(Buffer.from(content).equals(layer.tar.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)), e.name);
      }
    }
  });

  test('pull by original digest returns the original bytes; referrers list a v1 SOCI index', async () => {
    const r = await get(`${proxy.url}/v2/test/mixed/manifests/${mixed.descriptor.digest}`, { accept: ACCEPT });
    assert.equal(r.status, 200);
    assert.ok(Buffer.from(r.body).equals(mixed.manifestBytes));
    const refs = await get(`${proxy.url}/v2/test/mixed/referrers/${mixed.descriptor.digest}`);
    assert.equal(refs.status, 200);
    const idx = parseIndex(refs.body);
    assert.equal(idx.manifests.length, 1);
    assert.equal(idx.manifests[0]!.artifactType, MediaType.sociIndexV1);
  });

  test('skopeo inspect and copy through the proxy (every digest verified by skopeo)', async () => {
    const raw = (await runCommand('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${proxy.host}/test/multi:latest`])).stdout;
    const idx = parseIndex(Buffer.from(raw));
    const sociDescs = idx.manifests.filter((d) => d.artifactType === MediaType.sociIndexV2);
    assert.equal(sociDescs.length, 2, 'one SOCI index per platform');
    for (const s of sociDescs) {
      const at = idx.manifests.indexOf(s);
      const target = idx.manifests.findIndex((d) => d.digest === s.annotations?.[Annotation.imageManifestDigest]);
      assert.ok(target >= 0 && target < at, 'the image manifest comes before its SOCI index');
    }
    const out = join(work.path, 'copy');
    await runCommand('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${proxy.host}/test/mixed:latest`, `oci:${out}:mixed`]);
    await runCommand('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${proxy.host}/test/multi:latest`, `oci:${out}:multi`]);
  });

  test('ctr image pull --plain-http through the proxy', async () => {
    const ctrd = await startContainerd({ dir: join(work.path, 'containerd') });
    try {
      const r = await ctrd.ctr(['image', 'pull', '--plain-http', `${proxy.host}/test/mixed:latest`]);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await ctrd.stop();
    }
  });

  test('push is refused with 405 UNSUPPORTED and never forwarded', async () => {
    const before = registry.requests().length;
    const r = await fetch(`${proxy.url}/v2/test/mixed/blobs/uploads/`, { method: 'POST' });
    assert.equal(r.status, 405);
    const body = (await r.json()) as { errors: Array<{ code: string }> };
    assert.equal(body.errors[0]?.code, 'UNSUPPORTED');
    await registry.settle();
    assert.equal(registry.requests().slice(before).filter((e) => e.method === 'POST').length, 0);
  });
});

describe('proxy in front of a private registry', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  let registry: Registry;
  let proxy: Proxy;
  let mixed: MixedImage;
  const work = tempDir('proxy-private');

  before(async () => {
    registry = await startRegistry({ auth: { htpasswd: { user: 'alice', password: 's3cret-pw' } } });
    mixed = await mixedImage();
    await pushImage(mixed, { registry: registry.url, repo: 'private/app', tag: 'v1', authorization: registry.authorization! });
    proxy = await startProxy({
      upstream: registry.url,
      dir: join(work.path, 'proxy'),
      extraArgs: ['--cache-dir', join(work.path, 'cache'), '--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'info'],
    });
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('a client with credentials gets the SOCI image; one without gets 401 and no cached artifact', async () => {
    const authed = await get(`${proxy.url}/v2/private/app/manifests/v1`, { accept: ACCEPT, authorization: registry.authorization! });
    assert.equal(authed.status, 200);
    const index = parseIndex(authed.body);
    const sociDesc = index.manifests.find((d) => d.artifactType === MediaType.sociIndexV2);
    assert.ok(sociDesc, 'warm: SOCI index built with the client credentials');
    const soci = parseManifest((await get(`${proxy.url}/v2/private/app/manifests/${sociDesc.digest}`, { accept: MediaType.ociManifest, authorization: registry.authorization! })).body);

    const anon = { accept: ACCEPT };
    assert.equal((await get(`${proxy.url}/v2/private/app/manifests/v1`, anon)).status, 401);
    assert.equal((await get(`${proxy.url}/v2/private/app/manifests/${authed.headers.get('docker-content-digest')}`, anon)).status, 401);
    assert.equal((await get(`${proxy.url}/v2/private/app/manifests/${sociDesc.digest}`, anon)).status, 401);
    for (const z of soci.layers) assert.equal((await get(`${proxy.url}/v2/private/app/blobs/${z.digest}`)).status, 401, 'zTOC refused');
    const wrong = `Basic ${Buffer.from('alice:wrong').toString('base64')}`;
    assert.equal((await get(`${proxy.url}/v2/private/app/blobs/${soci.layers[0]!.digest}`, { authorization: wrong })).status, 401);
    assert.ok(!proxy.logs().includes('s3cret-pw'), 'credentials never logged');
    assert.ok(!proxy.logs().includes(registry.authorization!.slice(6)), 'authorization header never logged');
  });
});
