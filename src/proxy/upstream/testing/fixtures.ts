/**
 * Test image content: a small OCI image (config + layer blobs of a few KiB) pushed to a test registry,
 * plus a docker-typed manifest of the same blobs, so tests can check every byte that comes back.
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from '../../../oci/digest.js';
import { MediaType } from '../../../oci/media-types.js';
import type { TestRegistry } from './registry.js';

export interface PushedImage {
  repo: string;
  layer: Uint8Array;
  layerDigest: string;
  config: Uint8Array;
  configDigest: string;
  ociManifest: Uint8Array;
  ociDigest: string;
  dockerManifest: Uint8Array;
  dockerDigest: string;
}

export async function pushTestImage(reg: TestRegistry, repo: string, authorization?: string, layerSize = 256 * 1024): Promise<PushedImage> {
  const layer = randomBytes(layerSize);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
  const layerDigest = await reg.pushBlob(repo, layer, authorization);
  const configDigest = await reg.pushBlob(repo, config, authorization);
  // No top-level mediaType, like umoci writes them: the type must come from Content-Type.
  const ociManifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    config: { mediaType: MediaType.ociConfig, digest: configDigest, size: config.length },
    layers: [{ mediaType: MediaType.ociLayerGzip, digest: layerDigest, size: layer.length }],
  }));
  const dockerManifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.dockerManifest,
    config: { mediaType: MediaType.dockerConfig, digest: configDigest, size: config.length },
    layers: [{ mediaType: MediaType.dockerLayerGzip, digest: layerDigest, size: layer.length }],
  }, null, 3));
  const ociDigest = await reg.pushManifest(repo, 'oci', ociManifest, MediaType.ociManifest, authorization);
  const dockerDigest = await reg.pushManifest(repo, 'docker', dockerManifest, MediaType.dockerManifest, authorization);
  return { repo, layer, layerDigest, config, configDigest, ociManifest, ociDigest, dockerManifest, dockerDigest };
}
