/**
 * The proxy's registry API in detail, against real parts (docker-registry 2.8 upstreams, the built CLI as
 * the proxy): Accept negotiation, HEAD/GET agreement per index mode (wait, background, off), the `-soci`
 * suffix and `--plain-tags original`, single flight of 20 concurrent first requests (proved on the
 * registry's access log), `?ns=` routing over two named upstreams, OCI error JSON, blob Range variants,
 * tags/list, /metrics, an upstream image that is already SOCI-enabled, token-auth upstreams (configured
 * credentials and client pass-through), TOOMANYREQUESTS pass-through and the tag cache.
 * test/proxy.test.ts covers the SOCI chain and span bytes; this file does not repeat it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildImage, mixedImage, pushImage, randomBytes, runCommand, startProxy, startRegistry, tempDir, textBytes,
  type BuiltImage, type MixedImage, type Proxy, type Registry,
} from './harness/index.js';
import { makeSelfSignedCert, startFakeServer, startRegistry as startAuthRegistry, startTokenService, type FakeServer, type TestRegistry, type TokenService } from '../src/proxy/upstream/testing/index.js';
import { parseIndex, parseManifest } from '../src/oci/go-json.js';
import { MediaType } from '../src/oci/media-types.js';

const HAVE_DIST = existsSync(new URL('../dist/cli.js', import.meta.url));
const SKIP = HAVE_DIST ? false : 'run `npm run build` first (dist/cli.js missing)';
const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const DOCKER_ONLY = [MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const COMMON = ['--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'info'];

interface Got { status: number; headers: Headers; body: Uint8Array; json: () => { errors?: Array<{ code: string; message?: string }> } & Record<string, unknown> }

async function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  const r = await fetch(url, { headers, method });
  const body = new Uint8Array(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body, json: () => JSON.parse(Buffer.from(body).toString('utf8')) };
}

/** GET and HEAD of one reference; asserts they agree on digest, type and length; returns the GET. */
async function getAndHead(url: string, accept = ACCEPT): Promise<Got> {
  const h = await get(url, { accept }, 'HEAD');
  const g = await get(url, { accept });
  assert.equal(g.status, 200, `GET ${url}: ${Buffer.from(g.body).toString()}`);
  assert.equal(h.status, 200);
  assert.equal(g.headers.get('docker-content-digest'), sha(g.body), 'digest header matches the body');
  assert.equal(h.headers.get('docker-content-digest'), g.headers.get('docker-content-digest'), 'HEAD and GET agree on the digest');
  assert.equal(h.headers.get('content-type'), g.headers.get('content-type'));
  assert.equal(h.headers.get('content-length'), String(g.body.length));
  assert.equal(g.headers.get('content-length'), String(g.body.length));
  return g;
}

function isSociIndex(g: Got): boolean {
  if (g.headers.get('content-type') !== MediaType.ociIndex) return false;
  return parseIndex(g.body).manifests.some((d) => d.artifactType === MediaType.sociIndexV2);
}

/** A small image whose two layers are both above the 64 KiB minimum (fresh bytes per seed). */
function freshImage(seed: number): Promise<BuiltImage> {
  return buildImage({
    tag: 'fresh',
    layers: [
      { files: { 'data/a.bin': randomBytes(120 * 1024, seed), 'data/b.bin': randomBytes(40 * 1024, seed + 1) } },
      { files: { 'src/c.txt': textBytes(64 * 1024, seed + 2), 'src/d.bin': randomBytes(80 * 1024, seed + 3) } },
    ],
    config: { cmd: ['/bin/sh'] },
  });
}

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('proxy API against docker-registry', { skip: SKIP }, () => {
  let registry: Registry;
  let proxy: Proxy;
  let mixed: MixedImage;
  const work = tempDir('proxy-api');
  const extra: Proxy[] = [];
  const startExtra = async (name: string, args: string[]): Promise<Proxy> => {
    const p = await startProxy({ upstream: registry.url, dir: join(work.path, name), extraArgs: ['--cache-dir', join(work.path, `${name}-cache`), ...COMMON, ...args] });
    extra.push(p);
    return p;
  };

  before(async () => {
    registry = await startRegistry();
    mixed = await mixedImage();
    await pushImage(mixed, { registry: registry.url, repo: 'test/mixed', tag: 'latest' });
    await pushImage(mixed, { registry: registry.url, repo: 'test/mixed', tag: 'v2' });
    proxy = await startProxy({ upstream: registry.url, dir: join(work.path, 'proxy'), extraArgs: ['--cache-dir', join(work.path, 'cache'), ...COMMON] });
  });
  after(async () => {
    for (const p of extra) await p.stop();
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('Accept negotiation: Docker-only and manifest-only clients get the original; several Accept headers all count', async () => {
    const docker = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/latest`, DOCKER_ONLY);
    assert.equal(docker.headers.get('docker-content-digest'), mixed.descriptor.digest);
    assert.ok(Buffer.from(docker.body).equals(mixed.manifestBytes), 'exact upstream bytes');
    assert.equal(docker.headers.get('content-type'), MediaType.ociManifest, 'type from the upstream, not the body');
    const manifestOnly = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/latest`, MediaType.ociManifest);
    assert.equal(manifestOnly.headers.get('docker-content-digest'), mixed.descriptor.digest);

    // Two separate Accept header lines: the OCI index type is only in the second one.
    const twoLines = await new Promise<{ status: number; digest: string | undefined; type: string | undefined }>((resolve, reject) => {
      const req = httpRequest(`${proxy.url}/v2/test/mixed/manifests/latest`, { method: 'GET' }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, digest: res.headers['docker-content-digest'] as string | undefined, type: res.headers['content-type'] }));
      });
      req.setHeader('accept', [DOCKER_ONLY, `${MediaType.ociIndex};q=0.9`]);
      req.on('error', reject);
      req.end();
    });
    assert.equal(twoLines.status, 200);
    assert.equal(twoLines.type, MediaType.ociIndex);
    const soci = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/latest`);
    assert.ok(isSociIndex(soci));
    assert.equal(twoLines.digest, soci.headers.get('docker-content-digest'));
    assert.notEqual(twoLines.digest, mixed.descriptor.digest);
  });

  test('wait mode: HEAD by tag == GET by tag == GET by digest; the -soci suffix answers the same image', async () => {
    const byTag = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/v2`);
    assert.ok(isSociIndex(byTag));
    const digest = byTag.headers.get('docker-content-digest')!;
    const byDigest = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/${digest}`);
    assert.ok(Buffer.from(byDigest.body).equals(byTag.body));
    const suffixed = await getAndHead(`${proxy.url}/v2/test/mixed/manifests/v2-soci`);
    assert.equal(suffixed.headers.get('docker-content-digest'), digest);
    assert.equal((await get(`${registry.url}/v2/test/mixed/manifests/v2-soci`, { accept: ACCEPT })).status, 404, 'the upstream has no such tag');
  });

  test('--plain-tags original: the plain tag is the original, <tag>-soci the SOCI image (no such upstream tag)', async () => {
    const p = await startExtra('plain-original', ['--plain-tags', 'original']);
    const plain = await getAndHead(`${p.url}/v2/test/mixed/manifests/latest`);
    assert.equal(plain.headers.get('docker-content-digest'), mixed.descriptor.digest);
    assert.ok(Buffer.from(plain.body).equals(mixed.manifestBytes));
    const soci = await getAndHead(`${p.url}/v2/test/mixed/manifests/latest-soci`);
    assert.ok(isSociIndex(soci));
    assert.equal(parseIndex(soci.body).manifests[0]!.digest !== mixed.descriptor.digest, true, 'the image manifest is rewritten');
    const bd = await getAndHead(`${p.url}/v2/test/mixed/manifests/${soci.headers.get('docker-content-digest')}`);
    assert.ok(Buffer.from(bd.body).equals(soci.body));
  });

  test('--index-mode background: the first answer is the original, a later one the SOCI image; HEAD agrees', async () => {
    const p = await startExtra('background', ['--index-mode', 'background']);
    // GET alone: the background build may finish between a HEAD and a GET of the first request, and the
    // tag then legitimately moves to the SOCI image (agreement is checked below, once it has settled).
    const first = await get(`${p.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT });
    assert.equal(first.headers.get('docker-content-digest'), mixed.descriptor.digest, 'first request: the original at once');
    // Poll with GET alone while the build runs (a HEAD and a GET may straddle its completion), then check
    // HEAD/GET agreement once the tag has settled on the SOCI image.
    await until(async () => {
      const g = await get(`${p.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT });
      return isSociIndex(g) ? g : undefined;
    }, 30_000, 'the background build');
    const later = await getAndHead(`${p.url}/v2/test/mixed/manifests/latest`);
    assert.ok(isSociIndex(later));
    const d = later.headers.get('docker-content-digest')!;
    assert.notEqual(d, mixed.descriptor.digest);
    const bd = await getAndHead(`${p.url}/v2/test/mixed/manifests/${d}`);
    assert.ok(Buffer.from(bd.body).equals(later.body));
  });

  test('--index-mode off: tags answer the original and nothing is indexed', async () => {
    const p = await startExtra('off', ['--index-mode', 'off']);
    const before = registry.requests().length;
    const g = await getAndHead(`${p.url}/v2/test/mixed/manifests/latest`);
    assert.equal(g.headers.get('docker-content-digest'), mixed.descriptor.digest);
    assert.ok(Buffer.from(g.body).equals(mixed.manifestBytes));
    const forced = await getAndHead(`${p.url}/v2/test/mixed/manifests/latest-soci`);
    assert.equal(forced.headers.get('docker-content-digest'), mixed.descriptor.digest, 'off wins over the -soci suffix');
    await registry.settle();
    const layerGets = registry.requests().slice(before).filter((e) => e.blob && e.method === 'GET' && mixed.layers.some((l) => l.descriptor.digest === e.blob));
    assert.equal(layerGets.length, 0, 'no layer was streamed');
  });

  test('20 concurrent first requests start one build: each indexed layer streamed from upstream once', async () => {
    const img = await freshImage(500);
    await pushImage(img, { registry: registry.url, repo: 'test/conc', tag: 'v1' });
    await registry.settle();
    const from = registry.requests().length;
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`${proxy.url}/v2/test/conc/manifests/v1`, { accept: ACCEPT }, i % 4 === 0 ? 'HEAD' : 'GET')));
    const digests = new Set(answers.map((a) => a.headers.get('docker-content-digest')));
    assert.equal(digests.size, 1, 'every request got the same digest');
    assert.ok(answers.every((a) => a.status === 200));
    const g = answers.find((a) => a.body.length > 0)!;
    assert.ok(isSociIndex(g));
    const soci = parseManifest((await get(`${proxy.url}/v2/test/conc/manifests/${parseIndex(g.body).manifests.find((d) => d.artifactType === MediaType.sociIndexV2)!.digest}`, { accept: MediaType.ociManifest })).body);
    assert.equal(soci.layers.length, 2, 'both layers indexed');
    await registry.settle();
    const log = registry.requests().slice(from);
    for (const l of img.layers) {
      const gets = log.filter((e) => e.blob === l.descriptor.digest && e.method === 'GET');
      assert.equal(gets.length, 1, `layer ${l.descriptor.digest} streamed once (got ${gets.length})`);
      assert.equal(gets[0]!.bytes, l.blob.length, 'the whole layer, once');
    }
  });

  test('errors are OCI JSON: unknown repository, unknown tag, unknown blob; push refused', async () => {
    const repo = await get(`${proxy.url}/v2/no/such-repo/manifests/latest`, { accept: ACCEPT });
    assert.equal(repo.status, 404);
    assert.match(repo.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(['NAME_UNKNOWN', 'MANIFEST_UNKNOWN'].includes(repo.json().errors![0]!.code), JSON.stringify(repo.json()));
    const tag = await get(`${proxy.url}/v2/test/mixed/manifests/nope`, { accept: ACCEPT });
    assert.equal(tag.status, 404);
    assert.equal(tag.json().errors![0]!.code, 'MANIFEST_UNKNOWN');
    const tagHead = await get(`${proxy.url}/v2/test/mixed/manifests/nope`, { accept: ACCEPT }, 'HEAD');
    assert.equal(tagHead.status, 404);
    const tags = await get(`${proxy.url}/v2/no/such-repo/tags/list`);
    assert.equal(tags.status, 404);
    assert.equal(tags.json().errors![0]!.code, 'NAME_UNKNOWN');
    const blob = await get(`${proxy.url}/v2/test/mixed/blobs/sha256:${'0'.repeat(64)}`);
    assert.equal(blob.status, 404);
    assert.equal(blob.json().errors![0]!.code, 'BLOB_UNKNOWN');
    const del = await get(`${proxy.url}/v2/test/mixed/manifests/latest`, {}, 'DELETE');
    assert.equal(del.status, 405);
    assert.equal(del.json().errors![0]!.code, 'UNSUPPORTED');
    const put = await fetch(`${proxy.url}/v2/test/mixed/manifests/latest`, { method: 'PUT', body: '{}', headers: { 'content-type': MediaType.ociManifest } });
    assert.equal(put.status, 405);
    await put.arrayBuffer();
  });

  test('blob ranges: suffix, open-ended, unsatisfiable (416), multi-range (400), HEAD; on upstream and synthesized blobs', async () => {
    const layer = mixed.layers[mixed.roles.large]!;
    const url = `${proxy.url}/v2/test/mixed/blobs/${layer.descriptor.digest}`;
    const n = layer.blob.length;
    const full = await get(url);
    assert.equal(full.status, 200);
    assert.equal(full.headers.get('content-length'), String(n));
    assert.equal(full.headers.get('docker-content-digest'), layer.descriptor.digest);
    assert.ok(Buffer.from(full.body).equals(layer.blob));
    const suffix = await get(url, { range: 'bytes=-10' });
    assert.equal(suffix.status, 206);
    assert.equal(suffix.headers.get('content-range'), `bytes ${n - 10}-${n - 1}/${n}`);
    assert.equal(suffix.headers.get('content-length'), '10');
    assert.ok(Buffer.from(suffix.body).equals(layer.blob.subarray(n - 10)));
    const open = await get(url, { range: 'bytes=5-' });
    assert.equal(open.status, 206);
    assert.equal(open.headers.get('content-range'), `bytes 5-${n - 1}/${n}`);
    assert.ok(Buffer.from(open.body).equals(layer.blob.subarray(5)));
    const beyond = await get(url, { range: `bytes=${n + 10}-${n + 20}` });
    assert.equal(beyond.status, 416);
    const multi = await get(url, { range: 'bytes=0-9,20-29' });
    assert.equal(multi.status, 400);
    const head = await get(url, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(n));

    // A synthesized blob (a zTOC) answers the same range forms from the cache.
    const idx = parseIndex((await get(`${proxy.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT })).body);
    const sociDesc = idx.manifests.find((d) => d.artifactType === MediaType.sociIndexV2)!;
    const soci = parseManifest((await get(`${proxy.url}/v2/test/mixed/manifests/${sociDesc.digest}`, { accept: MediaType.ociManifest })).body);
    const z = soci.layers[0]!;
    const zurl = `${proxy.url}/v2/test/mixed/blobs/${z.digest}`;
    const zfull = await get(zurl);
    assert.equal(sha(zfull.body), z.digest);
    const zs = await get(zurl, { range: 'bytes=-10' });
    assert.equal(zs.status, 206);
    assert.equal(zs.headers.get('content-range'), `bytes ${z.size - 10}-${z.size - 1}/${z.size}`);
    assert.ok(Buffer.from(zs.body).equals(zfull.body.subarray(z.size - 10)));
    const zo = await get(zurl, { range: 'bytes=5-' });
    assert.equal(zo.status, 206);
    assert.ok(Buffer.from(zo.body).equals(zfull.body.subarray(5)));
    assert.equal((await get(zurl, { range: `bytes=${z.size}-` })).status, 416);
    assert.equal((await get(zurl, { range: 'bytes=0-1,3-4' })).status, 400);
  });

  test('tags/list passes through, with pagination', async () => {
    const all = await get(`${proxy.url}/v2/test/mixed/tags/list`);
    assert.equal(all.status, 200);
    assert.deepEqual(all.json(), { name: 'test/mixed', tags: ['latest', 'v2'] });
    // docker-registry 2.8 may or may not paginate; the proxy answers what the upstream answers, with the
    // Link rewritten to the client's name.
    const page = await get(`${proxy.url}/v2/test/mixed/tags/list?n=1`);
    const direct = await get(`${registry.url}/v2/test/mixed/tags/list?n=1`);
    assert.deepEqual(page.json(), direct.json());
    assert.equal(page.headers.get('link'), direct.headers.get('link'));
  });

  test('an upstream image that is already SOCI-enabled passes through untouched (also when a copier dropped artifactType)', async () => {
    // Copy the proxy's own SOCI-enabled output into a second repository, digests preserved.
    await runCommand('skopeo', ['copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false',
      `docker://${proxy.host}/test/mixed:latest`, `docker://${registry.host}/test/already-soci:latest`]);
    const upstream = await get(`${registry.url}/v2/test/already-soci/manifests/latest`, { accept: ACCEPT });
    assert.equal(upstream.status, 200);
    const upDigest = upstream.headers.get('docker-content-digest')!;
    assert.equal(upstream.headers.get('content-type'), MediaType.ociIndex);
    // skopeo 1.9 drops `artifactType` from the index descriptors (so the digest changes); the SOCI
    // annotations survive, and they alone must mark the image as SOCI-enabled (regression: it was re-indexed).
    assert.ok(parseIndex(upstream.body).manifests.some((d) => d.annotations?.['com.amazon.soci.image-manifest-digest']), 'the upstream copy is SOCI-enabled');
    const p = await startExtra('already', []); // fresh cache: nothing known about these digests
    const before = registry.requests().length;
    const g = await getAndHead(`${p.url}/v2/test/already-soci/manifests/latest`);
    assert.equal(g.headers.get('docker-content-digest'), upDigest, 'the digest equals the upstream\'s');
    assert.ok(Buffer.from(g.body).equals(upstream.body), 'the exact upstream bytes');
    await registry.settle();
    const layerGets = registry.requests().slice(before).filter((e) => e.blob && e.method === 'GET' && e.bytes > 4096);
    assert.equal(layerGets.length, 0, 'no layer streamed: nothing re-indexed');
  });

  test('--tag-cache: a tag is resolved upstream once within the window, per client credential', async () => {
    const p = await startExtra('tagcache', ['--tag-cache', '30', '--plain-tags', 'original']);
    await getAndHead(`${p.url}/v2/test/mixed/manifests/latest`);
    await registry.settle();
    const from = registry.requests().length;
    for (let i = 0; i < 3; i++) await getAndHead(`${p.url}/v2/test/mixed/manifests/latest`);
    await registry.settle();
    const byTag = registry.requests().slice(from).filter((e) => e.path.endsWith('/manifests/latest'));
    assert.equal(byTag.length, 0, 'no by-tag request reached the upstream');
    await get(`${p.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT, authorization: 'Basic b3RoZXI6Y2xpZW50' });
    await registry.settle();
    assert.equal(registry.requests().slice(from).filter((e) => e.path.endsWith('/manifests/latest')).length, 1, 'another credential resolves again');

    // Default (0): every by-tag request goes upstream.
    const from2 = registry.requests().length;
    for (let i = 0; i < 2; i++) await get(`${proxy.url}/v2/test/mixed/manifests/latest`, { accept: DOCKER_ONLY });
    await registry.settle();
    assert.equal(registry.requests().slice(from2).filter((e) => e.path.endsWith('/manifests/latest')).length, 2);

    // Concurrent requests for one tag (same credential) share the upstream HEAD in flight.
    const from3 = registry.requests().length;
    const all = await Promise.all(Array.from({ length: 16 }, () => get(`${proxy.url}/v2/test/mixed/manifests/latest`, { accept: ACCEPT })));
    assert.equal(new Set(all.map((r) => r.headers.get('docker-content-digest'))).size, 1);
    await registry.settle();
    const heads = registry.requests().slice(from3).filter((e) => e.path.endsWith('/manifests/latest')).length;
    assert.ok(heads >= 1 && heads < 16, `16 concurrent by-tag requests cost ${heads} upstream requests`);
  });

  test('/metrics names requests, upstream latency, bytes, index jobs and duration, cache lookups; logs carry request ids', async () => {
    const r = await get(`${proxy.url}/metrics`);
    assert.equal(r.status, 200);
    const text = Buffer.from(r.body).toString();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    assert.ok(value(/^soci_proxy_requests_total\{route="manifest",method="GET",status="200"\} (\d+)/m) > 0);
    assert.ok(value(/^soci_proxy_upstream_duration_seconds_count\{[^}]*op="manifest"[^}]*\} (\d+)/m) > 0);
    assert.ok(value(/^soci_proxy_bytes_served_total\{kind="upstream-blob"\} (\d+)/m) > 0);
    assert.ok(value(/^soci_proxy_bytes_served_total\{kind="synthesized"\} (\d+)/m) > 0);
    assert.ok(value(/^soci_proxy_index_jobs_total\{outcome="built"\} (\d+)/m) >= 2);
    assert.ok(value(/^soci_proxy_index_job_duration_seconds_count (\d+)/m) >= 2);
    assert.ok(value(/^soci_proxy_layers_indexed_total\{status="indexed"\} (\d+)/m) > 0);
    assert.ok(value(/^soci_proxy_cache_lookups_total\{kind="image",result="hit"\} (\d+)/m) > 0);
    const h = await get(`${proxy.url}/healthz`);
    assert.equal(h.status, 200);
    assert.equal((await get(`${proxy.url}/readyz`)).status, 200);
    const tagged = await get(`${proxy.url}/v2/`, { 'x-request-id': 'req-api-test-42' });
    assert.equal(tagged.headers.get('x-request-id'), 'req-api-test-42');
    await new Promise((res) => setTimeout(res, 200));
    const line = proxy.logs().split('\n').find((l) => l.includes('req-api-test-42'));
    assert.ok(line, 'a JSON log line with the request id');
    assert.equal((JSON.parse(line) as { reqId?: string }).reqId, 'req-api-test-42');
  });
});

describe('proxy routing over two named upstreams (?ns= and host prefix)', { skip: SKIP }, () => {
  let a: Registry;
  let b: Registry;
  let proxy: Proxy;
  let imgA: BuiltImage;
  let imgB: BuiltImage;
  const work = tempDir('proxy-ns');

  before(async () => {
    [a, b] = await Promise.all([startRegistry(), startRegistry()]);
    [imgA, imgB] = await Promise.all([freshImage(700), freshImage(800)]);
    await pushImage(imgA, { registry: a.url, repo: 'team/app', tag: 'v1' });
    await pushImage(imgB, { registry: b.url, repo: 'team/app', tag: 'v1' });
    proxy = await startProxy({
      upstream: `alpha.example=${a.url}`,
      dir: join(work.path, 'proxy'),
      extraArgs: ['--upstream', `beta.example=${b.url}`, '--cache-dir', join(work.path, 'cache'), '--plain-tags', 'original', ...COMMON],
    });
  });
  after(async () => {
    await proxy?.stop();
    await a?.stop();
    await b?.stop();
    work.remove();
  });

  test('?ns= picks the upstream; a host prefix does too; an unconfigured name contacts nobody', async () => {
    const viaNsA = await getAndHead(`${proxy.url}/v2/team/app/manifests/v1?ns=alpha.example`);
    const viaNsB = await getAndHead(`${proxy.url}/v2/team/app/manifests/v1?ns=beta.example`);
    assert.equal(viaNsA.headers.get('docker-content-digest'), imgA.descriptor.digest);
    assert.equal(viaNsB.headers.get('docker-content-digest'), imgB.descriptor.digest);
    const viaPrefix = await getAndHead(`${proxy.url}/v2/beta.example/team/app/manifests/v1`);
    assert.equal(viaPrefix.headers.get('docker-content-digest'), imgB.descriptor.digest);
    const blob = await get(`${proxy.url}/v2/team/app/blobs/${imgB.layers[0]!.descriptor.digest}?ns=beta.example`);
    assert.ok(Buffer.from(blob.body).equals(imgB.layers[0]!.blob));
    const soci = await getAndHead(`${proxy.url}/v2/team/app/manifests/v1-soci?ns=alpha.example`);
    assert.ok(isSociIndex(soci));

    const beforeA = a.requests().length;
    const beforeB = b.requests().length;
    const unknown = await get(`${proxy.url}/v2/team/app/manifests/v1?ns=gamma.example`, { accept: ACCEPT });
    assert.equal(unknown.status, 404, 'no default upstream: the name is unknown');
    assert.equal(unknown.json().errors![0]!.code, 'NAME_UNKNOWN');
    await a.settle();
    await b.settle();
    assert.equal(a.requests().length, beforeA);
    assert.equal(b.requests().length, beforeB);
  });
});

describe('proxy in front of a token-auth upstream', { skip: SKIP }, () => {
  let dir: string;
  let tokens: TokenService;
  let reg: TestRegistry;
  let img: BuiltImage;
  const service = 'test-registry';
  const issuer = 'test-issuer';
  const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
  const proxies: Proxy[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'proxy-token-'));
    const cert = makeSelfSignedCert(dir, 'token');
    tokens = await startTokenService({ cert, issuer, service, users: { dora: 'tok-pw-9', eve: 'other-pw' }, anonymousPull: false });
    reg = await startAuthRegistry({ token: { realm: tokens.realm, service, issuer, rootCertFile: cert.certFile } });
    img = await freshImage(900);
    await pushImage(img, { registry: reg.url, repo: 'priv/app', tag: 'v1', authorization: `Bearer ${tokens.mint('dora', [{ name: 'priv/app', actions: ['pull', 'push'] }])}` });
    tokens.requests.length = 0;
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    await reg?.stop();
    await tokens?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('configured credentials (--upstream-username/--upstream-password NAME=...) run the token flow', async () => {
    const p = await startProxy({
      upstream: `tok.example=${reg.url}`,
      dir: join(dir, 'p1'),
      extraArgs: ['--upstream-username', 'tok.example=dora', '--upstream-password', 'tok.example=tok-pw-9', '--cache-dir', join(dir, 'c1'), ...COMMON],
    });
    proxies.push(p);
    const g = await getAndHead(`${p.url}/v2/priv/app/manifests/v1`);
    assert.ok(isSociIndex(g), 'built with the configured credentials');
    assert.ok(tokens.requests.length > 0 && tokens.requests.every((r) => r.user === 'dora' && r.status === 200));
    assert.ok(!p.logs().includes('tok-pw-9'), 'the password is never logged');
  });

  test('client pass-through: Basic for the token flow, Bearer forwarded; tokens not shared across credentials', async () => {
    const p = await startProxy({ upstream: `tok.example=${reg.url}`, dir: join(dir, 'p2'), extraArgs: ['--cache-dir', join(dir, 'c2'), ...COMMON] });
    proxies.push(p);
    const anon = await get(`${p.url}/v2/priv/app/manifests/v1`, { accept: ACCEPT });
    assert.equal(anon.status, 401);
    assert.equal(anon.json().errors![0]!.code, 'UNAUTHORIZED');
    assert.equal(anon.headers.get('www-authenticate'), 'Basic realm="soci-proxy"');
    tokens.requests.length = 0;
    const dora = await get(`${p.url}/v2/priv/app/manifests/v1`, { accept: ACCEPT, authorization: basic('dora', 'tok-pw-9') });
    assert.equal(dora.status, 200);
    assert.ok(isSociIndex(dora));
    assert.ok(tokens.requests.some((r) => r.user === 'dora'));
    const wrong = await get(`${p.url}/v2/priv/app/manifests/v1`, { accept: ACCEPT, authorization: basic('dora', 'nope') });
    assert.equal(wrong.status, 401, "dora's token is not reused for another credential");
    const wrongDigest = await get(`${p.url}/v2/priv/app/manifests/${dora.headers.get('docker-content-digest')}`, { accept: ACCEPT, authorization: basic('dora', 'nope') });
    assert.equal(wrongDigest.status, 401, 'nor is the cached SOCI image served to it');
    const bearer = `Bearer ${tokens.mint('eve', [{ name: 'priv/app', actions: ['pull'] }])}`;
    const n = tokens.requests.length;
    const viaBearer = await get(`${p.url}/v2/priv/app/manifests/v1`, { accept: ACCEPT, authorization: bearer });
    assert.equal(viaBearer.status, 200);
    assert.equal(viaBearer.headers.get('docker-content-digest'), dora.headers.get('docker-content-digest'));
    assert.equal(tokens.requests.length, n, 'a client Bearer token is forwarded, no token request');
    assert.ok(!p.logs().includes('tok-pw-9'));
    assert.ok(!p.logs().includes(bearer.slice(7, 60)), 'tokens never logged');
  });
});

describe('rate-limited upstream', { skip: SKIP }, () => {
  let fake: FakeServer;
  let proxy: Proxy;
  const work = tempDir('proxy-429');
  before(async () => {
    fake = await startFakeServer((req, res) => {
      if (req.url === '/v2/' || req.url === '/v2') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      const body = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down', detail: null }] });
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '17' }).end(body);
    });
    proxy = await startProxy({ upstream: fake.url, dir: join(work.path, 'proxy'), extraArgs: ['--cache-dir', join(work.path, 'cache'), ...COMMON] });
  });
  after(async () => {
    await proxy?.stop();
    await fake?.stop();
    work.remove();
  });

  test('429 passes through as TOOMANYREQUESTS with Retry-After, for manifests, blobs and tags, without retries', async () => {
    for (const path of ['/v2/lib/app/manifests/latest', `/v2/lib/app/manifests/sha256:${'a'.repeat(64)}`, `/v2/lib/app/blobs/sha256:${'b'.repeat(64)}`, '/v2/lib/app/tags/list']) {
      const n = fake.requests.length;
      const r = await get(`${proxy.url}${path}`, { accept: ACCEPT });
      assert.equal(r.status, 429, path);
      assert.equal(r.headers.get('retry-after'), '17', path);
      assert.equal(r.json().errors![0]!.code, 'TOOMANYREQUESTS', path);
      assert.equal(fake.requests.length - n, 1, `${path}: asked upstream once`);
    }
    const head = await get(`${proxy.url}/v2/lib/app/manifests/latest`, { accept: ACCEPT }, 'HEAD');
    assert.equal(head.status, 429);
    assert.equal(head.headers.get('retry-after'), '17');
  });
});
