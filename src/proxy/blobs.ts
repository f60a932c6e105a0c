/**
 * `GET`/`HEAD /v2/<name>/blobs/<digest>`. Synthesized blobs (zTOCs, the `{}` config) come from the cache
 * after the access check; every other blob streams from upstream without buffering. A single Range gets a
 * 206 with `Content-Range` — also when the upstream ignored the Range and sent the whole blob, which the
 * proxy then cuts itself — because a 200 silently corrupts lazy loading. Several ranges get a 400, on
 * which soci falls back to single ranges.
 *
 * With a blob cache (blob-cache.ts), a whole upstream blob streamed to a client is kept once verified, and
 * a blob already kept is served from the local file — GET, Range and HEAD alike — but only after the
 * upstream accepted this client's credentials for this repository and blob (authz.ts, remembered per
 * credential for a minute), so a cached private layer is never handed to a client the upstream refuses.
 */
import { Readable } from 'node:stream';
import { EMPTY_JSON_DIGEST } from '../oci/media-types.js';
import { OciError } from '../oci/errors.js';
import { isDigest, verifyDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import type { ArtifactRecords } from './artifacts.js';
import type { AccessChecker } from './authz.js';
import type { ClientCredentials, UpstreamRegistry } from './contracts.js';
import type { ProxyEvents } from './events.js';
import { parseRange, resolveRange, sliceStream } from './range.js';
import type { StreamedBlob } from './streamed-blob.js';
import type { BlobCache } from './blob-cache.js';

/** Indexes a layer again (single flight), storing its zTOC; used when a served zTOC went missing. */
export type RebuildZtoc = (upstream: UpstreamRegistry, repo: string, layer: Descriptor, credentials: ClientCredentials) => Promise<unknown>;

export interface BlobRequest {
  upstream: UpstreamRegistry;
  repo: string;
  digest: string;
  method: 'GET' | 'HEAD';
  range: string | undefined;
  credentials: ClientCredentials;
}

function baseHeaders(digest: string): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    'Docker-Distribution-API-Version': 'registry/2.0',
    'Accept-Ranges': 'bytes',
    Etag: `"${digest}"`,
  };
}

export class BlobService {
  readonly #records: ArtifactRecords;
  readonly #access: AccessChecker;
  readonly #events: ProxyEvents;

  readonly #rebuild: RebuildZtoc | undefined;
  readonly #blobCache: BlobCache | undefined;

  constructor(deps: { records: ArtifactRecords; access: AccessChecker; events: ProxyEvents; rebuild?: RebuildZtoc; blobCache?: BlobCache | undefined }) {
    this.#records = deps.records;
    this.#access = deps.access;
    this.#events = deps.events;
    this.#rebuild = deps.rebuild;
    this.#blobCache = deps.blobCache;
  }

  async handle(req: BlobRequest): Promise<Response | StreamedBlob> {
    if (!isDigest(req.digest)) throw new OciError('DIGEST_INVALID', `invalid digest ${JSON.stringify(req.digest.slice(0, 80))}`);
    const spec = parseRange(req.range);
    if (spec.kind === 'multi') throw new OciError('RANGE_INVALID', 'multiple ranges are not supported; request one range at a time', { status: 400 });

    const synthesized = await this.#synthesized(req);
    if (synthesized) return this.#serveBytes(req, synthesized, spec);
    const cached = await this.#fromCache(req, spec);
    if (cached) return cached;

    const single = spec.kind === 'single' ? spec : undefined;
    const r = await req.upstream.getBlob(req.repo, req.digest, { method: req.method, range: single ? req.range : undefined, credentials: req.credentials });
    // The upstream just let these credentials read this blob: a cached copy may be served to them.
    this.#access.remember(req.upstream, req.repo, { kind: 'blob', digest: req.digest }, req.credentials);
    const headers = baseHeaders(req.digest);
    if (r.contentType) headers['Content-Type'] = r.contentType;
    const streamed = (status: number, body: AsyncIterable<Uint8Array>, verify: string | undefined): StreamedBlob => {
      const sink = verify ? this.#blobCache?.sink(req.digest, r.size) : undefined;
      return {
        kind: 'streamed-blob',
        status,
        headers,
        body: body instanceof Readable ? body : Readable.from(body, { objectMode: false }),
        verify,
        ...(sink ? { sink } : {}),
        onDone: (bytes) => this.#events.publish({ type: 'bytes-served', kind: 'upstream-blob', bytes }),
      };
    };
    if (r.status === 206 && single) {
      if (r.contentRange) headers['Content-Range'] = r.contentRange;
      const m = r.contentRange ? /bytes (\d+)-(\d+)\//.exec(r.contentRange) : null;
      if (m) headers['Content-Length'] = String(Number(m[2]) - Number(m[1]) + 1);
      if (req.method === 'HEAD' || !r.body) return new Response(null, { status: 206, headers });
      return streamed(206, r.body, undefined);
    }
    if (single && r.size !== undefined) {
      // The upstream ignored the Range: cut it here rather than answer 200.
      const range = resolveRange(single, r.size);
      if (!range) {
        r.body?.destroy?.();
        return new Response(null, { status: 416, headers: { ...headers, 'Content-Range': `bytes */${r.size}` } });
      }
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${r.size}`;
      headers['Content-Length'] = String(range.end - range.start + 1);
      if (req.method === 'HEAD' || !r.body) {
        r.body?.destroy?.();
        return new Response(null, { status: 206, headers });
      }
      return streamed(206, sliceStream(r.body, range.start, range.end), undefined);
    }
    if (r.size !== undefined) headers['Content-Length'] = String(r.size);
    if (req.method === 'HEAD' || !r.body) {
      r.body?.destroy?.();
      return new Response(null, { status: 200, headers });
    }
    return streamed(200, r.body, req.digest);
  }

  /** A blob kept by the blob cache, after the upstream accepted this client for it; undefined on a miss. */
  async #fromCache(req: BlobRequest, spec: ReturnType<typeof parseRange>): Promise<Response | StreamedBlob | undefined> {
    const cache = this.#blobCache;
    if (!cache) return undefined;
    if (req.method === 'HEAD') {
      const size = await cache.size(req.digest);
      if (size === undefined) return undefined;
      await this.#access.check(req.upstream, req.repo, { kind: 'blob', digest: req.digest }, req.credentials);
      const headers = baseHeaders(req.digest);
      if (spec.kind !== 'single') return new Response(null, { status: 200, headers: { ...headers, 'Content-Length': String(size) } });
      const range = resolveRange(spec, size);
      if (!range) return new Response(null, { status: 416, headers: { ...headers, 'Content-Range': `bytes */${size}` } });
      return new Response(null, { status: 206, headers: { ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': String(range.end - range.start + 1) } });
    }
    const opened = await cache.open(req.digest);
    if (!opened) return undefined;
    try {
      await this.#access.check(req.upstream, req.repo, { kind: 'blob', digest: req.digest }, req.credentials);
    } catch (err) {
      await opened.handle.close();
      throw err;
    }
    const headers = baseHeaders(req.digest);
    let start = 0;
    let end = opened.size - 1;
    let status = 200;
    if (spec.kind === 'single') {
      const range = resolveRange(spec, opened.size);
      if (!range) {
        await opened.handle.close();
        return new Response(null, { status: 416, headers: { ...headers, 'Content-Range': `bytes */${opened.size}` } });
      }
      ({ start, end } = range);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${opened.size}`;
    }
    headers['Content-Length'] = String(end - start + 1);
    return {
      kind: 'streamed-blob',
      status,
      headers,
      file: { handle: opened.handle, start, end },
      verify: undefined,
      onDone: (bytes) => this.#events.publish({ type: 'bytes-served', kind: 'cached-blob', bytes }),
    };
  }

  async #synthesized(req: BlobRequest): Promise<Uint8Array | undefined> {
    if (req.digest === EMPTY_JSON_DIGEST) return this.#records.cache.getBlob(req.digest).then((b) => b ?? new Uint8Array([0x7b, 0x7d]));
    const rec = await this.#records.doc(req.digest);
    if (!rec) return undefined;
    await this.#access.check(req.upstream, req.repo, rec.source, req.credentials);
    const bytes = await this.#records.cache.getBlob(req.digest);
    if (bytes || !rec.layer || !this.#rebuild) return bytes;
    // A zTOC evicted or found corrupt while a SOCI index naming it is still out there: indexing is
    // deterministic, so build it again from the layer and serve it only if it is the same digest.
    const built = (await this.#rebuild(req.upstream, req.repo, { mediaType: rec.layer.mediaType, digest: rec.source.digest, size: rec.layer.size }, req.credentials)) as { ztocBytes?: Uint8Array } | undefined;
    const again = built?.ztocBytes ?? (await this.#records.cache.getBlob(req.digest));
    return again && verifyDigest(again, req.digest) ? again : undefined;
  }

  #serveBytes(req: BlobRequest, bytes: Uint8Array, spec: ReturnType<typeof parseRange>): Response {
    const headers = baseHeaders(req.digest);
    if (spec.kind === 'single') {
      const range = resolveRange(spec, bytes.length);
      if (!range) return new Response(null, { status: 416, headers: { ...headers, 'Content-Range': `bytes */${bytes.length}` } });
      const slice = bytes.subarray(range.start, range.end + 1);
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${bytes.length}`;
      headers['Content-Length'] = String(slice.length);
      this.#events.publish({ type: 'bytes-served', kind: 'synthesized', bytes: slice.length });
      return new Response(req.method === 'HEAD' ? null : slice, { status: 206, headers });
    }
    headers['Content-Length'] = String(bytes.length);
    this.#events.publish({ type: 'bytes-served', kind: 'synthesized', bytes: bytes.length });
    return new Response(req.method === 'HEAD' ? null : bytes, { status: 200, headers });
  }
}
