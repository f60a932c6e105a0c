/**
 * Digests in go-digest's canonical form (`sha256:<64 lowercase hex>`). Only sha256 is produced; sha512 is
 * accepted when parsing references so that requests for such content reach the upstream unchanged.
 */
import { createHash } from 'node:crypto';
import { OciError } from './errors.js';

export type Digest = `${'sha256' | 'sha512'}:${string}`;

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

export function parseDigest(s: string): Digest {
  if (!isDigest(s)) throw new OciError('DIGEST_INVALID', `invalid digest ${JSON.stringify(s.slice(0, 140))}`);
  return s;
}

export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Incremental sha256 for streams; `digest()` may be called once. */
export function sha256Stream(): { update(chunk: Uint8Array): void; digest(): Digest } {
  const h = createHash('sha256');
  return {
    update: (chunk) => void h.update(chunk),
    digest: () => `sha256:${h.digest('hex')}`,
  };
}

/** True when `data` hashes to `digest` (sha256 or sha512). */
export function verifyDigest(data: Uint8Array, digest: string): boolean {
  const [alg, hex] = digest.split(':');
  if ((alg !== 'sha256' && alg !== 'sha512') || !hex) return false;
  return createHash(alg).update(data).digest('hex') === hex;
}
