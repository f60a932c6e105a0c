/**
 * Image resolution as soci-snapshotter does it (soci-format.md §2.3–2.5): a tag or digest → (image index →
 * the manifest for the wanted platform) → the platform manifest → its `com.amazon.soci.index-digest`
 * annotation → the SOCI index, fetched by digest through `/manifests/` with `Accept` the OCI manifest type
 * (the answer's Content-Type must be that type, the body must match the digest, `config.mediaType` must be
 * the v2 index type) → every zTOC blob, fetched eagerly and in parallel, digest-verified and decoded. Any
 * failure in the SOCI part means "no SOCI index": every layer is then unpacked, as soci defers to a normal
 * pull. Resolved images are cached per manifest digest; tags are resolved upstream each time, except within
 * `tagTtlMs` (the containerd plugin asks once per layer) or while the same tag is being resolved. zTOCs are
 * checked whole but their TOCs stay in the fetched bytes (`ZtocReader` `lazyToc`: a tree build walks them
 * once); the zTOC reader's code loads while the first requests are in flight. A big zTOC (over
 * `ztocWorkerBytes`) is fetched, verified, checked and turned into its native FUSE table on the table
 * worker (`NativeTableWorker.fetchZtoc`, one attempt with the auth this thread already has), so a busy main
 * thread does not starve its transfer; the bytes and table come back transferred, and anything but a
 * digest or size mismatch falls back to the fetch here (retries, token flow).
 */
import { Annotation, MediaType, isIndexType } from '../../oci/media-types.js';
import { OciError } from '../../oci/errors.js';
import { parseIndex, parseManifest } from '../../oci/go-json.js';
import type { Descriptor, Manifest, Platform } from '../../oci/types.js';
import type { ZtocReader } from '../../indexer/reader.js';
import type { NativeTable } from '../fs/native-fs.js';
import type { FetchedZtoc, NativeTableWorker } from '../fs/native-table-worker.js';
import type { ImageRef, RegistryClient } from './registry-client.js';

export interface ResolvedImage {
  ref: ImageRef;
  manifestDigest: string;
  manifest: Manifest;
  /** Undefined when the image has no usable SOCI index. */
  sociIndexDigest: string | undefined;
  /** Why there is no SOCI index (for logs). */
  noIndexReason: string | undefined;
  /** image layer digest → its zTOC. */
  ztocs: Map<string, { ztocDigest: string; reader: ZtocReader; table?: Promise<NativeTable | undefined> | undefined }>;
}

export interface ImageResolverOptions {
  client: RegistryClient;
  platform?: Platform;
  tagTtlMs?: number;
  /** zTOCs of more bytes than this are fetched on the table worker (default 4 MiB; Infinity: never). */
  ztocWorkerBytes?: number;
  onEvent?: (e: { type: 'resolved'; manifestDigest: string; sociIndexDigest?: string | undefined; ztocs: number; reason?: string | undefined }) => void;
}

const ACCEPT_ANY = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest];
const ACCEPT_MANIFEST = [MediaType.ociManifest, MediaType.dockerManifest];

export function pickPlatform(list: readonly Descriptor[], want: Platform): Descriptor | undefined {
  const candidates = list.filter((d) => d.platform?.os === want.os && d.platform?.architecture === want.architecture && d.artifactType === undefined);
  if (want.variant !== undefined) return candidates.find((d) => d.platform?.variant === want.variant) ?? candidates[0];
  return candidates[0];
}

export class ImageResolver {
  readonly #client: RegistryClient;
  readonly #platform: Platform;
  readonly #tagTtl: number;
  readonly #onEvent: ImageResolverOptions['onEvent'];
  readonly #workerBytes: number;
  #tables: Promise<{ worker: NativeTableWorker; native: boolean } | undefined> | undefined;
  readonly #byDigest = new Map<string, Promise<ResolvedImage>>();
  readonly #tags = new Map<string, { digest: string; at: number }>();
  /** Tag resolutions under way (a second ask for the same tag waits for the first). */
  readonly #pendingTags = new Map<string, Promise<ResolvedImage>>();

  constructor(opts: ImageResolverOptions) {
    this.#client = opts.client;
    this.#platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
    this.#tagTtl = opts.tagTtlMs ?? 60_000;
    this.#onEvent = opts.onEvent;
    this.#workerBytes = opts.ztocWorkerBytes ?? 4 * 1024 * 1024;
  }

  /** The table worker (made at the first ask, started), shared with the layer provider; and whether the native FUSE server is there. */
  tableWorker(): Promise<{ worker: NativeTableWorker; native: boolean } | undefined> {
    this.#tables ??= Promise.all([import('../fs/native-table-worker.js'), import('../fs/native-fs.js')]).then(([{ NativeTableWorker: Make }, { nativeFuseAvailable }]) => {
      const worker = new Make();
      worker.warm();
      return { worker, native: nativeFuseAvailable() };
    }, () => undefined);
    return this.#tables;
  }

  /** A big zTOC through the worker; undefined: fetch it here (no worker, or it failed other than by a mismatch). */
  async #viaWorker(ref: ImageRef, z: Descriptor): Promise<FetchedZtoc | undefined> {
    const t = await this.tableWorker();
    const p = t?.worker.fetchZtoc({ ...this.#client.blobRequest(ref, z.digest), digest: z.digest, size: z.size, table: t.native });
    if (p === undefined) return undefined;
    try {
      return await p;
    } catch (err) {
      if ((err as { fallback?: boolean }).fallback === true) return undefined;
      throw new OciError((err as { code?: string }).code === 'SIZE_INVALID' ? 'SIZE_INVALID' : 'DIGEST_INVALID', `/v2/${ref.repo}/blobs/${z.digest}: ${(err as Error).message}`);
    }
  }

  /** Resolves `ref` (or `manifestDigest` when the caller knows the platform manifest). */
  async resolve(ref: ImageRef, manifestDigest?: string): Promise<ResolvedImage> {
    const key = `${ref.host}/${ref.repo}`;
    let digest = manifestDigest;
    if (digest === undefined) {
      const t = this.#tags.get(`${key}:${ref.reference}`);
      if (t !== undefined && Date.now() - t.at < this.#tagTtl) digest = t.digest;
    }
    if (digest !== undefined) {
      const hit = this.#byDigest.get(`${key}@${digest}`);
      if (hit !== undefined) return hit;
      return this.#cache(key, digest, this.#fromManifest({ ...ref, reference: digest }, undefined));
    }
    const tagKey = `${key}:${ref.reference}`;
    const pending = this.#pendingTags.get(tagKey);
    if (pending !== undefined) return pending;
    const p = this.#fromTag(ref, key);
    this.#pendingTags.set(tagKey, p);
    const forget = (): void => void (this.#pendingTags.get(tagKey) === p && this.#pendingTags.delete(tagKey));
    p.then(forget, forget);
    return p;
  }

  async #fromTag(ref: ImageRef, key: string): Promise<ResolvedImage> {
    const top = await this.#client.getManifest(ref, ACCEPT_ANY);
    let platformDigest = top.digest;
    let manifestBytes: Uint8Array | undefined = top.bytes;
    if (isIndexType(top.mediaType) || (top.mediaType === '' && 'manifests' in (JSON.parse(Buffer.from(top.bytes).toString()) as object))) {
      const index = parseIndex(top.bytes);
      const d = pickPlatform(index.manifests, this.#platform);
      if (d === undefined) throw new OciError('MANIFEST_UNKNOWN', `${ref.repo}:${ref.reference} has no ${this.#platform.os}/${this.#platform.architecture} manifest`);
      platformDigest = d.digest;
      manifestBytes = undefined;
    }
    this.#tags.set(`${key}:${ref.reference}`, { digest: platformDigest, at: Date.now() });
    const hit = this.#byDigest.get(`${key}@${platformDigest}`);
    if (hit !== undefined) return hit;
    return this.#cache(key, platformDigest, this.#fromManifest({ ...ref, reference: platformDigest }, manifestBytes));
  }

  #cache(key: string, digest: string, p: Promise<ResolvedImage>): Promise<ResolvedImage> {
    this.#byDigest.set(`${key}@${digest}`, p);
    p.catch(() => this.#byDigest.delete(`${key}@${digest}`)); // failures are not cached
    return p;
  }

  async #fromManifest(ref: ImageRef, bytes: Uint8Array | undefined): Promise<ResolvedImage> {
    const b = bytes ?? (await this.#client.getManifest(ref, ACCEPT_MANIFEST)).bytes;
    const manifest = parseManifest(b);
    const out: ResolvedImage = { ref, manifestDigest: ref.reference, manifest, sociIndexDigest: undefined, noIndexReason: undefined, ztocs: new Map() };
    const sociDigest = manifest.annotations?.[Annotation.sociIndexDigest];
    if (sociDigest === undefined || sociDigest === '') {
      out.noIndexReason = `manifest has no ${Annotation.sociIndexDigest} annotation`;
    } else {
      try {
        out.ztocs = await this.#fetchSoci(ref, sociDigest, manifest);
        out.sociIndexDigest = sociDigest;
      } catch (err) {
        // soci wraps every failure here in ErrNoIndex and takes the normal path; a registry outage,
        // though, is worth surfacing rather than silently downloading everything for good.
        // Bytes that do not match their digest or size were damaged in transit: also transient, and not
        // cached (a thrown error is not), so the next mount tries the index again instead of unpacking.
        const code = (err as { code?: string }).code;
        if (code === 'UNAVAILABLE' || code === 'DIGEST_INVALID' || code === 'SIZE_INVALID') throw err;
        out.noIndexReason = `SOCI index ${sociDigest}: ${(err as Error).message}`;
      }
    }
    this.#onEvent?.({ type: 'resolved', manifestDigest: out.manifestDigest, sociIndexDigest: out.sociIndexDigest, ztocs: out.ztocs.size, reason: out.noIndexReason });
    return out;
  }

  async #fetchSoci(ref: ImageRef, sociDigest: string, manifest: Manifest): Promise<ResolvedImage['ztocs']> {
    const loading = import('../../indexer/reader.js');
    loading.catch(() => undefined);
    if (Number.isFinite(this.#workerBytes)) void this.tableWorker(); // boots while the SOCI index is fetched
    const got = await this.#client.getManifest({ ...ref, reference: sociDigest }, [MediaType.ociManifest]);
    if (got.mediaType !== MediaType.ociManifest) throw new OciError('MANIFEST_INVALID', `served as ${got.mediaType || '(no Content-Type)'}, not ${MediaType.ociManifest}`);
    const soci = parseManifest(got.bytes);
    if (soci.config.mediaType !== MediaType.sociIndexV2) throw new OciError('MANIFEST_INVALID', `config mediaType ${soci.config.mediaType} is not ${MediaType.sociIndexV2}`);
    const wanted = soci.layers.filter((z) => z.mediaType === MediaType.sociLayer && z.annotations?.[Annotation.imageLayerDigest] !== undefined);
    const fetched = await Promise.all(wanted.map(async (z) => {
      const big = z.size > this.#workerBytes && /^sha256:[0-9a-f]{64}$/.test(z.digest) ? await this.#viaWorker(ref, z) : undefined;
      const bytes = big?.bytes ?? (await this.#client.getBlob(ref, z.digest, z.size));
      const { ZtocReader: Reader } = await loading;
      if (bytes.length !== z.size) throw new OciError('SIZE_INVALID', `zTOC ${z.digest}: ${bytes.length} bytes, descriptor says ${z.size}`);
      const reader = Reader.fromBytes(bytes, { lazyToc: true, tocChecked: big?.checked === true });
      return { layerDigest: z.annotations?.[Annotation.imageLayerDigest] as string, ztocDigest: z.digest, reader, table: big?.table };
    }));
    const map: ResolvedImage['ztocs'] = new Map();
    for (const f of fetched) {
      const layer = manifest.layers.find((l) => l.digest === f.layerDigest);
      // A zTOC for a layer the image does not have, or of another size, is not used for that layer.
      if (layer === undefined || layer.size !== f.reader.ztoc.compressedArchiveSize) continue;
      map.set(f.layerDigest, { ztocDigest: f.ztocDigest, reader: f.reader, ...(f.table ? { table: f.table } : {}) });
    }
    return map;
  }
}
