/**
 * Retry wrapper for idempotent GET/HEAD requests: connection-level failures (refused, reset, connect or
 * header timeouts) and 502/503/504 replies are retried with exponential backoff and jitter, a bounded number
 * of times; a Retry-After on 503 is honoured up to the delay cap. 4xx replies (including 429) are never
 * retried here: they go back to the client, which knows its own rate budget. Errors after the response
 * headers (a body that breaks mid-stream) are the caller's business, since bytes may already have moved.
 */
import type { Send } from './transport.js';
import { discard, header } from './transport.js';

export interface RetryOptions {
  /** Total tries, >= 1. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Injected for tests; default setTimeout-based. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const RETRY_STATUS = new Set([502, 503, 504]);
const RETRY_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CLOSED',
]);

export function isRetryableError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRY_CODES.has(code);
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(signal?.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Seconds or an HTTP date → ms, undefined when absent or unparsable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export function withRetry(send: Send, opts: RetryOptions): Send {
  const sleep = opts.sleep ?? defaultSleep;
  const backoff = (n: number) => Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** n * (0.5 + Math.random()));
  return async (req) => {
    for (let n = 0; ; n++) {
      const last = n + 1 >= opts.attempts;
      let wait: number;
      try {
        const res = await send(req);
        if (last || !RETRY_STATUS.has(res.status)) return res;
        const ra = res.status === 503 ? retryAfterMs(header(res, 'retry-after')) : undefined;
        if (ra !== undefined && ra > opts.maxDelayMs) return res; // the upstream asks for longer than we wait
        discard(res);
        wait = ra ?? backoff(n);
      } catch (err) {
        if (last || !isRetryableError(err) || req.signal?.aborted) throw err;
        wait = backoff(n);
      }
      await sleep(wait, req.signal);
    }
  };
}
