/**
 * A `RangeSource` over HTTP: each `read(start, end)` is one `GET` with `Range: bytes=start-(end-1)` and
 * `Accept-Encoding: identity` (soci-format.md §6). Only a `206` whose `Content-Range` names exactly the
 * asked range and whose body has exactly that many bytes is accepted: a `200` would be the whole blob,
 * which soci's reader misreads for any span not at offset 0, so here it is an error. Network errors,
 * timeouts, `429` and `5xx` are transient and retried with a short backoff; every attempt has a deadline
 * (`timeoutMs`) covering headers and body, so a stalled server gives an error, never a hang.
 */
import { request, type Dispatcher } from 'undici';
import { OciError } from '../../oci/errors.js';
import type { RangeSource } from '../../indexer/reader.js';

export interface HttpRangeSourceOptions {
  /** Extra request headers (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** Deadline of one attempt, headers and body (default 30 s). */
  timeoutMs?: number;
  /** Further attempts after a transient failure (default 2). */
  retries?: number;
  /** Backoff before retry n (1-based) in ms (default 100·2^(n−1)). */
  backoffMs?: (attempt: number) => number;
  /** undici dispatcher (a `Pool`, a `MockAgent`); default the global one. */
  dispatcher?: Dispatcher;
}

class Transient extends Error {}

export class HttpRangeSource implements RangeSource {
  readonly blobUrl: string;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoff: (attempt: number) => number;
  readonly #dispatcher: HttpRangeSourceOptions['dispatcher'];
  /** Bytes of body received, for metrics and tests. */
  bytesReceived = 0;
  requests = 0;

  constructor(blobUrl: string, opts: HttpRangeSourceOptions = {}) {
    this.blobUrl = blobUrl;
    this.#headers = opts.headers ?? {};
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#retries = opts.retries ?? 2;
    this.#backoff = opts.backoffMs ?? ((n) => 100 * 2 ** (n - 1));
    this.#dispatcher = opts.dispatcher;
  }

  async read(start: number, end: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new RangeError(`bad range [${start}, ${end})`);
    }
    if (end === start) return new Uint8Array(0);
    let last: unknown;
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, this.#backoff(attempt)));
      try {
        return await this.#once(start, end);
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        last = err;
      }
    }
    throw new OciError('UNAVAILABLE', `range ${start}-${end - 1} of ${this.blobUrl}: ${(last as Error).message}`, { cause: last });
  }

  async #once(start: number, end: number): Promise<Uint8Array> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Transient(`timed out after ${this.#timeoutMs} ms`)), this.#timeoutMs);
    this.requests++;
    try {
      let res;
      try {
        res = await request(this.blobUrl, {
          method: 'GET',
          headers: { ...this.#headers, range: `bytes=${start}-${end - 1}`, 'accept-encoding': 'identity' },
          signal: ac.signal,
          ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
        });
      } catch (err) {
        throw ac.signal.aborted ? ac.signal.reason : new Transient((err as Error).message);
      }
      const status = res.statusCode;
      if (status !== 206) {
        await res.body.dump().catch(() => undefined);
        if (status === 429 || status >= 500) throw new Transient(`HTTP ${status}`);
        if (status === 200) throw new OciError('RANGE_INVALID', `${this.blobUrl} ignored the Range header (200 instead of 206)`);
        if (status === 404) throw new OciError('BLOB_UNKNOWN', `${this.blobUrl}: 404`);
        if (status === 401) throw new OciError('UNAUTHORIZED', `${this.blobUrl}: 401`);
        if (status === 403) throw new OciError('DENIED', `${this.blobUrl}: 403`);
        if (status === 416) throw new OciError('RANGE_INVALID', `${this.blobUrl}: 416 for bytes ${start}-${end - 1}`);
        throw new OciError('UNAVAILABLE', `${this.blobUrl}: unexpected HTTP ${status}`);
      }
      const cr = String(res.headers['content-range'] ?? '');
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(cr.trim());
      if (!m || Number(m[1]) !== start || Number(m[2]) !== end - 1) {
        await res.body.dump().catch(() => undefined);
        throw new OciError('RANGE_INVALID', `${this.blobUrl}: Content-Range "${cr}" does not match bytes ${start}-${end - 1}`);
      }
      // Shared memory: the spans in it go to inflate worker threads as views, with no copy.
      const out = new Uint8Array(new SharedArrayBuffer(end - start));
      let filled = 0;
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          if (filled + chunk.length > out.length) throw new OciError('RANGE_INVALID', `${this.blobUrl}: body longer than ${out.length} bytes`);
          out.set(chunk, filled);
          filled += chunk.length;
          this.bytesReceived += chunk.length;
        }
      } catch (err) {
        if ((err as { code?: string }).code === 'RANGE_INVALID') throw err;
        throw ac.signal.aborted ? ac.signal.reason : new Transient((err as Error).message);
      }
      if (filled !== out.length) throw new Transient(`short body: ${filled} of ${out.length} bytes`);
      return out;
    } finally {
      clearTimeout(timer);
    }
  }
}
