/**
 * The bottom of the upstream stack: one undici Agent per upstream (TLS trust, timeouts, keep-alive) and the
 * `Send` function shape that the auth, redirect and retry wrappers decorate (STYLE.md §4). A `Send` takes an
 * absolute URL, so a redirect target or a token realm on another host goes through the same Agent and its
 * TLS rules; which URLs may be sent at all is decided above (routing, redirect and realm checks).
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import type { Upstream } from './config.js';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  url: URL;
  /** Lowercase header names. */
  headers: Record<string, string>;
  /** Token scope this request needs (`repository:library/python:pull`), for the auth wrapper. */
  scope?: string;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Lowercase header names, as undici returns them. */
  headers: Record<string, string | string[] | undefined>;
  /** The body stream; the receiver must consume or destroy it. */
  body: Readable;
  /** The URL that produced this response (after redirects). */
  url: URL;
}

export type Send = (req: UpstreamRequest) => Promise<UpstreamResponse>;

/** An Agent for one upstream: its CA file added to Node's bundled roots, its timeouts. */
export function createUpstreamAgent(up: Upstream): Agent {
  const ca = up.caFile ? [...rootCertificates, readFileSync(up.caFile, 'utf8')] : undefined;
  return new Agent({
    connect: { rejectUnauthorized: !up.insecure, ...(ca ? { ca } : {}) },
    connectTimeout: up.timeouts.connectMs,
    headersTimeout: up.timeouts.headersMs,
    bodyTimeout: up.timeouts.bodyMs,
    keepAliveTimeout: 30_000,
  });
}

/** A `Send` over an undici dispatcher: one request, no redirects, no retries, no auth. */
export function dispatcherSend(dispatcher: Dispatcher): Send {
  return async (req) => {
    const res = await dispatcher.request({
      origin: req.url.origin,
      path: req.url.pathname + req.url.search,
      method: req.method,
      headers: req.headers,
      signal: req.signal,
    });
    return { status: res.statusCode, headers: res.headers, body: res.body, url: req.url };
  };
}

/** First value of a response header. */
export function header(res: Pick<UpstreamResponse, 'headers'>, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Throws away a response body without keeping the connection busy. */
export function discard(res: UpstreamResponse): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-amz-security-token']);

/**
 * A copy of `headers` safe to log: credential-bearing values become `<scheme> [redacted]` or `[redacted]`.
 * Use it for every header set that is logged, in both directions.
 */
export function redactHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!SECRET_HEADERS.has(k.toLowerCase()) || v === undefined) {
      out[k] = v;
      continue;
    }
    const one = (s: string) => {
      const scheme = /^(basic|bearer)\s/i.exec(s)?.[1];
      return scheme ? `${scheme} [redacted]` : '[redacted]';
    };
    out[k] = Array.isArray(v) ? v.map(one) : one(v);
  }
  return out;
}

/** `url` with signed query parameters (S3/GCS/CloudFront pre-signed blob URLs) removed, for logs. */
export function redactUrl(url: URL): string {
  return url.search ? `${url.origin}${url.pathname}?[redacted]` : url.href;
}
