/**
 * The SOCI-enabled image (soci-format.md §2.1), as `soci convert` makes it, as a pure function: original
 * documents in, every synthesized document out (bytes, digest, media type) for the proxy to serve by
 * digest. The top level becomes an OCI image index (a manifest list is re-marshalled Go-style with its
 * mediaType forced to the OCI index type, unknown fields dropped; a single manifest is wrapped in a new
 * index with the platform of its config). Every image manifest whose bytes are given is rewritten:
 * mediaType → OCI manifest, config.mediaType → OCI config (the config blob and its digest stay the same),
 * layers untouched, `com.amazon.soci.index-digest` added for indexed platforms; its descriptor gets the
 * new digest/size/mediaType and the manifest's own annotations in place of its old ones (platform kept).
 * A manifest whose bytes are not given and that has no SOCI index is left as it is (soci's "not in the
 * local store" case). Then one SOCI index descriptor per indexed platform, in index order, is appended
 * after all manifests (so each image manifest precedes its SOCI index), or replaces an existing v2 SOCI
 * descriptor of the same platform. Deviation from soci: existing SOCI index descriptors and nested
 * indexes are never rewritten as image manifests.
 */
import { sha256, verifyDigest, type Digest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { marshalIndex, marshalManifest, parseIndex, parseManifest, type GoJsonOptions } from '../../oci/go-json.js';
import { Annotation, MediaType, isIndexType, isManifestType } from '../../oci/media-types.js';
import type { Descriptor, Index, Platform } from '../../oci/types.js';

/** A document the proxy serves by digest. */
export interface SociDocument {
  mediaType: string;
  bytes: Uint8Array;
  digest: Digest;
  size: number;
}

export interface OriginalImage {
  /** Media type of the top-level document (index, manifest list, or a single manifest). */
  mediaType: string;
  bytes: Uint8Array;
  /** Single-manifest images only: the platform from the image config (os, architecture, variant…). */
  platform?: Platform;
}

/** One platform's original image manifest and, if it was indexed, its SOCI index. */
export interface PlatformInput {
  /** The original manifest bytes; their digest names the manifest in the original index. */
  manifestBytes: Uint8Array;
  sociIndex?: { bytes: Uint8Array; digest: string; size: number };
  /** Platform of the SOCI index descriptor; defaults to the manifest descriptor's platform. */
  platform?: Platform;
}

export interface SociImage {
  /** The new top-level OCI image index. */
  index: SociDocument;
  /** Rewritten image manifests, in index order. */
  manifests: SociDocument[];
  /** The SOCI indexes referenced from the new index, in index order. */
  sociIndexes: SociDocument[];
  /** Original manifest digest → rewritten manifest digest. */
  rewritten: Map<string, Digest>;
  /** Every document above, by digest. */
  documents: Map<string, SociDocument>;
}

function doc(mediaType: string, bytes: Uint8Array): SociDocument {
  return { mediaType, bytes, digest: sha256(bytes), size: bytes.length };
}

function samePlatform(a: Platform | undefined, b: Platform): boolean {
  return a !== undefined && a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}

function topIndex(image: OriginalImage): Index {
  if (isIndexType(image.mediaType)) return { ...parseIndex(image.bytes), mediaType: MediaType.ociIndex };
  if (!isManifestType(image.mediaType)) throw new OciError('MANIFEST_INVALID', `unsupported top-level media type ${image.mediaType}`);
  if (!image.platform) throw new OciError('MANIFEST_INVALID', 'a single-manifest image needs the platform of its config');
  const d: Descriptor = { mediaType: image.mediaType, digest: sha256(image.bytes), size: image.bytes.length, platform: image.platform };
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [d] };
}

/** Build the SOCI-enabled image from the original image and its per-platform inputs. */
export function buildSociImage(image: OriginalImage, platforms: readonly PlatformInput[], opts: GoJsonOptions = {}): SociImage {
  const index = topIndex(image);
  const inputs = new Map<string, PlatformInput>();
  for (const p of platforms) inputs.set(sha256(p.manifestBytes), p);
  if (!isIndexType(image.mediaType) && !inputs.has(sha256(image.bytes))) inputs.set(sha256(image.bytes), { manifestBytes: image.bytes });
  for (const digest of inputs.keys()) {
    if (!index.manifests.some((d) => d.digest === digest)) {
      throw new OciError('MANIFEST_INVALID', `platform manifest ${digest} is not listed in the image index`);
    }
  }

  const manifests: SociDocument[] = [];
  const rewritten = new Map<string, Digest>();
  const added: Array<{ desc: Descriptor; doc: SociDocument }> = [];
  const out: Descriptor[] = index.manifests.map((desc) => {
    const input = inputs.get(desc.digest);
    if (!input || !isManifestType(desc.mediaType) || desc.artifactType === MediaType.sociIndexV2) return desc;
    if (!verifyDigest(input.manifestBytes, desc.digest) || input.manifestBytes.length !== desc.size) {
      throw new OciError('DIGEST_INVALID', `manifest bytes do not match descriptor ${desc.digest} (size ${desc.size})`);
    }
    const m = parseManifest(input.manifestBytes);
    m.mediaType = MediaType.ociManifest;
    m.config = { ...m.config, mediaType: MediaType.ociConfig };
    const soci = input.sociIndex;
    if (soci) {
      if (!verifyDigest(soci.bytes, soci.digest) || soci.bytes.length !== soci.size) {
        throw new OciError('DIGEST_INVALID', `SOCI index bytes do not match ${soci.digest}`);
      }
      m.annotations = { ...(m.annotations ?? {}), [Annotation.sociIndexDigest]: soci.digest };
    }
    const mdoc = doc(MediaType.ociManifest, marshalManifest(m, opts));
    manifests.push(mdoc);
    rewritten.set(desc.digest, mdoc.digest);
    const { annotations: _old, ...rest } = desc;
    const next: Descriptor = { ...rest, mediaType: MediaType.ociManifest, digest: mdoc.digest, size: mdoc.size };
    if (m.annotations && Object.keys(m.annotations).length > 0) next.annotations = { ...m.annotations };
    if (soci) {
      const platform = input.platform ?? desc.platform;
      if (!platform) throw new OciError('MANIFEST_INVALID', `manifest ${desc.digest} has no platform for its SOCI index descriptor`);
      added.push({
        doc: doc(MediaType.ociManifest, soci.bytes),
        desc: {
          mediaType: MediaType.ociManifest,
          digest: soci.digest,
          size: soci.size,
          annotations: { [Annotation.imageManifestDigest]: mdoc.digest },
          platform,
          artifactType: MediaType.sociIndexV2,
        },
      });
    }
    return next;
  });

  for (const a of added) {
    const at = out.findIndex((d) => d.artifactType === MediaType.sociIndexV2 && samePlatform(d.platform, a.desc.platform as Platform));
    if (at >= 0) out[at] = a.desc;
    else out.push(a.desc);
  }
  // A replaced SOCI descriptor must still come after its image manifest (§2.1 ordering).
  for (const a of added) {
    const sociAt = out.indexOf(a.desc);
    const manifestAt = out.findIndex((d) => d.digest === a.desc.annotations?.[Annotation.imageManifestDigest]);
    if (sociAt < manifestAt) {
      out.splice(sociAt, 1);
      out.push(a.desc);
    }
  }

  const indexDoc = doc(MediaType.ociIndex, marshalIndex({ ...index, manifests: out }, opts));
  const sociIndexes = added.map((a) => a.doc);
  const documents = new Map<string, SociDocument>();
  for (const d of [indexDoc, ...manifests, ...sociIndexes]) documents.set(d.digest, d);
  return { index: indexDoc, manifests, sociIndexes, rewritten, documents };
}
