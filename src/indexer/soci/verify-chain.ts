/**
 * A checker that walks a SOCI-enabled image the way soci-snapshotter and soci's own convert test do
 * (soci-format.md §2.1, §2.3–2.4, §1.3): image index → image manifest → `com.amazon.soci.index-digest`
 * → SOCI index → zTOC descriptors. Each fetched document is checked against its digest and descriptor
 * size; the SOCI index must survive the snapshotter's Go re-marshal byte for byte, have a v1/v2 config
 * mediaType, and map every zTOC to a layer of its image manifest (via image-layer-digest only, as the
 * snapshotter does) whose zTOC decodes and whose compressed size matches; each SOCI index descriptor in
 * the image index must carry image-manifest-digest and a platform, point at an OCI manifest without
 * artifactType listed before it with the same os/architecture, whose config mediaType is the OCI config.
 * Used by tests across the project; failures throw `OciError('MANIFEST_INVALID')` naming what broke.
 */
import { verifyDigest } from '../../oci/digest.js';
import { OciError } from '../../oci/errors.js';
import { marshalManifest, parseIndex, parseManifest, type GoJsonOptions } from '../../oci/go-json.js';
import { Annotation, MediaType } from '../../oci/media-types.js';
import type { Descriptor, Platform } from '../../oci/types.js';
import { decodeZtoc } from '../ztoc/codec.js';

/** Returns a document's bytes by digest (manifests and blobs alike), or undefined when unknown. */
export type FetchByDigest = (digest: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

export interface VerifiedPlatform {
  platform?: Platform;
  manifestDigest: string;
  sociIndexDigest: string;
  /** image layer digest → zTOC digest, in SOCI index order. */
  ztocs: Array<{ layerDigest: string; ztocDigest: string }>;
}

function fail(msg: string): never {
  throw new OciError('MANIFEST_INVALID', `SOCI chain: ${msg}`);
}

async function fetchVerified(fetch: FetchByDigest, d: Pick<Descriptor, 'digest' | 'size'>, what: string): Promise<Uint8Array> {
  const bytes = await fetch(d.digest);
  if (!bytes) fail(`${what} ${d.digest} cannot be fetched`);
  if (!verifyDigest(bytes, d.digest)) fail(`${what} ${d.digest}: content does not match its digest`);
  if (bytes.length !== d.size) fail(`${what} ${d.digest}: ${bytes.length} bytes, descriptor says ${d.size}`);
  return bytes;
}

/** Verify the SOCI chain of the image whose top-level index is `indexBytes`. */
export async function verifySociChain(indexBytes: Uint8Array, fetch: FetchByDigest, opts: GoJsonOptions = {}): Promise<VerifiedPlatform[]> {
  const index = parseIndex(indexBytes);
  if (index.mediaType !== MediaType.ociIndex) fail(`top-level mediaType is ${index.mediaType ?? '(none)'}, not the OCI index type`);
  const list = index.manifests;
  const result: VerifiedPlatform[] = [];

  // The image-index side (soci's convert test).
  for (const [i, s] of list.entries()) {
    if (s.artifactType !== MediaType.sociIndexV2) continue;
    const target = s.annotations?.[Annotation.imageManifestDigest];
    if (!target) fail(`manifests[${i}] (SOCI index) has no ${Annotation.imageManifestDigest}`);
    if (!s.platform) fail(`manifests[${i}] (SOCI index) has no platform`);
    if (s.mediaType !== MediaType.ociManifest) fail(`manifests[${i}] (SOCI index) mediaType ${s.mediaType}`);
    const at = list.findIndex((d) => d.digest === target);
    if (at < 0) fail(`manifests[${i}] points at image manifest ${target}, which is not in the index`);
    if (at > i) fail(`image manifest ${target} is listed after its SOCI index (manifests[${at}] > manifests[${i}])`);
    const m = list[at] as Descriptor;
    if (m.mediaType !== MediaType.ociManifest || m.artifactType) fail(`image manifest ${target} descriptor is not a plain OCI manifest`);
    if (m.platform?.os !== s.platform.os || m.platform?.architecture !== s.platform.architecture) {
      fail(`SOCI index ${s.digest} platform differs from its image manifest's`);
    }
    if (m.annotations?.[Annotation.sociIndexDigest] !== s.digest) fail(`image manifest descriptor ${target} does not name SOCI index ${s.digest}`);
  }

  // The snapshotter side: manifest → annotation → SOCI index → zTOCs.
  for (const [i, d] of list.entries()) {
    if (d.artifactType === MediaType.sociIndexV2 || d.mediaType !== MediaType.ociManifest) continue;
    // A manifest nobody points a SOCI index at may be absent (e.g. an attestation never pulled).
    const pointedAt = list.some((s) => s.annotations?.[Annotation.imageManifestDigest] === d.digest);
    if (!pointedAt && !(await fetch(d.digest))) continue;
    const manifest = parseManifest(await fetchVerified(fetch, d, `manifests[${i}]`));
    const sociDigest = manifest.annotations?.[Annotation.sociIndexDigest];
    if (!sociDigest) continue;
    if (manifest.config.mediaType !== MediaType.ociConfig) fail(`image manifest ${d.digest} config mediaType is ${manifest.config.mediaType}`);
    const sociDesc = list.find((s) => s.digest === sociDigest && s.artifactType === MediaType.sociIndexV2);
    if (!sociDesc) fail(`SOCI index ${sociDigest} named by image manifest ${d.digest} has no descriptor in the image index`);
    if (sociDesc.annotations?.[Annotation.imageManifestDigest] !== d.digest) fail(`SOCI index ${sociDigest} descriptor names another image manifest`);
    const sociBytes = await fetchVerified(fetch, sociDesc, 'SOCI index');
    const soci = parseManifest(sociBytes);
    if (soci.config.mediaType !== MediaType.sociIndexV2 && soci.config.mediaType !== MediaType.sociIndexV1) {
      fail(`SOCI index ${sociDigest}: unknown index version ${soci.config.mediaType}`);
    }
    // soci's MarshalIndex: hard-coded mediaType, no artifactType, then Go json.Marshal.
    const { artifactType: _dropped, ...kept } = soci;
    const remarshalled = marshalManifest({ ...kept, mediaType: MediaType.ociManifest }, opts);
    if (!Buffer.from(remarshalled).equals(sociBytes)) fail(`SOCI index ${sociDigest} changes when Go re-marshals it`);
    const ztocs: VerifiedPlatform['ztocs'] = [];
    for (const [j, z] of soci.layers.entries()) {
      const layerDigest = z.annotations?.[Annotation.imageLayerDigest];
      if (!layerDigest) fail(`SOCI index ${sociDigest} layers[${j}] has no ${Annotation.imageLayerDigest}`);
      const layer = manifest.layers.find((l) => l.digest === layerDigest);
      if (!layer) fail(`SOCI index ${sociDigest} layers[${j}] names ${layerDigest}, not a layer of ${d.digest}`);
      if (z.mediaType !== MediaType.sociLayer) fail(`SOCI index ${sociDigest} layers[${j}] mediaType ${z.mediaType}`);
      const ztoc = decodeZtoc(await fetchVerified(fetch, z, `zTOC for ${layerDigest}`));
      if (ztoc.compressedArchiveSize !== layer.size) {
        fail(`zTOC ${z.digest} says the layer has ${ztoc.compressedArchiveSize} bytes, the manifest says ${layer.size}`);
      }
      ztocs.push({ layerDigest, ztocDigest: z.digest });
    }
    result.push({ ...(d.platform ? { platform: d.platform } : {}), manifestDigest: d.digest, sociIndexDigest: sociDigest, ztocs });
  }
  return result;
}
