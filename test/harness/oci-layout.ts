/**
 * Writing OCI image layouts by hand (image-spec "image-layout": `oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`). The harness writes blobs, configs, manifests and indexes itself instead of going
 * through umoci when it needs exact control: uncompressed layers, layers with a PAX global header, image
 * indexes, chosen media types. skopeo's `oci:DIR:TAG` transport finds a tag through the
 * `org.opencontainers.image.ref.name` annotation of its entry in index.json.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor, Index } from '../../src/oci/types.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

/** Creates the layout skeleton if it is not there yet. */
export function initLayout(dir: string): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  if (!existsSync(join(dir, 'oci-layout'))) writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  if (!existsSync(join(dir, 'index.json'))) writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
}

/** Stores a blob and returns a descriptor for it. */
export function writeBlob(dir: string, data: Uint8Array, mediaType: string): Descriptor {
  const digest = sha256(data);
  const path = join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  if (!existsSync(path)) writeFileSync(path, data);
  return { mediaType, digest, size: data.length };
}

/** Reads a blob back by digest. */
export function readBlob(dir: string, digest: string): Buffer {
  return readFileSync(join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, '')));
}

/** Points `tag` at the descriptor in index.json (replacing an older entry with the same tag). */
export function tagLayout(dir: string, desc: Descriptor, tag: string): void {
  const indexPath = join(dir, 'index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as Index;
  index.manifests = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== tag);
  index.manifests.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size, annotations: { [REF_NAME]: tag } });
  writeFileSync(indexPath, JSON.stringify(index));
}

/** The descriptor tagged `tag` in the layout, or undefined. */
export function resolveTag(dir: string, tag: string): Descriptor | undefined {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Index;
  return index.manifests.find((d) => d.annotations?.[REF_NAME] === tag);
}

/** Writes an image index over the given manifests (each needs a platform) and returns its descriptor and bytes. */
export function writeIndex(dir: string, manifests: Descriptor[], annotations?: Record<string, string>): { descriptor: Descriptor; bytes: Buffer } {
  const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
  if (annotations) index.annotations = annotations;
  const bytes = Buffer.from(JSON.stringify(index));
  return { descriptor: writeBlob(dir, bytes, MediaType.ociIndex), bytes };
}
