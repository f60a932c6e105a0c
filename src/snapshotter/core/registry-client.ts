/**
 * The snapshotter's own small registry client (it may not import `src/proxy`): image references,
 * manifests by tag or digest, whole blobs (digest-verified, streamed to a file), and the URL, headers and
 * limits of a blob's `HttpRangeSource` (remote/, undici) for lazy span reads. Manifests, zTOCs and blobs go
 * over node:http(s) with keep-alive agents: it loads in a few ms where undici takes ~80, so a mount's first
 * requests are in flight while the rest of the snapshotter loads. `plainHttp` picks http:// for every host; credentials are sent as
 * Basic; a `401` with a `Bearer` challenge runs the token flow (realm/service/scope, the Basic credentials
 * if any) and the token is kept per host and repository. Network errors, `429` and `5xx` are retried with
 * a short backoff, every attempt under a deadline, so an unreachable registry is an error, never a hang.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Dispatcher } from 'undici';
import { sha256Stream, verifyDigest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';

export interface ImageRef {
  /** `host[:port]` */
  host: string;
  repo: string;
  /** A tag or a digest. */
  reference: string;
}

/** Parses `host/repo:tag`, `host/repo@digest`, or (with `defaultHost`) `repo:tag` / `repo@digest`. */
export function parseImageRef(text: string, defaultHost?: string): ImageRef {
  let rest = text.replace(/^[a-z]+:\/\//, '');
  let host: string | undefined;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost') {
    host = first;
    rest = rest.slice(slash + 1);
  }
  host ??= defaultHost?.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
  if (host === undefined || host === '') throw new OciError('NAME_INVALID', `${text}: no registry host (give host/repo:tag or --registry)`);
  let repo: string;
  let reference: string;
  const at = rest.indexOf('@');
  if (at >= 0) {
    repo = rest.slice(0, at);
    reference = rest.slice(at + 1);
  } else {
    const colon = rest.lastIndexOf(':');
    repo = colon > rest.lastIndexOf('/') && colon >= 0 ? rest.slice(0, colon) : rest;
    reference = colon > rest.lastIndexOf('/') && colon >= 0 ? rest.slice(colon + 1) : 'latest';
  }
  if (!/^[a-z0-9]+(?:[._/-]+[a-z0-9]+)*$/.test(repo)) throw new OciError('NAME_INVALID', `${text}: bad repository name ${JSON.stringify(repo)}`);
  return { host, repo, reference };
}

export function formatImageRef(r: ImageRef): string {
  return `${r.host}/${r.repo}${r.reference.includes(':') ? '@' : ':'}${r.reference}`;
}

export interface RegistryClientOptions {
  plainHttp?: boolean;
  credentials?: { username: string; password: string } | undefined;
  /** Deadline of one attempt (default 30 s). */
  timeoutMs?: number;
  /** Further attempts after a transient failure (default 2). */
  retries?: number;
  /** undici dispatcher of the range sources (`rangeSourceOptions`); default undici's global one. */
  dispatcher?: Dispatcher;
}

/** What `HttpRangeSource` needs to read one blob by ranges. */
export interface RangeSourceSpec {
  url: string;
  options: { headers: Record<string, string>; timeoutMs: number; retries: number; dispatcher?: Dispatcher };
}

interface Response {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

async function readBody(body: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    chunks.push(c);
    n += c.length;
  }
  return chunks.length === 1 ? new Uint8Array((chunks[0] as Buffer).buffer, (chunks[0] as Buffer).byteOffset, n) : new Uint8Array(Buffer.concat(chunks, n));
}

function dump(body: IncomingMessage): void {
  body.on('error', () => undefined);
  body.resume();
}

export interface FetchedManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: string;
}

class Transient extends Error {}

function statusError(status: number, what: string): OciError {
  if (status === 404) return new OciError(what.includes('/manifests/') ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN', `${what}: 404`);
  if (status === 401) return new OciError('UNAUTHORIZED', `${what}: 401`);
  if (status === 403) return new OciError('DENIED', `${what}: 403`);
  return new OciError('UNAVAILABLE', `${what}: HTTP ${status}`);
}

export class RegistryClient {
  readonly #opts: RegistryClientOptions;
  readonly #tokens = new Map<string, string>();
  /** Keep-alive agents, so a mount's manifest, index and zTOC requests share connections. */
  readonly #http = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  readonly #https = new HttpsAgent({ keepAlive: true, maxSockets: 16 });

  constructor(opts: RegistryClientOptions = {}) {
    this.#opts = opts;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }

  /** One GET; resolves at the response headers. Errors before them reject (network errors, abort). */
  #get(url: string | URL, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const u = typeof url === 'string' ? new URL(url) : url;
    const https = u.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(u, { method: 'GET', headers, signal, agent: https ? this.#https : this.#http }, (res) => {
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: res });
      });
      req.on('error', reject);
      req.end();
    });
  }

  url(host: string, path: string): string {
    return `${this.#opts.plainHttp ? 'http' : 'https'}://${host}${path}`;
  }

  /** The Authorization header for `host`/`repo` as far as known now. */
  authHeaders(host: string, repo: string): Record<string, string> {
    const token = this.#tokens.get(`${host}/${repo}`);
    if (token !== undefined) return { authorization: `Bearer ${token}` };
    const c = this.#opts.credentials;
    return c ? { authorization: `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}` } : {};
  }

  /** GET a manifest by tag or digest; by digest, the body must match it. */
  async getManifest(ref: ImageRef, accept: readonly string[]): Promise<FetchedManifest> {
    const path = `/v2/${ref.repo}/manifests/${ref.reference}`;
    return this.#withRetries(path, async (signal) => {
      const res = await this.#send(ref, path, { accept: accept.join(', ') }, signal);
      const bytes = await readBody(res.body);
      const mediaType = String(res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
      const digest = ref.reference.includes(':') ? ref.reference : String(res.headers['docker-content-digest'] ?? '') || sha256Of(bytes);
      if (!verifyDigest(bytes, digest)) throw new OciError('DIGEST_INVALID', `${path}: body does not match ${digest}`);
      return { bytes, mediaType, digest };
    });
  }

  /**
   * GET a blob whole into memory, digest-verified. With the descriptor's `size`, the body is hashed as it
   * arrives into a buffer of that size (no copy of the whole, no second pass over it; a zTOC can be tens
   * of MB) and a body of another length is `SIZE_INVALID`.
   */
  async getBlob(ref: ImageRef, digest: string, size?: number): Promise<Uint8Array> {
    const path = `/v2/${ref.repo}/blobs/${digest}`;
    const [alg, hex] = digest.split(':');
    return this.#withRetries(path, async (signal) => {
      const res = await this.#send(ref, path, {}, signal);
      if (size === undefined || (alg !== 'sha256' && alg !== 'sha512')) {
        const bytes = await readBody(res.body);
        if (!verifyDigest(bytes, digest)) throw new OciError('DIGEST_INVALID', `${path}: body does not match its digest`);
        return bytes;
      }
      const out = new Uint8Array(size);
      const h = createHash(alg);
      let got = 0;
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        if (got + chunk.length > size) {
          res.body.destroy();
          throw new OciError('SIZE_INVALID', `${path}: body longer than the ${size} bytes its descriptor says`);
        }
        out.set(chunk, got);
        h.update(chunk);
        got += chunk.length;
      }
      if (got !== size) throw new OciError('SIZE_INVALID', `${path}: ${got} bytes, descriptor says ${size}`);
      if (h.digest('hex') !== hex) throw new OciError('DIGEST_INVALID', `${path}: body does not match its digest`);
      return out;
    });
  }

  /** Streams a blob to `file` (temp + rename), digest-verified; returns its size. */
  async downloadBlob(ref: ImageRef, digest: string, file: string, timeoutMs = 600_000): Promise<number> {
    const path = `/v2/${ref.repo}/blobs/${digest}`;
    return this.#withRetries(path, async (signal) => {
      const res = await this.#send(ref, path, {}, signal);
      const tmp = `${file}.part`;
      const out = createWriteStream(tmp);
      let writeError: Error | undefined;
      out.on('error', (err) => (writeError = err));
      const h = sha256Stream();
      let size = 0;
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          h.update(chunk);
          size += chunk.length;
          if (writeError) throw writeError;
          if (!out.write(chunk)) {
            // Wait for drain or error, and remove both listeners either way (no listener pile-up).
            await new Promise<void>((r) => {
              const done = (): void => {
                out.off('drain', done);
                out.off('error', done);
                r();
              };
              out.once('drain', done);
              out.once('error', done);
            });
          }
        }
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      } catch (err) {
        out.destroy();
        await unlink(tmp).catch(() => undefined);
        if (writeError) throw writeError;
        throw signal.aborted ? new Transient(`${path}: timed out`) : new Transient((err as Error).message);
      }
      if (h.digest() !== digest) {
        await unlink(tmp).catch(() => undefined);
        throw new OciError('DIGEST_INVALID', `${path}: body does not match its digest`);
      }
      await rename(tmp, file);
      return size;
    }, timeoutMs);
  }

  /** URL, headers (auth as far as known now) and per-attempt deadline of one whole-blob GET, for another thread to send. */
  blobRequest(ref: ImageRef, digest: string): { url: string; headers: Record<string, string>; timeoutMs: number } {
    return { url: this.url(ref.host, `/v2/${ref.repo}/blobs/${digest}`), headers: this.authHeaders(ref.host, ref.repo), timeoutMs: this.#opts.timeoutMs ?? 30_000 };
  }

  /**
   * URL and options of an `HttpRangeSource` for lazy span reads of one blob (after the auth flow has run
   * for this repo). The caller builds the source (remote/ brings undici, which this file does not load).
   */
  rangeSourceSpec(ref: ImageRef, digest: string, opts: { timeoutMs?: number; retries?: number } = {}): RangeSourceSpec {
    return {
      url: this.url(ref.host, `/v2/${ref.repo}/blobs/${digest}`),
      options: {
        headers: this.authHeaders(ref.host, ref.repo),
        timeoutMs: opts.timeoutMs ?? this.#opts.timeoutMs ?? 30_000,
        retries: opts.retries ?? this.#opts.retries ?? 2,
        ...(this.#opts.dispatcher ? { dispatcher: this.#opts.dispatcher } : {}),
      },
    };
  }

  async #withRetries<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, timeoutMs = this.#opts.timeoutMs ?? 30_000): Promise<T> {
    const retries = this.#opts.retries ?? 2;
    let last: unknown;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), timeoutMs);
      try {
        return await fn(ac.signal);
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        last = err;
      } finally {
        clearTimeout(timer);
      }
    }
    throw new OciError('UNAVAILABLE', `${what}: ${(last as Error).message}`, { cause: last });
  }

  /** One request with auth; follows a Bearer challenge once. Non-2xx answers become errors. */
  async #send(ref: ImageRef, path: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    for (let round = 0; round < 2; round++) {
      let res: Response;
      try {
        res = await this.#get(this.url(ref.host, path), { ...headers, ...this.authHeaders(ref.host, ref.repo) }, signal);
      } catch (err) {
        throw new Transient(signal.aborted ? `${path}: timed out` : (err as Error).message);
      }
      if (res.statusCode >= 200 && res.statusCode < 300) return res;
      dump(res.body);
      const challenge = String(res.headers['www-authenticate'] ?? '');
      if (res.statusCode === 401 && round === 0 && /^bearer /i.test(challenge)) {
        await this.#fetchToken(ref, challenge, signal);
        continue;
      }
      if (res.statusCode === 429 || res.statusCode >= 500) throw new Transient(`${path}: HTTP ${res.statusCode}`);
      throw statusError(res.statusCode, path);
    }
    throw new OciError('UNAUTHORIZED', `${path}: still 401 after the token flow`);
  }

  async #fetchToken(ref: ImageRef, challenge: string, signal: AbortSignal): Promise<void> {
    const params = new Map<string, string>();
    for (const m of challenge.slice(7).matchAll(/(\w+)="([^"]*)"/g)) params.set(m[1] as string, m[2] as string);
    const realm = params.get('realm');
    if (!realm) throw new OciError('UNAUTHORIZED', `Bearer challenge without realm: ${challenge}`);
    const u = new URL(realm);
    if (params.has('service')) u.searchParams.set('service', params.get('service') as string);
    u.searchParams.set('scope', params.get('scope') ?? `repository:${ref.repo}:pull`);
    const c = this.#opts.credentials;
    const res = await this.#get(u, c ? { authorization: `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}` } : {}, signal).catch((err: Error) => {
      throw new Transient(err.message);
    });
    if (res.statusCode !== 200) {
      dump(res.body);
      throw new OciError('UNAUTHORIZED', `token endpoint ${u.origin}${u.pathname}: HTTP ${res.statusCode}`);
    }
    const body = JSON.parse(Buffer.from(await readBody(res.body)).toString('utf8')) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new OciError('UNAUTHORIZED', 'token endpoint answered no token');
    this.#tokens.set(`${ref.host}/${ref.repo}`, token);
  }
}

function sha256Of(bytes: Uint8Array): string {
  const h = sha256Stream();
  h.update(bytes);
  return h.digest();
}
