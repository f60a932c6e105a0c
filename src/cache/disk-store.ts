/**
 * The on-disk content-addressed tier, the embedded default: `<root>/blobs/sha256/<hex>`, written through
 * atomic-file.ts (temp file + optional fsync + rename), so it survives restarts and never shows a partial
 * artifact. An in-memory index (size, last access) is loaded by scanning the directory at `open`; last
 * access is persisted as the file's mtime (touched on every hit) so LRU order also survives a restart.
 * After each put the store evicts least-recently-used files until it is within `maxBytes`. Every read
 * re-hashes the file: a file whose bytes do not match its name is deleted and reported as a miss with a
 * 'corrupt' event. Several processes may share a root: reads always go to the file system, the index is
 * only a hint for size accounting, and `gc` rescans before it evicts.
 *
 * Large blobs (layers the proxy keeps as a pull-through cache) take a second path that never holds the
 * blob in memory: `createWriter` streams into a temp file that `commit` renames into place once the
 * caller has verified it (disk-blob-writer.ts), and `locate` hands out the file's path and size for
 * streaming reads. `locate` does not re-hash on every read: a file is hashed at most once per process
 * (files this process committed are trusted; one found on disk, e.g. after a restart, is hashed on its
 * first `locate` and deleted as 'corrupt' if it does not match), and its size is checked on every call.
 * Both kinds share one directory, one byte bound and one LRU order.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskBlobWriter } from './disk-blob-writer.js';
import { verifyDigest, type Digest } from '../oci/digest.js';
import { sweepTemp, writeFileAtomic } from './atomic-file.js';
import { publish } from './events.js';
import type { BlobStore, CacheStats, GcResult } from './types.js';
import { assertContent, assertDigest, newCounters } from './verify.js';
import { OciError } from '../oci/errors.js';

export interface DiskBlobStoreOptions {
  root: string;
  /** Byte bound (default 10 GiB). */
  maxBytes?: number;
  /** fsync each file before rename (default true; tests may turn it off for speed). */
  fsync?: boolean;
  /** Temp files older than this are crash leftovers (default 1 h). */
  staleTempMs?: number;
}

interface Entry {
  size: number;
  atime: number;
}

export class DiskBlobStore implements BlobStore {
  readonly #root: string;
  readonly #blobs: string;
  readonly #tmp: string;
  readonly #maxBytes: number;
  readonly #fsync: boolean;
  readonly #staleTempMs: number;
  readonly #index = new Map<string, Entry>();
  #bytes = 0;
  readonly #counters = newCounters();
  /** Files known to hold their digest's bytes, by hex, with the size they were verified at. */
  readonly #trusted = new Map<string, number>();

  private constructor(opts: DiskBlobStoreOptions) {
    this.#root = opts.root;
    this.#blobs = join(opts.root, 'blobs', 'sha256');
    this.#tmp = join(opts.root, 'tmp');
    this.#maxBytes = opts.maxBytes ?? 10 * 1024 ** 3;
    this.#fsync = opts.fsync ?? true;
    this.#staleTempMs = opts.staleTempMs ?? 3_600_000;
  }

  /** Creates the directories if needed, removes stale temp files and loads the index. */
  static async open(opts: DiskBlobStoreOptions): Promise<DiskBlobStore> {
    const store = new DiskBlobStore(opts);
    await mkdir(store.#blobs, { recursive: true });
    await mkdir(store.#tmp, { recursive: true });
    await sweepTemp(store.#tmp, store.#staleTempMs);
    await store.#scan();
    return store;
  }

  get root(): string {
    return this.#root;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  #path(digest: Digest): string {
    return join(this.#blobs, digest.slice('sha256:'.length));
  }

  async #scan(): Promise<void> {
    this.#index.clear();
    this.#bytes = 0;
    for (const name of await readdir(this.#blobs)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const st = await stat(join(this.#blobs, name)).catch(() => undefined);
      if (st?.isFile()) this.#track(name, st.size, st.mtimeMs);
    }
  }

  #track(hex: string, size: number, atime: number): void {
    const old = this.#index.get(hex);
    if (old) this.#bytes -= old.size;
    this.#index.set(hex, { size, atime });
    this.#bytes += size;
  }

  #untrack(hex: string): void {
    this.#trusted.delete(hex);
    const old = this.#index.get(hex);
    if (old) {
      this.#bytes -= old.size;
      this.#index.delete(hex);
    }
  }

  async get(digest: Digest): Promise<Uint8Array | undefined> {
    assertDigest(digest);
    if (!digest.startsWith('sha256:')) return this.#miss(digest);
    const hex = digest.slice(7);
    const p = this.#path(digest);
    let bytes: Buffer;
    try {
      bytes = await readFile(p);
    } catch {
      this.#untrack(hex);
      return this.#miss(digest);
    }
    if (!verifyDigest(bytes, digest)) {
      this.#counters.corrupt++;
      publish({ op: 'corrupt', tier: 'disk', key: digest, bytes: bytes.byteLength });
      await rm(p, { force: true });
      this.#untrack(hex);
      return this.#miss(digest);
    }
    const now = Date.now();
    this.#track(hex, bytes.byteLength, now);
    utimes(p, now / 1000, now / 1000).catch(() => {});
    this.#counters.hits++;
    publish({ op: 'get', tier: 'disk', key: digest, hit: true, bytes: bytes.byteLength });
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #miss(digest: Digest): undefined {
    this.#counters.misses++;
    publish({ op: 'get', tier: 'disk', key: digest, hit: false });
    return undefined;
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    assertContent(digest, bytes);
    if (!digest.startsWith('sha256:')) return; // only sha256 is produced; nothing else is cached
    const hex = digest.slice(7);
    const p = this.#path(digest);
    // Always rewrite, even when present: a put is rare (after indexing) and this heals a damaged file.
    await writeFileAtomic(this.#tmp, p, bytes, this.#fsync);
    this.#counters.puts++;
    this.#trusted.set(hex, bytes.byteLength);
    this.#track(hex, bytes.byteLength, Date.now());
    publish({ op: 'put', tier: 'disk', key: digest, bytes: bytes.byteLength });
    if (this.#bytes > this.#maxBytes) await this.#evict(this.#maxBytes, hex);
  }

  async has(digest: Digest): Promise<boolean> {
    assertDigest(digest);
    if (!digest.startsWith('sha256:')) return false;
    const st = await stat(this.#path(digest)).catch(() => undefined);
    if (!st) this.#untrack(digest.slice(7));
    return st !== undefined;
  }

  async delete(digest: Digest): Promise<void> {
    assertDigest(digest);
    if (!digest.startsWith('sha256:')) return;
    await rm(this.#path(digest), { force: true });
    this.#untrack(digest.slice(7));
    publish({ op: 'delete', tier: 'disk', key: digest });
  }

  /**
   * The path and size of a stored blob for streaming reads, or undefined on a miss; counts as a use for
   * LRU. The file may be evicted (unlinked) after this returns: open it at once (an open file stays
   * readable). No re-hash once this process has verified the file; see the header.
   */
  async locate(digest: Digest): Promise<{ path: string; size: number } | undefined> {
    assertDigest(digest);
    if (!digest.startsWith('sha256:')) return undefined;
    const hex = digest.slice(7);
    const p = this.#path(digest);
    const st = await stat(p).catch(() => undefined);
    if (!st?.isFile()) {
      this.#untrack(hex);
      return this.#miss(digest);
    }
    const trusted = this.#trusted.get(hex);
    if (trusted === undefined || trusted !== st.size) {
      if (!(await hashFile(p, digest))) {
        this.#counters.corrupt++;
        publish({ op: 'corrupt', tier: 'disk', key: digest, bytes: st.size });
        await rm(p, { force: true });
        this.#untrack(hex);
        return this.#miss(digest);
      }
      this.#trusted.set(hex, st.size);
    }
    const now = Date.now();
    this.#track(hex, st.size, now);
    utimes(p, now / 1000, now / 1000).catch(() => {});
    this.#counters.hits++;
    publish({ op: 'get', tier: 'disk', key: digest, hit: true, bytes: st.size });
    return { path: p, size: st.size };
  }

  /** Starts a streaming write of `digest` (see disk-blob-writer.ts); nothing is visible before `commit`. */
  createWriter(digest: Digest): DiskBlobWriter {
    assertDigest(digest);
    if (!digest.startsWith('sha256:')) throw new OciError('DIGEST_INVALID', `only sha256 blobs are stored, not ${digest.slice(0, 80)}`);
    const hex = digest.slice(7);
    const tmpPath = join(this.#tmp, `${randomBytes(8).toString('hex')}.${process.pid}.tmp`);
    return new DiskBlobWriter({
      digest,
      tmpPath,
      fsync: this.#fsync,
      adopt: async (tmp, size) => {
        const target = this.#path(digest);
        await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
          await mkdir(this.#blobs, { recursive: true });
          await rename(tmp, target);
        });
        this.#counters.puts++;
        this.#track(hex, size, Date.now());
        this.#trusted.set(hex, size);
        publish({ op: 'put', tier: 'disk', key: digest, bytes: size });
        if (this.#bytes > this.#maxBytes) await this.#evict(this.#maxBytes, hex);
      },
    });
  }

  /** Evicts LRU entries until at most `limit` bytes remain; `keep` (the entry just written) goes last. */
  async #evict(limit: number, keep?: string): Promise<{ removed: number; freedBytes: number }> {
    let removed = 0;
    let freedBytes = 0;
    const order = [...this.#index.entries()].sort((a, b) => a[1].atime - b[1].atime);
    for (const [hex, e] of order) {
      if (this.#bytes <= limit) break;
      if (hex === keep && order.length > 1) continue;
      await rm(join(this.#blobs, hex), { force: true });
      this.#untrack(hex);
      removed++;
      freedBytes += e.size;
      this.#counters.evictions++;
      publish({ op: 'evict', tier: 'disk', key: `sha256:${hex}`, bytes: e.size });
    }
    return { removed, freedBytes };
  }

  /** Rescans the root (other processes may share it), sweeps temp leftovers, then evicts down to `maxBytes`. */
  async gc(maxBytes = this.#maxBytes): Promise<GcResult> {
    await sweepTemp(this.#tmp, this.#staleTempMs);
    await this.#scan();
    const r = await this.#evict(maxBytes);
    return { ...r, remainingBytes: this.#bytes };
  }

  async stats(): Promise<CacheStats> {
    return { tier: 'disk', entries: this.#index.size, bytes: this.#bytes, maxBytes: this.#maxBytes, ...this.#counters };
  }
}

/** Streams a file through sha256; true when it hashes to `digest`. */
async function hashFile(path: string, digest: string): Promise<boolean> {
  const h = createHash('sha256');
  try {
    for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  } catch {
    return false;
  }
  return `sha256:${h.digest('hex')}` === digest;
}
