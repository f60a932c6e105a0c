/**
 * Translation of upstream failures into `OciError`s, the only error type above this folder.
 * 401 → UNAUTHORIZED carrying `WWW-Authenticate: Basic realm="soci-proxy"` (see `unauthorized`), 403 → DENIED,
 * 404 → the upstream's own code when it is MANIFEST_UNKNOWN/BLOB_UNKNOWN/NAME_UNKNOWN, else the kind's
 * default, 416 → RANGE_INVALID, 429 → TOOMANYREQUESTS with Retry-After passed through, other 4xx → the
 * upstream's code when it is a known OCI code, 5xx and network failures → UNAVAILABLE (502).
 */
import { OCI_ERROR_TABLE, OciError, type OciErrorCode } from '../../oci/errors.js';
import { readBounded } from './read-body.js';
import { discard, header, type UpstreamResponse } from './transport.js';

/** What was asked for; picks the 404 code when the upstream's body names none. */
export type RequestKind = 'manifest' | 'blob' | 'tags' | 'ping';

const NOT_FOUND: Record<RequestKind, OciErrorCode> = { manifest: 'MANIFEST_UNKNOWN', blob: 'BLOB_UNKNOWN', tags: 'NAME_UNKNOWN', ping: 'NAME_UNKNOWN' };
const NOT_FOUND_CODES = new Set<string>(['MANIFEST_UNKNOWN', 'BLOB_UNKNOWN', 'NAME_UNKNOWN']);

/**
 * The challenge the proxy puts on a 401. Not the upstream's own: a Bearer challenge would send the client
 * to the upstream's token service with the upstream's repository name (which differs from the name the
 * client used with the proxy, e.g. `docker.io/library/x` vs `library/x`) and bypass the credentials
 * configured for the upstream. A Basic challenge makes `docker login <proxy>` users send Basic
 * credentials, which the auth wrapper then uses for the upstream's token flow. The upstream's challenge
 * is kept in `detail` for logs.
 */
export const PROXY_CHALLENGE = 'Basic realm="soci-proxy"';

export function unauthorized(message?: string, upstreamChallenge?: string): OciError {
  return new OciError('UNAUTHORIZED', message, {
    headers: { 'www-authenticate': PROXY_CHALLENGE },
    detail: upstreamChallenge ? { upstreamChallenge } : undefined,
  });
}

async function upstreamCode(res: UpstreamResponse): Promise<{ code?: string; message?: string; detail?: unknown }> {
  try {
    const body = await readBounded(res.body, 64 * 1024, 'error body');
    const json = JSON.parse(Buffer.from(body).toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown; detail?: unknown }> };
    const e = json.errors?.[0];
    return { code: typeof e?.code === 'string' ? e.code : undefined, message: typeof e?.message === 'string' ? e.message : undefined, detail: e?.detail };
  } catch {
    return {};
  }
}

/** Consumes the response body and returns the error for a non-success status. */
export async function errorFromResponse(res: UpstreamResponse, kind: RequestKind, upstreamName: string): Promise<OciError> {
  const s = res.status;
  let up: { code?: string; message?: string; detail?: unknown } = {};
  if (s !== 401 && s !== 429 && s < 500) up = await upstreamCode(res);
  else discard(res);
  const msg = (fallback: string) => up.message ?? fallback;
  if (s === 401) return unauthorized(`upstream ${upstreamName} requires authentication`, header(res, 'www-authenticate'));
  if (s === 403) return new OciError('DENIED', msg(OCI_ERROR_TABLE.DENIED.message), { detail: up.detail });
  if (s === 404) {
    const code = up.code && NOT_FOUND_CODES.has(up.code) ? (up.code as OciErrorCode) : NOT_FOUND[kind];
    return new OciError(code, msg(OCI_ERROR_TABLE[code].message), { detail: up.detail });
  }
  if (s === 416) return new OciError('RANGE_INVALID');
  if (s === 429) {
    const ra = header(res, 'retry-after');
    return new OciError('TOOMANYREQUESTS', `upstream ${upstreamName} rate limit`, { headers: ra ? { 'retry-after': ra } : {} });
  }
  if (s >= 400 && s < 500 && up.code && up.code in OCI_ERROR_TABLE) {
    return new OciError(up.code as OciErrorCode, msg(OCI_ERROR_TABLE[up.code as OciErrorCode].message), { detail: up.detail });
  }
  return new OciError('UNAVAILABLE', `upstream ${upstreamName} answered ${s}`);
}

/** Network, TLS and timeout failures (anything thrown below the client that is not already an OciError). */
export function errorFromException(err: unknown, upstreamName: string): OciError {
  if ((err as { name?: unknown } | null)?.name === 'OciError') return err as OciError;
  const code = (err as { code?: unknown } | null)?.code;
  const why = typeof code === 'string' ? code : ((err as Error | null)?.message ?? String(err));
  return new OciError('UNAVAILABLE', `upstream ${upstreamName} unreachable (${why})`, { cause: err });
}
