/**
 * A whole image as a writable rootfs: every layer through the `LayerProvider` (lazily over FUSE when it
 * has a zTOC, else unpacked) in `stateDir/layers/<i>`, then one overlayfs at the mountpoint with the layers
 * as lowerdirs top-first and `stateDir/upper` + `stateDir/work` for writes. Teardown goes the other way:
 * the overlay first (it holds the FUSE mounts), then the layers. `mount`/`umount` run as async child
 * processes: the kernel asks this very process's FUSE handlers about the lowerdirs while mounting.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerProvider, MountedLayer } from './types.js';
import type { ResolvedImage } from './image-resolver.js';

export interface RootfsMount {
  mountpoint: string;
  stateDir: string;
  image: ResolvedImage;
  layers: MountedLayer[];
  unmount(): Promise<void>;
}

export interface MountRootfsOptions {
  provider: LayerProvider & { resolve(imageRef: string, manifestDigest?: string): Promise<ResolvedImage> };
  imageRef: string;
  mountpoint: string;
  /** Holds layers/, upper/, work/; removed at unmount. */
  stateDir: string;
  /** Called as each layer is ready. */
  onLayer?: (index: number, layer: MountedLayer) => void;
}

export function exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout)));
  });
}

async function unmountAll(layers: MountedLayer[], overlay: string | undefined): Promise<void> {
  if (overlay !== undefined) {
    await exec('umount', [overlay]).catch(() => exec('umount', ['-l', overlay]).catch(() => undefined));
  }
  await Promise.allSettled(layers.map((l) => l.unmount()));
}

/** Mounts every layer and the overlay; on any failure undoes what it did and rejects. */
export async function mountRootfs(o: MountRootfsOptions): Promise<RootfsMount> {
  const image = await o.provider.resolve(o.imageRef);
  const ref = { imageRef: o.imageRef, manifestDigest: image.manifestDigest };
  const layers: MountedLayer[] = [];
  let overlay: string | undefined;
  try {
    await mkdir(join(o.stateDir, 'layers'), { recursive: true });
    await mkdir(o.mountpoint, { recursive: true });
    const results = await Promise.allSettled(image.manifest.layers.map(async (desc, i) => {
      const dir = join(o.stateDir, 'layers', String(i));
      const layerRef = { ...ref, layerDigest: desc.digest };
      const m = (await o.provider.mountLazy(layerRef, dir)) ?? (await o.provider.unpack(layerRef, dir));
      layers[i] = m;
      o.onLayer?.(i, m);
      return m;
    }));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const upper = join(o.stateDir, 'upper');
    const work = join(o.stateDir, 'work');
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    const lower = layers.map((l) => l.dir).reverse().join(':');
    overlay = o.mountpoint;
    await exec('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, o.mountpoint]);
  } catch (err) {
    await unmountAll(layers.filter(Boolean), overlay);
    await rm(o.stateDir, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  let done: Promise<void> | undefined;
  return {
    mountpoint: o.mountpoint,
    stateDir: o.stateDir,
    image,
    layers,
    unmount() {
      done ??= (async () => {
        await unmountAll(layers, o.mountpoint);
        await rm(o.stateDir, { recursive: true, force: true }).catch(() => undefined);
      })();
      return done;
    },
  };
}
