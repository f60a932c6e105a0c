/**
 * The snapshotter core's contract with its two front ends: `soci-proxy mount` (a rootfs on a directory)
 * and the containerd proxy plugin (`../grpc`). Both ask the core for one layer at a time.
 *
 * Discovery follows soci-snapshotter exactly (../shared/spec/soci-format.md §2.3–2.5): the platform image
 * manifest's `com.amazon.soci.index-digest` annotation names the SOCI index, fetched by digest from the
 * same repository through `/manifests/`; its `layers` map image-layer digests to zTOC blobs. A layer with
 * a zTOC is mounted lazily over FUSE; one without is not the core's business unless the caller asks it to
 * unpack (the containerd plugin lets containerd's differ fill a plain snapshot instead).
 *
 * FUSE requests are answered on the Node main thread of the process that mounted them: nothing in that
 * process may touch a mount with a synchronous call (spawnSync, *Sync fs calls), or it deadlocks.
 */

/** Where a layer comes from. `imageRef` is `host[:port]/repo[:tag|@digest]`. */
export interface LayerRef {
  imageRef: string;
  layerDigest: string;
  /** The platform manifest digest when the caller knows it (containerd's `cri.manifest-digest`). */
  manifestDigest?: string | undefined;
}

export interface MountedLayer {
  /** The directory holding the layer's tree in overlayfs form (a lowerdir). */
  dir: string;
  /** True when served lazily over FUSE; false when unpacked to disk. */
  lazy: boolean;
  unmount(): Promise<void>;
}

export interface LayerProvider {
  /**
   * Mounts the layer lazily at `dir` when the image has a SOCI index with a zTOC for it; resolves
   * undefined when it has none (no index, no zTOC for this layer, or an index that fails validation),
   * so the caller takes the normal path. Rejects only on errors worth surfacing (registry unreachable).
   */
  mountLazy(ref: LayerRef, dir: string): Promise<MountedLayer | undefined>;
  /** Fetches the whole layer blob (digest-verified) and unpacks it at `dir` in overlayfs form. */
  unpack(ref: LayerRef, dir: string): Promise<MountedLayer>;
  close(): Promise<void>;
}
