/**
 * The snapshot state machine behind containerd's Snapshots API, transport-free (the gRPC adapter is
 * `grpc-service.ts`). Snapshots are active, view or committed, with parents, labels and timestamps kept in
 * the crash-safe `MetadataStore`; each has `<root>/snapshots/<id>/fs` (its upper dir, its unpacked layer or
 * its FUSE mount point) and `work` (overlay's work dir). Mounts follow containerd's overlayfs snapshotter:
 * a bind for a parentless snapshot or a single-parent view, else `overlay` with `lowerdir` = the parent chain,
 * nearest first (../shared/spec/containerd-integration.md §6).
 *
 * Remote-snapshot handshake (§2.1): a Prepare carrying `containerd.io/snapshot.ref` and layer labels asks
 * the `LayerProvider` to mount the layer lazily; on success the snapshot is committed under the ref's value
 * (the bare chain ID) and AlreadyExists is thrown, so containerd skips the download; when the provider has
 * no zTOC (or fails) the Prepare answers normal mounts and containerd's differ fills the snapshot. Remote
 * layers record their source, so after a restart they are remounted when a Prepare, View or Mounts needs
 * them as lowerdirs. Errors are `SnapshotError`s with containerd's codes (§1.7). Operations run one at a
 * time (containerd sends them sequentially; no `rebase` capability is advertised, §1.6).
 */
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerProvider, MountedLayer } from '../core/types.js';
import { compileFilters } from './filters.js';
import { linuxHostMounts, type HostMounts } from './host-mounts.js';
import { LABEL_REMOTE, LABEL_SNAPSHOT_REF, REMOTE_LABEL_VALUE, oversizedLabel, remoteSourceFromLabels } from './labels.js';
import { MetadataStore, type RemoteSource, type SnapshotKind, type SnapshotRecord } from './metadata-store.js';
import { SnapshotError, alreadyExists, notFound } from './snapshot-error.js';

export interface Mount {
  type: string;
  source: string;
  options: string[];
}

/** What containerd sees of a snapshot: the stored record without its backend details. */
export type SnapshotInfo = Pick<SnapshotRecord, 'name' | 'parent' | 'kind' | 'labels' | 'createdAt' | 'updatedAt'>;

export interface Usage {
  size: number;
  inodes: number;
}

/** pino-compatible. */
export interface SnapshotLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface SnapshotterOptions {
  root: string;
  provider: LayerProvider;
  host?: HostMounts;
  logger?: SnapshotLogger;
  clock?: () => number;
}

const silent: SnapshotLogger = { info() {}, warn() {} };

const toInfo = (r: SnapshotRecord): SnapshotInfo => ({ name: r.name, parent: r.parent, kind: r.kind, labels: { ...r.labels }, createdAt: r.createdAt, updatedAt: r.updatedAt });

/** Disk usage of a plain directory tree (512-byte blocks, distinct inodes), as containerd's fs.DiskUsage. */
async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: true }).catch(() => undefined);
    if (!st) return;
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    size += Number(st.blocks) * 512;
    if (st.isDirectory()) for (const n of await readdir(p).catch(() => [] as string[])) await walk(join(p, n));
  };
  await walk(dir);
  return { size, inodes: seen.size };
}

export class Snapshotter {
  readonly root: string;
  #store: MetadataStore;
  #provider: LayerProvider;
  #host: HostMounts;
  #log: SnapshotLogger;
  #clock: () => number;
  #live = new Map<string, MountedLayer>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(opts: SnapshotterOptions, store: MetadataStore) {
    this.root = opts.root;
    this.#store = store;
    this.#provider = opts.provider;
    this.#host = opts.host ?? linuxHostMounts;
    this.#log = opts.logger ?? silent;
    this.#clock = opts.clock ?? Date.now;
  }

  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    await mkdir(join(opts.root, 'snapshots'), { recursive: true });
    const store = await MetadataStore.open(join(opts.root, 'metadata'));
    const s = new Snapshotter(opts, store);
    for (const d of await readdir(join(opts.root, 'snapshots'))) if (/^\d+$/.test(d)) store.reserveThrough(Number(d));
    for (const p of store.problems) s.#log.warn({ file: p.file, reason: p.reason }, 'ignoring damaged snapshot record');
    return s;
  }

  #dir(id: string): string {
    return join(this.root, 'snapshots', id);
  }

  /** Runs `fn` after every earlier operation has finished. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #must(key: string): SnapshotRecord {
    const rec = this.#store.get(key);
    if (!rec) throw notFound(`snapshot ${key}`);
    return rec;
  }

  #chain(rec: SnapshotRecord): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (let p = rec.parent; p !== ''; ) {
      const r = this.#store.get(p);
      if (!r) throw new SnapshotError('FAILED_PRECONDITION', `snapshot ${rec.name}: parent ${p} is missing`);
      out.push(r);
      p = r.parent;
    }
    return out;
  }

  async #create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<SnapshotRecord> {
    if (key === '') throw new SnapshotError('INVALID_ARGUMENT', 'snapshot key must not be empty');
    const big = oversizedLabel(labels);
    if (big !== undefined) throw new SnapshotError('INVALID_ARGUMENT', `label ${big}: label key and value length exceeds maximum size (4096 bytes)`);
    if (this.#store.get(key)) throw alreadyExists(`snapshot ${key}`);
    if (parent !== '') {
      const p = this.#store.get(parent);
      if (!p) throw notFound(`parent snapshot ${parent}`);
      if (p.kind !== 'committed') throw new SnapshotError('INVALID_ARGUMENT', `parent ${parent} is not a committed snapshot`);
    }
    const id = this.#store.allocateId();
    await mkdir(join(this.#dir(id), 'fs'), { recursive: true });
    if (kind === 'active') await mkdir(join(this.#dir(id), 'work'), { recursive: true });
    const now = this.#clock();
    const rec: SnapshotRecord = { id, name: key, parent, kind, labels: { ...labels }, createdAt: now, updatedAt: now };
    await this.#store.put(rec);
    return rec;
  }

  prepare(key: string, parent: string, labels: Record<string, string> = {}): Promise<Mount[]> {
    return this.#serial(async () => {
      const target = labels[LABEL_SNAPSHOT_REF];
      if (target && this.#store.get(target)) throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
      const rec = await this.#create('active', key, parent, labels);
      const source = target ? remoteSourceFromLabels(labels) : undefined;
      if (target && source && (await this.#tryRemote(rec, target, source))) throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
      return this.#mountsOrUndo(rec);
    });
  }

  /** The new snapshot's mounts; if its parents cannot be made available, the snapshot is dropped again. */
  async #mountsOrUndo(rec: SnapshotRecord): Promise<Mount[]> {
    try {
      return await this.#mountsOf(rec);
    } catch (err) {
      await this.#store.delete(rec.id);
      await this.#release(rec.id);
      throw err;
    }
  }

  /** Mounts the layer lazily and commits it as `target`; false when the normal path must be taken. */
  async #tryRemote(rec: SnapshotRecord, target: string, source: RemoteSource): Promise<boolean> {
    const fs = join(this.#dir(rec.id), 'fs');
    let mounted: MountedLayer | undefined;
    try {
      mounted = await this.#provider.mountLazy(source, fs);
    } catch (err) {
      this.#log.warn({ key: rec.name, ...source, err: (err as Error).message }, 'lazy mount failed; containerd will unpack the layer');
      return false;
    }
    if (!mounted) {
      this.#log.info({ key: rec.name, ...source }, 'no zTOC for layer; containerd will unpack it');
      return false;
    }
    const committed: SnapshotRecord = {
      ...rec,
      name: target,
      kind: 'committed',
      labels: { ...rec.labels, [LABEL_REMOTE]: REMOTE_LABEL_VALUE },
      updatedAt: this.#clock(),
      usage: { size: 0, inodes: 0 },
      remote: { imageRef: source.imageRef, layerDigest: source.layerDigest, manifestDigest: source.manifestDigest },
    };
    try {
      await this.#store.put(committed);
    } catch (err) {
      await mounted.unmount().catch(() => undefined);
      throw err;
    }
    this.#live.set(rec.id, mounted);
    await rm(join(this.#dir(rec.id), 'work'), { recursive: true, force: true });
    this.#log.info({ name: target, dir: mounted.dir, lazy: mounted.lazy, ...source }, 'layer mounted lazily');
    return true;
  }

  view(key: string, parent: string, labels: Record<string, string> = {}): Promise<Mount[]> {
    return this.#serial(async () => this.#mountsOrUndo(await this.#create('view', key, parent, labels)));
  }

  mounts(key: string): Promise<Mount[]> {
    return this.#serial(async () => {
      const rec = this.#must(key);
      if (rec.kind === 'committed') throw new SnapshotError('FAILED_PRECONDITION', `snapshot ${key} is committed, not active or view`);
      return this.#mountsOf(rec);
    });
  }

  async #mountsOf(rec: SnapshotRecord): Promise<Mount[]> {
    const chain = this.#chain(rec);
    for (const p of chain) await this.#ensureMounted(p);
    const fs = (r: SnapshotRecord): string => join(this.#dir(r.id), 'fs');
    if (chain.length === 0) return [{ type: 'bind', source: fs(rec), options: [rec.kind === 'active' ? 'rw' : 'ro', 'rbind'] }];
    if (rec.kind === 'view' && chain.length === 1) return [{ type: 'bind', source: fs(chain[0]!), options: ['ro', 'rbind'] }];
    const lower = `lowerdir=${chain.map(fs).join(':')}`;
    if (rec.kind === 'view') return [{ type: 'overlay', source: 'overlay', options: [lower] }];
    return [{ type: 'overlay', source: 'overlay', options: [`workdir=${join(this.#dir(rec.id), 'work')}`, `upperdir=${fs(rec)}`, lower] }];
  }

  /** Remounts a remote layer that is not served by this process (after a restart); unpacks it if it can no longer be lazy. */
  async #ensureMounted(rec: SnapshotRecord): Promise<void> {
    if (!rec.remote || this.#live.has(rec.id)) return;
    const fs = join(this.#dir(rec.id), 'fs');
    for (const mp of await this.#host.under(fs)) await this.#host.unmount(mp).catch(() => undefined);
    try {
      let layer = await this.#provider.mountLazy(rec.remote, fs);
      if (!layer) {
        this.#log.warn({ name: rec.name, ...rec.remote }, 'layer can no longer be mounted lazily; unpacking it');
        layer = await this.#provider.unpack(rec.remote, fs);
        await this.#store.put({ ...rec, remote: undefined, updatedAt: this.#clock() });
      }
      this.#live.set(rec.id, layer);
      this.#log.info({ name: rec.name, dir: layer.dir, lazy: layer.lazy }, 'remote layer remounted');
    } catch (err) {
      throw new SnapshotError('UNAVAILABLE', `remote layer ${rec.name} (${rec.remote.layerDigest}) is unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  commit(name: string, key: string, labels: Record<string, string> = {}, parent = ''): Promise<void> {
    return this.#serial(async () => {
      const rec = this.#must(key);
      if (rec.kind !== 'active') throw new SnapshotError('FAILED_PRECONDITION', `snapshot ${key} is not active`);
      if (this.#store.get(name)) throw alreadyExists(`snapshot ${name}`);
      const big = oversizedLabel(labels);
      if (big !== undefined) throw new SnapshotError('INVALID_ARGUMENT', `label ${big}: label key and value length exceeds maximum size (4096 bytes)`);
      let newParent = rec.parent;
      if (parent !== '' && parent !== rec.parent) {
        if (rec.parent !== '') throw new SnapshotError('INVALID_ARGUMENT', `snapshot ${key} already has parent ${rec.parent}`);
        const p = this.#store.get(parent);
        if (!p) throw notFound(`parent snapshot ${parent}`);
        newParent = parent;
      }
      const usage = await diskUsage(join(this.#dir(rec.id), 'fs'));
      await this.#store.put({ ...rec, name, parent: newParent, kind: 'committed', labels: { ...labels }, usage, updatedAt: this.#clock() });
      await rm(join(this.#dir(rec.id), 'work'), { recursive: true, force: true });
    });
  }

  remove(key: string): Promise<void> {
    return this.#serial(async () => {
      const rec = this.#must(key);
      const kids = this.#store.children(key);
      if (kids.length > 0) throw new SnapshotError('FAILED_PRECONDITION', `cannot remove snapshot ${key} with ${kids.length} child(ren)`);
      await this.#store.delete(rec.id);
      await this.#release(rec.id);
    });
  }

  /** Unmounts whatever this snapshot dir holds and deletes it; leaves it for Cleanup if a mount will not go. */
  async #release(id: string): Promise<void> {
    const dir = this.#dir(id);
    const live = this.#live.get(id);
    this.#live.delete(id);
    if (live) await live.unmount().catch((err: Error) => this.#log.warn({ id, err: err.message }, 'unmount failed'));
    for (const mp of await this.#host.under(dir)) await this.#host.unmount(mp).catch((err: Error) => this.#log.warn({ mp, err: err.message }, 'umount failed'));
    if ((await this.#host.under(dir)).length > 0) {
      this.#log.warn({ dir }, 'still mounted; left for Cleanup');
      return;
    }
    await rm(dir, { recursive: true, force: true });
  }

  stat(key: string): Promise<SnapshotInfo> {
    return this.#serial(async () => toInfo(this.#must(key)));
  }

  /** containerd's Update: only labels are mutable; `paths` are `labels` or `labels.<key>` (absent key = delete); none = all labels. */
  update(info: { name: string; labels: Record<string, string> }, paths: readonly string[] = []): Promise<SnapshotInfo> {
    return this.#serial(async () => {
      const rec = this.#must(info.name);
      let labels = { ...rec.labels };
      if (paths.length === 0) labels = { ...info.labels };
      for (const path of paths) {
        if (path === 'labels') labels = { ...info.labels };
        else if (path.startsWith('labels.')) {
          const k = path.slice('labels.'.length);
          const v = info.labels[k];
          if (v === undefined) delete labels[k];
          else labels[k] = v;
        } else throw new SnapshotError('INVALID_ARGUMENT', `cannot update ${JSON.stringify(path)} field on snapshot ${info.name}`);
      }
      const big = oversizedLabel(labels);
      if (big !== undefined) throw new SnapshotError('INVALID_ARGUMENT', `label ${big}: label key and value length exceeds maximum size (4096 bytes)`);
      const next = { ...rec, labels, updatedAt: this.#clock() };
      await this.#store.put(next);
      return toInfo(next);
    });
  }

  async list(filters: readonly string[] = []): Promise<SnapshotInfo[]> {
    const match = compileFilters(filters);
    return this.#serial(async () => this.#store.all().filter(match).map(toInfo));
  }

  usage(key: string): Promise<Usage> {
    return this.#serial(async () => {
      const rec = this.#must(key);
      if (rec.kind === 'active') return diskUsage(join(this.#dir(rec.id), 'fs'));
      return rec.usage ?? { size: 0, inodes: 0 };
    });
  }

  /** Frees snapshot dirs and mounts that no record owns (left by crashes or by a Remove whose unmount failed). */
  cleanup(): Promise<void> {
    return this.#serial(async () => {
      for (const id of [...this.#live.keys()]) if (!this.#store.byId(id)) await this.#release(id);
      const dirs = await readdir(join(this.root, 'snapshots')).catch(() => [] as string[]);
      for (const id of dirs) if (!this.#store.byId(id)) await this.#release(id);
    });
  }

  /** Whether this process serves the remote layer of snapshot `name` (for tests and status). */
  isMounted(name: string): boolean {
    const rec = this.#store.get(name);
    return rec !== undefined && this.#live.has(rec.id);
  }

  /** Unmounts every layer this process serves (the records stay: they are remounted on demand after a restart). */
  close(): Promise<void> {
    return this.#serial(async () => {
      const ids = [...this.#live.keys()].sort((a, b) => Number(b) - Number(a));
      for (const id of ids) {
        const m = this.#live.get(id)!;
        this.#live.delete(id);
        await m.unmount().catch((err: Error) => this.#log.warn({ id, err: err.message }, 'unmount failed'));
      }
    });
  }
}
