/**
 * The few error classes of soci-proxy, each with a stable `code`. Code below the edges throws these and
 * matches on `code`, never on `instanceof`; only the edges translate them: the proxy to the OCI
 * distribution error JSON and an HTTP status (`OCI_ERROR_TABLE`), the snapshotter's gRPC adapter to gRPC
 * codes, the CLI to a one-line message and exit status.
 */

/** OCI distribution-spec error codes, plus TOOMANYREQUESTS which registries use for rate limits. */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'UNAVAILABLE';

export const OCI_ERROR_TABLE: Record<OciErrorCode, { status: number; message: string }> = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 404, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  UNAVAILABLE: { status: 502, message: 'upstream registry unavailable' },
};

/** An error that maps to one OCI distribution error. */
export class OciError extends Error {
  readonly code: OciErrorCode;
  readonly status: number;
  readonly detail: unknown;
  /** Headers that must reach the client with the error (WWW-Authenticate, Retry-After). */
  readonly headers: Record<string, string>;

  constructor(code: OciErrorCode, message?: string, opts: { status?: number; detail?: unknown; headers?: Record<string, string>; cause?: unknown } = {}) {
    super(message ?? OCI_ERROR_TABLE[code].message, { cause: opts.cause });
    this.name = 'OciError';
    this.code = code;
    this.status = opts.status ?? OCI_ERROR_TABLE[code].status;
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }
}

/**
 * Why a layer gets no zTOC. Not a failure of the image: the layer is served as-is and the reason is
 * logged. `code` is stable and appears in logs and metrics labels.
 */
export type SkipCode =
  | 'UNSUPPORTED_COMPRESSION' // zstd or an unknown media type
  | 'MULTI_MEMBER_GZIP' // concatenated gzip members (pigz -i, eStargz); v0.10–v0.13 consumers cannot read them
  | 'PAX_GLOBAL_HEADER'
  | 'SPARSE_ENTRY'
  | 'UNSUPPORTED_TYPEFLAG'
  | 'BELOW_MIN_SIZE'
  | 'VALUE_OUT_OF_RANGE' // a tar numeric field outside what the zTOC can carry exactly
  | 'TOO_LARGE' // uncompressed size or ratio beyond the configured bound (gzip bomb guard)
  | 'EMPTY_LAYER';

export class LayerSkipped extends Error {
  readonly code: SkipCode;
  constructor(code: SkipCode, message: string) {
    super(message);
    this.name = 'LayerSkipped';
    this.code = code;
  }
}

/**
 * A layer whose bytes are damaged: bad gzip header or CRC, truncated deflate or tar data, a tar header
 * with a bad checksum, a digest mismatch. `offset` is the byte offset in the compressed blob (or, for tar
 * problems, in the uncompressed stream, as `where` says) at which it was detected.
 */
export class CorruptLayer extends Error {
  readonly code = 'CORRUPT_LAYER' as const;
  readonly offset: number;
  readonly where: 'compressed' | 'uncompressed';
  constructor(message: string, offset: number, where: 'compressed' | 'uncompressed' = 'compressed') {
    super(`${message} (at ${where} offset ${offset})`);
    this.name = 'CorruptLayer';
    this.offset = offset;
    this.where = where;
  }
}

const SKIP_CODES: ReadonlySet<string> = new Set<SkipCode>([
  'UNSUPPORTED_COMPRESSION', 'MULTI_MEMBER_GZIP', 'PAX_GLOBAL_HEADER', 'SPARSE_ENTRY', 'UNSUPPORTED_TYPEFLAG',
  'BELOW_MIN_SIZE', 'VALUE_OUT_OF_RANGE', 'TOO_LARGE', 'EMPTY_LAYER',
]);

/** True for a `LayerSkipped` (matched on its code, so it also holds across worker-thread boundaries). */
export function isSkip(err: unknown): err is { code: SkipCode; message: string } {
  const code = errorCode(err);
  return code !== undefined && SKIP_CODES.has(code);
}

export function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}
