/**
 * Reads a small upstream body (manifest, error JSON, token response, tag list) into memory with a hard
 * size bound: a Content-Length over the bound or a stream that grows past it is refused without reading on.
 */
import type { Readable } from 'node:stream';
import { OciError } from '../../oci/errors.js';

export async function readBounded(body: Readable, max: number, what: string, contentLength?: string): Promise<Uint8Array> {
  if (contentLength !== undefined && Number(contentLength) > max) {
    body.on('error', () => {});
    body.destroy();
    throw new OciError('UNAVAILABLE', `upstream ${what} of ${contentLength} bytes exceeds the ${max}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > max) {
        body.destroy();
        throw new OciError('UNAVAILABLE', `upstream ${what} exceeds the ${max}-byte limit`);
      }
      chunks.push(buf);
    }
  } catch (err) {
    if ((err as { name?: string }).name === 'OciError') throw err;
    throw new OciError('UNAVAILABLE', `reading upstream ${what} failed: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks, total);
}
