/**
 * The snapshot labels of the remote-snapshot handshake (../shared/spec/containerd-integration.md §2.1–2.5,
 * test-environment.md §6): which layer a Prepare is about. Two label sets are accepted, tried in this
 * order, as the stargz daemon does: containerd's `cri.*` set (CRI, nerdctl, transfer service; carries the
 * platform manifest digest) and ctr-remote's `remote/stargz.*` set (image reference and layer digest only,
 * so the provider resolves the reference itself). The `remote/soci.*` labels are never required.
 */
import type { RemoteSource } from './metadata-store.js';

export const LABEL_SNAPSHOT_REF = 'containerd.io/snapshot.ref';
export const LABEL_CRI_IMAGE_REF = 'containerd.io/snapshot/cri.image-ref';
export const LABEL_CRI_MANIFEST_DIGEST = 'containerd.io/snapshot/cri.manifest-digest';
export const LABEL_CRI_LAYER_DIGEST = 'containerd.io/snapshot/cri.layer-digest';
export const LABEL_STARGZ_REFERENCE = 'containerd.io/snapshot/remote/stargz.reference';
export const LABEL_STARGZ_DIGEST = 'containerd.io/snapshot/remote/stargz.digest';
/** Set on commit of a lazily mounted layer, as stargz and soci do. */
export const LABEL_REMOTE = 'containerd.io/snapshot/remote';
export const REMOTE_LABEL_VALUE = 'remote snapshot';

/** containerd's limit on one label's key + value (pkg/labels/validate.go). */
export const MAX_LABEL_BYTES = 4096;

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The layer a remote Prepare names, or undefined when the labels do not name one. */
export function remoteSourceFromLabels(labels: Readonly<Record<string, string>>): RemoteSource | undefined {
  const criRef = labels[LABEL_CRI_IMAGE_REF];
  const criLayer = labels[LABEL_CRI_LAYER_DIGEST];
  if (criRef && criLayer && DIGEST.test(criLayer)) {
    const manifest = labels[LABEL_CRI_MANIFEST_DIGEST];
    return { imageRef: criRef, layerDigest: criLayer, manifestDigest: manifest && DIGEST.test(manifest) ? manifest : undefined };
  }
  const ref = labels[LABEL_STARGZ_REFERENCE];
  const layer = labels[LABEL_STARGZ_DIGEST];
  if (ref && layer && DIGEST.test(layer)) return { imageRef: ref, layerDigest: layer };
  return undefined;
}

/** The first label over containerd's size limit, if any. */
export function oversizedLabel(labels: Readonly<Record<string, string>>): string | undefined {
  for (const [k, v] of Object.entries(labels)) if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES) return k;
  return undefined;
}
