/**
 * Composition root of `soci-proxy index OCI_LAYOUT_DIR[:TAG] --out OCI_LAYOUT_DIR`: builds the
 * SOCI-enabled image (zTOCs, SOCI index manifest v2 per platform, rewritten manifests, image index) from an
 * OCI image layout on disk, as umoci and skopeo write it, and writes a layout holding the original blobs
 * plus the new ones, with the tag pointing at the SOCI-enabled index. Layers are indexed in parallel on
 * worker threads; a progress line is drawn when stderr is a terminal.
 */
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sha256 } from '../oci/digest.js';
import { parseIndex, parseManifest, marshalIndex } from '../oci/go-json.js';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, SOCI_DEFAULTS, isIndexType } from '../oci/media-types.js';
import type { Descriptor, Index, Manifest, Platform } from '../oci/types.js';
import { IndexerPool } from './pool.js';
import { buildSociImage, buildSociIndex, type LayerZtoc } from './soci/index.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) throw new Error(`invalid digest ${digest}`);
  return join(dir, 'blobs', alg, hex);
}

async function readBlob(dir: string, digest: string): Promise<Uint8Array> {
  const bytes = await readFile(blobPath(dir, digest));
  if (sha256(bytes) !== digest) throw new Error(`${blobPath(dir, digest)} does not match its digest`);
  return bytes;
}

class Progress {
  readonly #tty = process.stderr.isTTY === true;
  #done = 0;
  #bytes = 0;
  constructor(readonly total: number, readonly totalBytes: number) {}
  step(bytes: number, label: string): void {
    this.#done++;
    this.#bytes += bytes;
    if (!this.#tty) return;
    const width = 30;
    const frac = this.totalBytes ? this.#bytes / this.totalBytes : this.#done / Math.max(1, this.total);
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    process.stderr.write(`\r[${bar}] ${this.#done}/${this.total} layers ${(this.#bytes / 1e6).toFixed(1)}/${(this.totalBytes / 1e6).toFixed(1)} MB ${label.slice(0, 24)}`);
    if (this.#done === this.total) process.stderr.write('\n');
  }
}

export async function indexLayoutMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: 'string' }, 'span-size': { type: 'string' }, 'min-layer-size': { type: 'string' }, 'build-tool-id': { type: 'string' }, workers: { type: 'string' } },
  });
  const src = positionals[0];
  if (!src || !values.out) throw new Error('usage: soci-proxy index OCI_LAYOUT_DIR[:TAG] --out OCI_LAYOUT_DIR [--span-size N] [--min-layer-size N]');
  const colon = src.lastIndexOf(':');
  const hasTag = colon > 0 && !src.slice(colon + 1).includes('/');
  const dir = hasTag ? src.slice(0, colon) : src;
  const tag = hasTag ? src.slice(colon + 1) : undefined;
  const spanSize = values['span-size'] ? Number(values['span-size']) : SOCI_DEFAULTS.spanSize;
  const minLayerSize = values['min-layer-size'] ? Number(values['min-layer-size']) : SOCI_DEFAULTS.minLayerSize;
  const buildToolIdentifier = values['build-tool-id'] ?? SOCI_DEFAULTS.buildToolIdentifier;
  if (!Number.isSafeInteger(spanSize) || spanSize <= 0) throw new Error(`invalid --span-size ${values['span-size']}`);
  if (!Number.isSafeInteger(minLayerSize) || minLayerSize < 0) throw new Error(`invalid --min-layer-size ${values['min-layer-size']}`);

  const top: Index = parseIndex(await readFile(join(dir, 'index.json')));
  const candidates = tag ? top.manifests.filter((d) => d.annotations?.[REF_NAME] === tag) : top.manifests;
  if (candidates.length !== 1) {
    const tags = top.manifests.map((d) => d.annotations?.[REF_NAME]).filter(Boolean);
    throw new Error(tag ? `tag ${tag} not found in ${dir} (tags: ${tags.join(', ') || 'none'})` : `${dir} holds ${top.manifests.length} images; name one as ${dir}:TAG (tags: ${tags.join(', ')})`);
  }
  const chosen = candidates[0] as Descriptor;
  const chosenBytes = await readBlob(dir, chosen.digest);

  interface P { desc: Descriptor; bytes: Uint8Array; manifest: Manifest; platform: Platform | undefined }
  const platforms: P[] = [];
  let singlePlatform: Platform | undefined;
  if (isIndexType(chosen.mediaType)) {
    for (const d of parseIndex(chosenBytes).manifests) {
      if (d.mediaType !== MediaType.ociManifest && d.mediaType !== MediaType.dockerManifest) continue;
      if (d.platform?.os === 'unknown') continue;
      const bytes = await readBlob(dir, d.digest);
      platforms.push({ desc: d, bytes, manifest: parseManifest(bytes), platform: d.platform });
    }
  } else {
    const manifest = parseManifest(chosenBytes);
    const cfg = JSON.parse(Buffer.from(await readBlob(dir, manifest.config.digest)).toString('utf8')) as { architecture?: string; os?: string; variant?: string };
    singlePlatform = { architecture: cfg.architecture ?? 'amd64', os: cfg.os ?? 'linux', ...(cfg.variant ? { variant: cfg.variant } : {}) };
    platforms.push({ desc: chosen, bytes: chosenBytes, manifest, platform: singlePlatform });
  }

  const layers = new Map<string, Descriptor>();
  for (const p of platforms) for (const l of p.manifest.layers) if (l.size >= minLayerSize) layers.set(l.digest, l);
  const progress = new Progress(layers.size, [...layers.values()].reduce((n, l) => n + l.size, 0));
  const pool = new IndexerPool(values.workers ? { size: Number(values.workers) } : {});
  const ztocs = new Map<string, LayerZtoc>();
  const ztocBytes = new Map<string, Uint8Array>();
  try {
    await Promise.all(
      [...layers.values()].map(async (l) => {
        const r = await pool.index(createReadStream(blobPath(dir, l.digest), { highWaterMark: 1 << 20 }), { mediaType: l.mediaType, spanSize, buildToolIdentifier, expectedDigest: l.digest, expectedSize: l.size });
        progress.step(l.size, l.digest.slice(7, 19));
        if (r.status === 'indexed') {
          ztocs.set(l.digest, { digest: r.ztocDigest, size: r.ztoc.length, needsXattrs: r.needsXattrs });
          ztocBytes.set(r.ztocDigest, r.ztoc);
        } else {
          process.stderr.write(`layer ${l.digest}: no zTOC: ${r.reason} (${r.code})\n`);
        }
      }),
    );
  } finally {
    await pool.close();
  }

  const newBlobs = new Map<string, Uint8Array>(ztocBytes);
  newBlobs.set(EMPTY_JSON_DIGEST, EMPTY_JSON);
  const inputs = [];
  for (const p of platforms) {
    const own = new Map([...ztocs].filter(([d]) => p.manifest.layers.some((l) => l.digest === d)));
    if (own.size === 0) {
      inputs.push({ manifestBytes: p.bytes });
      continue;
    }
    const soci = buildSociIndex(p.manifest.layers, own, { version: 'v2', spanSize, buildToolIdentifier });
    newBlobs.set(soci.digest, soci.bytes);
    inputs.push({ manifestBytes: p.bytes, sociIndex: { bytes: soci.bytes, digest: soci.digest, size: soci.size }, ...(p.platform ? { platform: p.platform } : {}) });
  }
  if (ztocs.size === 0) throw new Error('no layer could be indexed: the SOCI index would be empty (lower --min-layer-size?)');
  const image = buildSociImage({ mediaType: chosen.mediaType, bytes: chosenBytes, ...(singlePlatform ? { platform: singlePlatform } : {}) }, inputs);
  for (const d of image.documents.values()) newBlobs.set(d.digest, d.bytes);

  // Output layout: every original blob (hard-linked when possible) plus the new ones.
  const out = values.out;
  await mkdir(join(out, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(out, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  for (const name of await readdir(join(dir, 'blobs', 'sha256'))) {
    const from = join(dir, 'blobs', 'sha256', name);
    const to = join(out, 'blobs', 'sha256', name);
    if (await stat(to).catch(() => undefined)) continue;
    await link(from, to).catch(() => copyFile(from, to));
  }
  for (const [digest, bytes] of newBlobs) await writeFile(blobPath(out, digest), bytes);
  const desc: Descriptor = { mediaType: MediaType.ociIndex, digest: image.index.digest, size: image.index.size, ...(chosen.annotations ? { annotations: chosen.annotations } : {}) };
  const outIndex: Index = { ...top, manifests: top.manifests.map((d) => (d === chosen ? desc : d)) };
  await writeFile(join(out, 'index.json'), marshalIndex(outIndex));
  process.stdout.write(`${image.index.digest} SOCI-enabled index: ${ztocs.size} zTOCs, ${image.sociIndexes.length} SOCI index(es)${tag ? `, tag ${tag}` : ''}\n`);
  return 0;
}
