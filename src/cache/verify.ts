/**
 * Small helpers every store shares: the write-side digest check (the only error a healthy cache throws,
 * `OciError('DIGEST_INVALID')`), a record checksum that lets the disk and Redis metadata tiers detect
 * planted or damaged values, and the mutable counters behind `stats()`.
 */
import { createHash } from 'node:crypto';
import { isDigest, verifyDigest, type Digest } from '../oci/digest.js';
import { OciError } from '../oci/errors.js';
import type { CacheStats } from './types.js';

/** Throws DIGEST_INVALID unless `digest` is canonical and `bytes` hash to it. */
export function assertContent(digest: Digest, bytes: Uint8Array): void {
  if (!isDigest(digest)) throw new OciError('DIGEST_INVALID', `invalid digest ${JSON.stringify(String(digest).slice(0, 140))}`);
  if (!verifyDigest(bytes, digest)) throw new OciError('DIGEST_INVALID', `content of ${bytes.byteLength} bytes does not match ${digest}`);
}

/** Throws DIGEST_INVALID unless `digest` is canonical (used by get/has/delete, which take no bytes). */
export function assertDigest(digest: Digest): void {
  if (!isDigest(digest)) throw new OciError('DIGEST_INVALID', `invalid digest ${JSON.stringify(String(digest).slice(0, 140))}`);
}

/** 16 hex chars of sha256(key NUL value): binds a stored metadata value to its key and detects damage. */
export function recordSum(key: string, value: string): string {
  return createHash('sha256').update(key).update('\0').update(value).digest('hex').slice(0, 16);
}

/** Encodes a metadata value as `<sum> <value>`. */
export function sealRecord(key: string, value: string): string {
  return `${recordSum(key, value)} ${value}`;
}

/** Decodes `sealRecord` output; undefined when the sum does not match (corrupt or misplaced). */
export function openRecord(key: string, sealed: string): string | undefined {
  const sp = sealed.indexOf(' ');
  if (sp !== 16) return undefined;
  const value = sealed.slice(17);
  return recordSum(key, value) === sealed.slice(0, 16) ? value : undefined;
}

export type Counters = Pick<CacheStats, 'hits' | 'misses' | 'puts' | 'evictions' | 'corrupt' | 'unavailable'>;

export function newCounters(): Counters {
  return { hits: 0, misses: 0, puts: 0, evictions: 0, corrupt: 0, unavailable: 0 };
}
