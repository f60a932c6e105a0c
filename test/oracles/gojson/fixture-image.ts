/**
 * A synthetic multi-platform image for the SOCI builder tests and the Go JSON oracle: linux/amd64 as an
 * OCI manifest (gzip + tar layers indexed, one small layer not), linux/arm64/v8 as a Docker schema2
 * manifest (Docker layer types), linux/s390x as a Docker manifest with nothing indexed, and a buildkit
 * attestation manifest whose bytes are not given (left untouched). Top level: a Docker manifest list or an
 * OCI index. zTOCs are real encodings (small TOCs) whose compressed_archive_size matches the layer sizes;
 * layer blobs themselves are never needed. Everything is deterministic.
 */
import { sha256 } from '../../../src/oci/digest.js';
import { marshalIndex, marshalManifest } from '../../../src/oci/go-json.js';
import { MediaType } from '../../../src/oci/media-types.js';
import type { Descriptor, Index, Manifest, Platform } from '../../../src/oci/types.js';
import { buildSociIndex, type LayerZtoc, type PlatformInput, type SociIndexOptions } from '../../../src/indexer/soci/index.js';
import { encodeTarZinfo, encodeZtoc, tarMaxSpanId } from '../../../src/indexer/ztoc/index.js';

export interface FixtureImage {
  top: { mediaType: string; bytes: Uint8Array };
  platforms: PlatformInput[];
  /** Every original document, zTOC and config, by digest. */
  store: Map<string, Uint8Array>;
  originals: { amd64: Descriptor; arm64: Descriptor; s390x: Descriptor; attestation: Descriptor };
  manifests: { amd64: Manifest; arm64: Manifest; s390x: Manifest };
}

const enc = new TextEncoder();

function blob(store: Map<string, Uint8Array>, bytes: Uint8Array): { digest: string; size: number } {
  const digest = sha256(bytes);
  store.set(digest, bytes);
  return { digest, size: bytes.length };
}

function fakeLayer(seed: string, mediaType: string, size: number): Descriptor {
  return { mediaType, digest: sha256(`layer ${seed}`), size };
}

function ztocFor(layer: Descriptor, compression: 'gzip' | 'uncompressed', xattr: boolean): Uint8Array {
  const spanSize = 4 << 20;
  const spans = compression === 'gzip' ? 1 : tarMaxSpanId(layer.size, spanSize) + 1;
  const checkpoints = compression === 'gzip' ? new Uint8Array(12 + 32785) : encodeTarZinfo({ spanSize, size: layer.size });
  if (compression === 'gzip') new DataView(checkpoints.buffer).setInt32(0, 1, true);
  return encodeZtoc({
    version: '0.9',
    buildToolIdentifier: 'AWS SOCI CLI v0.2',
    compressedArchiveSize: layer.size,
    uncompressedArchiveSize: layer.size + 1024,
    toc: [
      {
        name: `file-of-${layer.digest.slice(7, 15)}`,
        type: 'reg',
        uncompressedOffset: 512,
        uncompressedSize: 10,
        linkname: '',
        mode: 0o644,
        uid: 0,
        gid: 0,
        uname: '',
        gname: '',
        modTime: '2024-01-01T00:00:00Z',
        devmajor: 0,
        devminor: 0,
        xattrs: xattr ? [['SCHILY.xattr.user.k', 'v']] : [],
      },
    ],
    compressionAlgorithm: compression,
    maxSpanId: spans - 1,
    spanDigests: Array.from({ length: spans }, (_, i) => sha256(`span ${layer.digest} ${i}`)),
    checkpoints,
  });
}

export function buildFixtureImage(opts: { top: 'docker' | 'oci'; soci?: SociIndexOptions } = { top: 'docker' }): FixtureImage {
  const store = new Map<string, Uint8Array>();
  const ociConfig = { mediaType: MediaType.ociConfig, ...blob(store, enc.encode('{"architecture":"amd64","os":"linux"}')) };
  const dockerConfig = (arch: string) => ({ mediaType: MediaType.dockerConfig, ...blob(store, enc.encode(`{"architecture":"${arch}","os":"linux"}`)) });

  const amd64Layers = [
    fakeLayer('a1', MediaType.ociLayerGzip, 12 << 20),
    fakeLayer('a2', MediaType.ociLayerTar, (8 << 20) + 5),
    fakeLayer('a3', MediaType.ociLayerGzip, 1000),
  ];
  const amd64: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: ociConfig,
    layers: amd64Layers,
    annotations: { 'org.opencontainers.image.title': 'fixture <amd64> & "friends"', 'z.last': '\u00e9\u2028' },
  };
  const arm64Layers = [fakeLayer('b1', MediaType.dockerLayerGzip, 20 << 20), fakeLayer('b2', MediaType.dockerLayerGzip, 30 << 20)];
  const arm64: Manifest = { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: dockerConfig('arm64'), layers: arm64Layers };
  const s390x: Manifest = { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: dockerConfig('s390x'), layers: [fakeLayer('c1', MediaType.dockerLayerGzip, 5)] };

  const put = (m: Manifest) => blob(store, marshalManifest(m));
  const amd64Bytes = marshalManifest(amd64);
  const arm64Bytes = marshalManifest(arm64);
  const s390xBytes = marshalManifest(s390x);
  const platform = (architecture: string, variant?: string): Platform => ({ architecture, os: 'linux', ...(variant ? { variant } : {}) });
  const originals = {
    amd64: { mediaType: MediaType.ociManifest, ...put(amd64), platform: platform('amd64') },
    arm64: { mediaType: MediaType.dockerManifest, ...put(arm64), platform: platform('arm64', 'v8'), annotations: { 'descriptor.only': 'lost' } },
    s390x: { mediaType: MediaType.dockerManifest, ...put(s390x), platform: platform('s390x') },
    attestation: {
      mediaType: MediaType.ociManifest,
      digest: sha256('attestation manifest'),
      size: 99,
      platform: { architecture: 'unknown', os: 'unknown' },
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': sha256('x') },
    },
  };
  const index: Index = {
    schemaVersion: 2,
    mediaType: opts.top === 'docker' ? MediaType.dockerManifestList : MediaType.ociIndex,
    manifests: [originals.amd64, originals.arm64, originals.s390x, originals.attestation],
    ...(opts.top === 'oci' ? { annotations: { 'org.opencontainers.image.ref.name': 'v1' } } : {}),
  };
  const top = { mediaType: index.mediaType as string, bytes: marshalIndex(index) };
  store.set(sha256(top.bytes), top.bytes);

  const ztocs = (layers: Descriptor[], which: number[], xattrLayer?: number): Map<string, LayerZtoc> => {
    const m = new Map<string, LayerZtoc>();
    for (const i of which) {
      const layer = layers[i] as Descriptor;
      const z = blob(store, ztocFor(layer, layer.mediaType.endsWith('.tar') ? 'uncompressed' : 'gzip', i === xattrLayer));
      m.set(layer.digest, { ...z, needsXattrs: i === xattrLayer });
    }
    return m;
  };
  const amd64Index = buildSociIndex(amd64Layers, ztocs(amd64Layers, [0, 1], 1), opts.soci);
  const arm64Index = buildSociIndex(arm64Layers, ztocs(arm64Layers, [0, 1]), opts.soci);
  store.set(amd64Index.digest, amd64Index.bytes);
  store.set(arm64Index.digest, arm64Index.bytes);
  const platforms: PlatformInput[] = [
    { manifestBytes: arm64Bytes, sociIndex: arm64Index },
    { manifestBytes: amd64Bytes, sociIndex: amd64Index },
    { manifestBytes: s390xBytes },
  ];
  return { top, platforms, store, originals, manifests: { amd64, arm64, s390x } };
}
