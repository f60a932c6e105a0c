/**
 * The one place where errors become HTTP: `OciError` → the distribution-spec error JSON with its status
 * and headers (WWW-Authenticate, Retry-After pass through); anything else → 500 without internals.
 */
import type { Context } from 'hono';
import { OCI_ERROR_TABLE, OciError, errorCode, type OciErrorCode } from '../oci/errors.js';

export function errorBody(code: OciErrorCode, message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] });
}

export function ociErrorResponse(c: Context, err: unknown): Response {
  const code = errorCode(err);
  if (err instanceof Error && code && code in OCI_ERROR_TABLE) {
    const e = err as OciError;
    const status = e.status ?? OCI_ERROR_TABLE[code as OciErrorCode].status;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', ...(e.headers ?? {}) };
    const body = c.req.method === 'HEAD' ? null : errorBody(code as OciErrorCode, e.message, e.detail);
    return new Response(body, { status, headers });
  }
  return new Response(c.req.method === 'HEAD' ? null : errorBody('UNAVAILABLE', 'internal error'), {
    status: 500,
    headers: { 'Content-Type': 'application/json' },
  });
}
