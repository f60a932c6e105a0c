/**
 * Shared pieces of the fault suites: a bounded client (every request has a deadline; running past it is
 * counted as a hang, a thrown transfer as a clean failure), test images with one distinct large random
 * layer each (so every case indexes fresh bytes), the full SOCI check (chain, every span of every zTOC
 * through Range against the real tar) and the cache-directory audit (every stored blob hashes to its
 * name; every zTOC stored is one the final SOCI index references), and the RSS of a process.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, randomBytes, textBytes, type BuiltImage } from '../harness/index.js';
import { verifySociChain } from '../../src/indexer/soci/index.js';
import { ZtocReader } from '../../src/indexer/reader.js';
import { parseIndex, parseManifest } from '../../src/oci/go-json.js';
import { Annotation, MediaType } from '../../src/oci/media-types.js';
import type { Figures } from './summary.js';

export const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
export const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Got {
  /** 0 when the transfer failed (reset, truncated, aborted); -1 when it ran past the deadline. */
  status: number;
  headers: Headers;
  body: Uint8Array;
  error?: string;
}

/** One request with a deadline; never throws. */
export async function get(url: string, headers: Record<string, string> = {}, timeoutMs = 20_000, method = 'GET'): Promise<Got> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error('deadline')), timeoutMs);
  try {
    const r = await fetch(url, { headers, method, signal: ctl.signal });
    const body = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, headers: r.headers, body };
  } catch (err) {
    const hang = ctl.signal.aborted;
    return { status: hang ? -1 : 0, headers: new Headers(), body: new Uint8Array(), error: String((err as Error)?.cause ?? err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Classifies a response that should carry `expected` (or a clean error) into the tally; returns true on correct bytes. */
export function judge(t: Figures, r: Got, expected: Uint8Array | undefined): boolean {
  if (r.status === -1) {
    t.hangs++;
    return false;
  }
  if (r.status === 0) return false; // a broken transfer is a clean failure: the client never sees a finished body
  t.requestsServed++;
  if (r.status >= 200 && r.status < 300) {
    if (expected && !Buffer.from(r.body).equals(Buffer.from(expected))) t.wrongBytes++;
    return !!expected && Buffer.from(r.body).equals(Buffer.from(expected));
  }
  // An error answer must be a clean OCI error document (HEAD has no body).
  if (r.body.length) {
    const doc = JSON.parse(Buffer.from(r.body).toString('utf8')) as { errors?: Array<{ code?: string }> };
    assert.ok(Array.isArray(doc.errors) && typeof doc.errors[0]?.code === 'string', `status ${r.status} carries an OCI error body`);
  }
  return false;
}

/** An image with one ~`size`-byte incompressible gzip layer (distinct per seed) and a small text layer. */
export function faultImage(seed: number, size = 320 * 1024): Promise<BuiltImage> {
  return buildImage({
    tag: `f${seed}`,
    layers: [
      { files: { [`data/r${seed}-a.bin`]: randomBytes(size / 2, seed * 31 + 1), [`data/r${seed}-b.bin`]: randomBytes(size / 2, seed * 31 + 2), 'etc/t.txt': textBytes(9000, seed) } },
      { files: { 'small.txt': `small ${seed}\n` } },
    ],
    config: { cmd: ['/bin/sh'] },
  });
}

/**
 * Checks a SOCI-enabled index served by the proxy: the chain resolves, and every span and file of every
 * zTOC, read through the proxy with Range, equals the layer's real tar bytes. Returns the zTOC digests.
 */
export async function verifySoci(proxyUrl: string, repo: string, indexBytes: Uint8Array, image: BuiltImage): Promise<string[]> {
  const fetchByDigest = async (digest: string): Promise<Uint8Array | undefined> => {
    const m = await get(`${proxyUrl}/v2/${repo}/manifests/${digest}`, { accept: ACCEPT });
    if (m.status === 200) return m.body;
    const b = await get(`${proxyUrl}/v2/${repo}/blobs/${digest}`);
    return b.status === 200 ? b.body : undefined;
  };
  await verifySociChain(indexBytes, fetchByDigest);
  const ztocs: string[] = [];
  for (const d of parseIndex(indexBytes).manifests.filter((x) => x.artifactType === MediaType.sociIndexV2)) {
    const soci = parseManifest((await fetchByDigest(d.digest))!);
    for (const z of soci.layers) {
      const layerDigest = z.annotations![Annotation.imageLayerDigest]!;
      const layer = image.layers.find((l) => l.descriptor.digest === layerDigest);
      assert.ok(layer, 'the zTOC is for a layer of this image');
      const zbytes = (await fetchByDigest(z.digest))!;
      assert.equal(sha(zbytes), z.digest);
      ztocs.push(z.digest);
      const reader = ZtocReader.fromBytes(zbytes);
      const src = {
        read: async (start: number, end: number): Promise<Uint8Array> => {
          const r = await get(`${proxyUrl}/v2/${repo}/blobs/${layerDigest}`, { range: `bytes=${start}-${end - 1}` });
          assert.equal(r.status, 206);
          assert.ok(Buffer.from(r.body).equals(layer.blob.subarray(start, end)), 'ranged bytes equal the layer');
          return r.body;
        },
      };
      for (const span of reader.spans) {
        const data = await reader.readSpan(src, span.id);
        assert.ok(Buffer.from(data).equals(layer.tar.subarray(span.outStart, span.outEnd)), `span ${span.id} verifies`);
      }
      for (const e of reader.ztoc.toc.filter((x) => x.type === 'reg')) {
        const content = await reader.readFile(src, e);
        assert.ok(Buffer.from(content).equals(layer.tar.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)), e.name);
      }
    }
  }
  return ztocs;
}

/** Every blob file in a proxy cache dir: each must hash to its name. Returns the non-JSON ones (zTOCs). */
export function auditCacheDir(cacheDir: string): { all: string[]; binary: string[] } {
  const dir = join(cacheDir, 'blobs', 'sha256');
  const all: string[] = [];
  const binary: string[] = [];
  if (!existsSync(dir)) return { all, binary };
  const walk = (d: string): void => {
    for (const name of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, name.name);
      if (name.isDirectory()) walk(p);
      else if (/^[a-f0-9]{64}$/.test(name.name)) {
        const bytes = readFileSync(p);
        assert.equal(sha(bytes), `sha256:${name.name}`, `cache file ${p} hashes to its name`);
        all.push(`sha256:${name.name}`);
        if (bytes[0] !== 0x7b) binary.push(`sha256:${name.name}`);
      }
    }
  };
  walk(dir);
  return { all, binary };
}

/** Resident set size of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export function percentile(xs: number[], p: number): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
