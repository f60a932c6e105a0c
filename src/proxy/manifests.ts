/**
 * `GET`/`HEAD /v2/<name>/manifests/<reference>`: the heart of the proxy.
 *
 * By digest: a synthesized digest (SOCI-enabled index, rewritten manifest, SOCI index) is served from the
 * cache once the upstream confirms the client may read its source; any other digest is the upstream's,
 * byte for byte. By tag: the tag is resolved upstream (HEAD first, so Docker Hub does not count it), and
 * when the client takes an OCI index and the tag asks for SOCI (`plainTags: soci`, or the `-soci`
 * suffix), the SOCI-enabled image is answered: from the cache, or built now (`wait`, bounded by
 * `indexWaitMs`) or behind the response (`background`). A HEAD takes the same path as a GET, so both
 * always agree on the digest. Whatever cannot be built in time, or fails, is answered with the original.
 */
import type { Logger } from 'pino';
import { isDigest, verifyDigest } from '../oci/digest.js';
import { isIndexType, isManifestType, MediaType } from '../oci/media-types.js';
import type { ArtifactRecords, SociRecord } from './artifacts.js';
import type { AccessChecker } from './authz.js';
import type { ClientCredentials, ManifestResponse, UpstreamRegistry } from './contracts.js';
import type { ProxyCoreConfig } from './config.js';
import type { ProxyEvents } from './events.js';
import { ALL_MANIFEST_TYPES, accepts } from './accept.js';
import { buildSociImage, isSociEnabled, type SociJobDeps, type UpstreamDocument } from './soci-job.js';
import { errorCode } from '../oci/errors.js';
import { TagCache, type TagResolution } from './tag-cache.js';

export interface ManifestRequest {
  upstream: UpstreamRegistry;
  repo: string;
  reference: string;
  method: 'GET' | 'HEAD';
  accept: string[];
  credentials: ClientCredentials;
  log: Logger;
}

export interface ManifestServiceDeps {
  records: ArtifactRecords;
  access: AccessChecker;
  config: ProxyCoreConfig;
  job: SociJobDeps;
  events: ProxyEvents;
}

export function manifestResponse(mediaType: string, digest: string, size: number, bytes: Uint8Array | undefined, method: 'GET' | 'HEAD'): Response {
  const headers = {
    'Content-Type': mediaType,
    'Content-Length': String(size),
    'Docker-Content-Digest': digest,
    'Docker-Distribution-API-Version': 'registry/2.0',
    Etag: `"${digest}"`,
  };
  return new Response(method === 'HEAD' || !bytes ? null : bytes, { status: 200, headers });
}

export class ManifestService {
  readonly #d: ManifestServiceDeps;
  /** In-process single flight of image builds; the cache's runOnce extends it across replicas. */
  readonly #jobs = new Map<string, Promise<SociRecord>>();
  readonly #tags: TagCache;

  constructor(deps: ManifestServiceDeps) {
    this.#d = deps;
    this.#tags = new TagCache({ ttlMs: deps.config.tagCacheMs });
  }

  /** Tag → digest through the short tag cache (off by default: then always a HEAD upstream). */
  async #resolveTag(req: ManifestRequest, tag: string, accept: readonly string[]): Promise<TagResolution> {
    const key = { upstream: req.upstream.name, repo: req.repo, tag, accept, credentials: req.credentials };
    const { resolution } = await this.#tags.resolve(key, async () => {
      const h = await req.upstream.getManifest(req.repo, tag, { accept, method: 'HEAD', credentials: req.credentials });
      return { mediaType: h.mediaType, digest: h.digest, size: h.size };
    });
    return resolution;
  }

  async handle(req: ManifestRequest): Promise<Response> {
    return isDigest(req.reference) ? this.#byDigest(req) : this.#byTag(req);
  }

  async #byDigest(req: ManifestRequest): Promise<Response> {
    const { records, access } = this.#d;
    const rec = await records.doc(req.reference);
    if (rec && rec.upstream && accepts(withAll(req.accept), rec.mediaType)) {
      // An upstream manifest seen before: immutable, so served from the cache once the upstream has
      // confirmed (recently, for this credential) that the client may read it.
      await access.check(req.upstream, req.repo, rec.source, req.credentials);
      const bytes = req.method === 'GET' ? await records.cache.getBlob(req.reference) : undefined;
      if (req.method === 'HEAD' || bytes) return manifestResponse(rec.mediaType, req.reference, rec.size, bytes, req.method);
    } else if (rec && !rec.upstream && (isManifestType(rec.mediaType) || isIndexType(rec.mediaType))) {
      await access.check(req.upstream, req.repo, rec.source, req.credentials);
      const bytes = req.method === 'GET' ? await records.cache.getBlob(req.reference) : undefined;
      if (req.method === 'HEAD' || bytes) return manifestResponse(rec.mediaType, req.reference, rec.size, bytes, req.method);
      const rebuilt = await this.#rebuildDoc(req, rec.source.digest);
      if (rebuilt) return manifestResponse(rec.mediaType, req.reference, rebuilt.length, rebuilt, 'GET');
      req.log.warn({ digest: req.reference }, 'synthesized manifest missing from cache and not rebuilt; asking upstream');
    }
    const r = await req.upstream.getManifest(req.repo, req.reference, { accept: withAll(req.accept), method: req.method, credentials: req.credentials });
    this.#keep(req, r);
    return manifestResponse(r.mediaType, r.digest, r.size, r.bytes, req.method);
  }

  /** Keeps an upstream manifest fetched by digest (the client verified it) for cache-first reads. */
  #keep(req: ManifestRequest, r: ManifestResponse): void {
    if (!r.bytes || !isDigest(r.digest) || r.bytes.length > this.#d.config.maxManifestBytes) return;
    this.#d.access.remember(req.upstream, req.repo, { kind: 'manifest', digest: r.digest }, req.credentials);
    void this.#d.records
      .putDoc(r.digest, r.bytes, { mediaType: r.mediaType, size: r.bytes.length, source: { kind: 'manifest', digest: r.digest }, upstream: true })
      .catch(() => undefined);
  }

  /**
   * A synthesized document lost from the cache (evicted, or found corrupt) while clients may still hold
   * its digest: build the SOCI image of its source again. The bytes are a pure function of the source, so
   * the same digest comes back; anything else is not served.
   */
  async #rebuildDoc(req: ManifestRequest, sourceDigest: string): Promise<Uint8Array | undefined> {
    try {
      const src = await req.upstream.getManifest(req.repo, sourceDigest, { accept: ALL_MANIFEST_TYPES, method: 'GET', credentials: req.credentials });
      if (!src.bytes) return undefined;
      await this.#start(req, { mediaType: src.mediaType, digest: src.digest, bytes: src.bytes });
      const bytes = await this.#d.records.cache.getBlob(req.reference);
      return bytes && verifyDigest(bytes, req.reference) ? bytes : undefined;
    } catch (err) {
      req.log.warn({ digest: req.reference, err: err instanceof Error ? err.message : String(err) }, 'rebuilding a lost document failed');
      return undefined;
    }
  }

  async #byTag(req: ManifestRequest): Promise<Response> {
    const { config } = this.#d;
    let tag = req.reference;
    let forced = false;
    const suffix = config.sociTagSuffix;
    if (suffix && tag.endsWith(suffix) && tag.length > suffix.length) {
      tag = tag.slice(0, -suffix.length);
      forced = true;
    }
    // `off` switches SOCI off entirely (a plain pull-through proxy), `-soci` tags included.
    const wantSoci = config.indexMode !== 'off' && (forced || config.plainTags === 'soci');
    if (!wantSoci || !accepts(req.accept, MediaType.ociIndex)) return this.#passthrough(req, tag);

    const head = await this.#resolveTag(req, tag, ALL_MANIFEST_TYPES);
    const original = { kind: 'manifest' as const, digest: head.digest };
    this.#d.access.remember(req.upstream, req.repo, original, req.credentials);

    const known = await this.#serveKnown(req, head.digest);
    if (known) return known;
    if (await this.#d.records.recentFailure(head.digest)) return this.#original(req, head);

    const up = await req.upstream.getManifest(req.repo, head.digest, { accept: ALL_MANIFEST_TYPES, method: 'GET', credentials: req.credentials });
    if (!up.bytes) return this.#original(req, head);
    this.#keep(req, up);
    const doc: UpstreamDocument = { mediaType: up.mediaType, digest: up.digest, bytes: up.bytes };
    if (!(isIndexType(doc.mediaType) || isManifestType(doc.mediaType)) || isSociEnabled(doc)) return this.#original(req, up);

    const job = this.#start(req, doc);
    if (config.indexMode === 'background' && !forced) return this.#original(req, up);
    const rec = await withTimeout(job, config.indexWaitMs);
    if (rec) return (await this.#serveKnown(req, head.digest, rec)) ?? this.#original(req, up);
    req.log.info({ digest: doc.digest, waitMs: config.indexWaitMs }, 'index not ready in time; answering with the original');
    return this.#original(req, up);
  }

  /** Serves the cached SOCI-enabled result for an upstream digest, if there is one. */
  async #serveKnown(req: ManifestRequest, upstreamDigest: string, rec?: SociRecord): Promise<Response | undefined> {
    const r = rec ?? (await this.#d.records.soci(upstreamDigest));
    this.#d.events.publish({ type: 'soci-result', hit: !!r && !rec });
    if (!r) return undefined;
    if (req.method === 'HEAD') return manifestResponse(r.mediaType, r.digest, r.size, undefined, 'HEAD');
    const bytes = await this.#d.records.cache.getBlob(r.digest);
    if (!bytes) return undefined;
    return manifestResponse(r.mediaType, r.digest, bytes.length, bytes, 'GET');
  }

  async #original(req: ManifestRequest, m: ManifestResponse): Promise<Response> {
    if (req.method === 'GET' && !m.bytes) {
      const full = await req.upstream.getManifest(req.repo, m.digest, { accept: ALL_MANIFEST_TYPES, method: 'GET', credentials: req.credentials });
      return manifestResponse(full.mediaType, full.digest, full.size, full.bytes, 'GET');
    }
    return manifestResponse(m.mediaType, m.digest, m.size, m.bytes, req.method);
  }

  async #passthrough(req: ManifestRequest, tag: string): Promise<Response> {
    if (this.#tags.enabled) {
      const head = await this.#resolveTag(req, tag, withAll(req.accept));
      if (req.method === 'HEAD') return manifestResponse(head.mediaType, head.digest, head.size, undefined, 'HEAD');
      const full = await req.upstream.getManifest(req.repo, head.digest, { accept: withAll(req.accept), method: 'GET', credentials: req.credentials });
      return manifestResponse(full.mediaType, full.digest, full.size, full.bytes, 'GET');
    }
    const r = await req.upstream.getManifest(req.repo, tag, { accept: withAll(req.accept), method: req.method, credentials: req.credentials });
    return manifestResponse(r.mediaType, r.digest, r.size, r.bytes, req.method);
  }

  /** Starts (or joins) the build of the SOCI-enabled image for `doc`. Never rejects unobserved. */
  #start(req: ManifestRequest, doc: UpstreamDocument): Promise<SociRecord> {
    const { records, job, events } = this.#d;
    const key = records.sociKey(doc.digest);
    let p = this.#jobs.get(key);
    if (p) return p;
    const started = Date.now();
    const log = req.log.child({ job: doc.digest });
    p = records.cache
      .runOnce(`job:${key}`, {
        lookup: () => records.soci(doc.digest),
        compute: () => buildSociImage({ ...job, logger: log }, req.upstream, req.repo, doc, req.credentials),
      })
      .catch(async (err: unknown) => {
        const code = errorCode(err) ?? 'ERROR';
        const message = err instanceof Error ? err.message : String(err);
        log.warn({ code, err: message }, 'SOCI build failed; serving the original image');
        events.publish({ type: 'image-failed', upstream: req.upstream.name, repo: req.repo, digest: doc.digest, ms: Date.now() - started, code });
        const ttl = this.#d.config.retryFailedAfterMs;
        if (ttl > 0) await records.putFailure(doc.digest, `${code}: ${message}`, ttl).catch(() => undefined);
        throw err;
      })
      .finally(() => this.#jobs.delete(key));
    p.catch(() => undefined);
    this.#jobs.set(key, p);
    return p;
  }

  /** Waits for every running build (graceful shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#jobs.values()]);
  }
}

function withAll(accept: readonly string[]): string[] {
  return accept.length ? [...accept] : [...ALL_MANIFEST_TYPES];
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.catch(() => undefined),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
