/**
 * `UpstreamClient`: the proxy's client for one configured upstream registry (OCI distribution API, pull side).
 * It composes auth → redirect → retry → undici Agent (each a small wrapper) and turns replies into plain
 * results or `OciError`s. Manifests are read into memory with a size bound, their media type taken from
 * Content-Type and their digest verified when fetched by digest; the OCI and Docker manifest/index types
 * are always added to Accept (docker-registry 2.8 hides OCI manifests otherwise, test-environment.md §3.3).
 * Blobs are streamed, never buffered; a Range is passed through and a 200 reply to it is reported.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isDigest, verifyDigest, sha256 } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { MediaType } from '../../oci/media-types.js';
import { AuthCache, withAuth } from './auth.js';
import type { Upstream } from './config.js';
import { errorFromException, errorFromResponse, type RequestKind } from './error-map.js';
import { readBounded } from './read-body.js';
import { withRedirects } from './redirect.js';
import { withRetry } from './retry.js';
import { byMethod, createHeadSend, createUpstreamAgent, dispatcherSend, header, type Send, type UpstreamResponse } from './transport.js';

/** Accept types added to every manifest request the client did not already list. */
export const MANIFEST_ACCEPT: readonly string[] = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList];

const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface CallOptions {
  /** The client's own Authorization header (Basic → credentials for the token flow; Bearer → forwarded). */
  clientAuth?: string;
  signal?: AbortSignal;
}

export interface ManifestOptions extends CallOptions {
  accept?: readonly string[];
  method?: 'GET' | 'HEAD';
}

export interface ManifestResult {
  status: number;
  /** From Content-Type (parameters dropped); the body's `mediaType` only when the header is missing. */
  mediaType: string;
  /** The reference when it is a digest (verified for GET), else Docker-Content-Digest, else sha256 of the body. */
  digest: string;
  /** The exact bytes (GET only). */
  bytes?: Uint8Array;
  size: number;
}

export interface BlobOptions extends CallOptions {
  /** A `Range` header value, passed through (e.g. `bytes=0-1023`). */
  range?: string;
}

export interface BlobResult {
  /** 200, or 206 for an honoured range. */
  status: number;
  /** content-length, content-range, content-type, etag, accept-ranges, docker-content-digest, when present. */
  headers: Record<string, string>;
  /** Streamed bytes; the caller must consume or destroy it. Undefined for HEAD. */
  body: Readable;
  /** True when a range was asked for but the upstream sent the whole blob (200): slice or refuse. */
  rangeIgnored: boolean;
}

export interface BlobHeadResult {
  status: number;
  size: number | undefined;
  digest: string;
  headers: Record<string, string>;
}

export interface TagsResult {
  name: string;
  tags: string[];
  /** Query for the next page, from the upstream's Link header. */
  next?: { n?: number; last?: string };
}

export interface PingResult {
  /** The upstream answered /v2/ with 200 or 401 (an API is there). */
  reachable: boolean;
  status: number;
}

export interface UpstreamClientOptions {
  /** Dispatcher to use instead of an Agent built from the upstream's TLS/timeout config (tests). */
  dispatcher?: Dispatcher;
  authCache?: AuthCache;
  now?: () => number;
}

const BLOB_HEADERS = ['content-length', 'content-range', 'content-type', 'etag', 'accept-ranges', 'docker-content-digest', 'last-modified'];

function pick(res: UpstreamResponse, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = header(res, n);
    if (v !== undefined) out[n] = v;
  }
  return out;
}

export class UpstreamClient {
  readonly upstream: Upstream;
  readonly #send: Send;
  readonly #ownDispatcher: Dispatcher | undefined;
  readonly #head: { send: Send; close(): void } | undefined;

  constructor(upstream: Upstream, opts: UpstreamClientOptions = {}) {
    this.upstream = upstream;
    const dispatcher = opts.dispatcher ?? createUpstreamAgent(upstream);
    this.#ownDispatcher = opts.dispatcher ? undefined : dispatcher;
    // An injected dispatcher (tests, fault relays) sees every request; our own keeps HEADs on keep-alive sockets.
    this.#head = opts.dispatcher ? undefined : createHeadSend(upstream);
    const base = this.#head ? byMethod(dispatcherSend(dispatcher), this.#head.send) : dispatcherSend(dispatcher);
    const retried = withRetry(base, upstream.retry);
    const redirected = upstream.followRedirects ? withRedirects(retried, { maxRedirects: upstream.maxRedirects, allowPlainHttp: upstream.plainHttp }) : retried;
    this.#send = withAuth(redirected, { upstream, tokenSend: redirected, cache: opts.authCache, now: opts.now });
  }

  async close(): Promise<void> {
    this.#head?.close();
    await this.#ownDispatcher?.close();
  }

  async #call(kind: RequestKind, method: 'GET' | 'HEAD', path: string, repo: string | undefined, headers: Record<string, string>, opts: CallOptions): Promise<UpstreamResponse> {
    const h = { ...headers };
    if (opts.clientAuth) h.authorization = opts.clientAuth;
    const url = new URL(path, this.upstream.origin);
    let res: UpstreamResponse;
    try {
      res = await this.#send({ method, url, headers: h, scope: repo ? `repository:${repo}:pull` : undefined, signal: opts.signal });
    } catch (err) {
      throw errorFromException(err, this.upstream.name);
    }
    if (res.status >= 200 && res.status < 300) return res;
    if (res.status >= 300 && res.status < 400 && kind === 'blob' && !this.upstream.followRedirects) return res;
    throw await errorFromResponse(res, kind, this.upstream.name);
  }

  async getManifest(repo: string, reference: string, opts: ManifestOptions = {}): Promise<ManifestResult> {
    const byDigest = isDigest(reference);
    if (!byDigest && !TAG_RE.test(reference)) throw new OciError('MANIFEST_INVALID', 'invalid manifest reference');
    const method = opts.method ?? 'GET';
    const accept = [...(opts.accept ?? [])];
    const listed = new Set(accept.map((a) => a.split(';')[0]!.trim().toLowerCase()));
    for (const t of MANIFEST_ACCEPT) if (!listed.has(t)) accept.push(t);
    const res = await this.#call('manifest', method, `/v2/${repo}/manifests/${reference}`, repo, { accept: accept.join(', ') }, opts);
    const contentType = header(res, 'content-type')?.split(';')[0]?.trim();
    const headerDigest = header(res, 'docker-content-digest');
    const length = header(res, 'content-length');
    if (method === 'HEAD') {
      res.body.resume();
      if (length !== undefined && Number(length) > this.upstream.maxManifestBytes) throw new OciError('UNAVAILABLE', `upstream manifest of ${length} bytes exceeds the ${this.upstream.maxManifestBytes}-byte limit`);
      const digest = byDigest ? reference : headerDigest && isDigest(headerDigest) ? headerDigest : undefined;
      if (digest && contentType && length !== undefined) return { status: res.status, mediaType: contentType, digest, size: Number(length) };
      const full = await this.getManifest(repo, reference, { ...opts, method: 'GET' }); // HEAD told too little
      return { status: full.status, mediaType: full.mediaType, digest: full.digest, size: full.size };
    }
    const bytes = await readBounded(res.body, this.upstream.maxManifestBytes, 'manifest', length);
    let digest: string;
    if (byDigest) {
      if (!verifyDigest(bytes, reference)) throw new OciError('DIGEST_INVALID', `upstream ${this.upstream.name} sent a manifest not matching ${reference}`, { status: 502 });
      digest = reference;
    } else {
      digest = sha256(bytes);
      if (headerDigest && headerDigest.startsWith('sha256:') && headerDigest !== digest) {
        throw new OciError('DIGEST_INVALID', `upstream ${this.upstream.name} sent a manifest not matching its Docker-Content-Digest`, { status: 502 });
      }
    }
    let mediaType = contentType;
    if (!mediaType) {
      try {
        const mt = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown }).mediaType;
        if (typeof mt === 'string') mediaType = mt;
      } catch { /* not JSON: leave it to the caller */ }
    }
    return { status: res.status, mediaType: mediaType ?? 'application/octet-stream', digest, bytes, size: bytes.length };
  }

  async getBlob(repo: string, digest: string, opts: BlobOptions = {}): Promise<BlobResult> {
    if (!isDigest(digest)) throw new OciError('DIGEST_INVALID');
    const headers: Record<string, string> = {};
    if (opts.range) headers.range = opts.range;
    const res = await this.#call('blob', 'GET', `/v2/${repo}/blobs/${digest}`, repo, headers, opts);
    return { status: res.status, headers: pick(res, [...BLOB_HEADERS, 'location']), body: res.body, rangeIgnored: Boolean(opts.range) && res.status === 200 };
  }

  async headBlob(repo: string, digest: string, opts: CallOptions = {}): Promise<BlobHeadResult> {
    if (!isDigest(digest)) throw new OciError('DIGEST_INVALID');
    const res = await this.#call('blob', 'HEAD', `/v2/${repo}/blobs/${digest}`, repo, {}, opts);
    res.body.resume();
    const len = header(res, 'content-length');
    return { status: res.status, size: len === undefined ? undefined : Number(len), digest, headers: pick(res, BLOB_HEADERS) };
  }

  async listTags(repo: string, query: { n?: number; last?: string } = {}, opts: CallOptions = {}): Promise<TagsResult> {
    const q = new URLSearchParams();
    if (query.n !== undefined) q.set('n', String(query.n));
    if (query.last !== undefined) q.set('last', query.last);
    const qs = q.size ? `?${q}` : '';
    const res = await this.#call('tags', 'GET', `/v2/${repo}/tags/list${qs}`, repo, { accept: 'application/json' }, opts);
    const body = await readBounded(res.body, 16 * 1024 * 1024, 'tag list', header(res, 'content-length'));
    let json: { name?: unknown; tags?: unknown };
    try {
      json = JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      throw new OciError('UNAVAILABLE', `upstream ${this.upstream.name} sent an invalid tag list`);
    }
    const tags = Array.isArray(json.tags) ? json.tags.filter((t): t is string => typeof t === 'string') : [];
    const out: TagsResult = { name: typeof json.name === 'string' ? json.name : repo, tags };
    const link = /<([^>]*)>\s*;\s*rel="?next"?/.exec(header(res, 'link') ?? '');
    if (link?.[1]) {
      const u = new URL(link[1], this.upstream.origin);
      const n = u.searchParams.get('n');
      const last = u.searchParams.get('last');
      out.next = { ...(n !== null && /^\d+$/.test(n) ? { n: Number(n) } : {}), ...(last !== null ? { last } : {}) };
    }
    return out;
  }

  async ping(opts: CallOptions = {}): Promise<PingResult> {
    try {
      const res = await this.#call('ping', 'GET', '/v2/', undefined, {}, opts);
      res.body.resume();
      return { reachable: true, status: res.status };
    } catch (err) {
      const e = err as OciError;
      if (e.code === 'UNAUTHORIZED') return { reachable: true, status: 401 };
      if (e.code === 'UNAVAILABLE') return { reachable: false, status: 0 };
      return { reachable: false, status: e.status };
    }
  }
}
