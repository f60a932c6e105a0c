/**
 * The on-disk metadata tier: one small file per key under `<root>/meta/<2 hex>/<sha256(key) hex>`,
 * written atomically (atomic-file.ts) as JSON `{key, value, expiresAt, sum}`. The file repeats its key
 * (hash collisions and misplaced files are detected) and carries `sum` (verify.ts `recordSum`), so a
 * damaged or planted record reads as a miss, is deleted and reported as 'corrupt'. Expired records read as
 * misses and are removed lazily and by `gc`. Records are tiny; the tier has no byte bound.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sweepTemp, writeFileAtomic } from './atomic-file.js';
import { publish } from './events.js';
import type { MetaStore } from './types.js';
import { recordSum } from './verify.js';

export interface DiskMetaStoreOptions {
  root: string;
  fsync?: boolean;
  /** Clock for expiry (tests). */
  now?: () => number;
}

interface Record {
  key: string;
  value: string;
  expiresAt: number | null;
  sum: string;
}

export class DiskMetaStore implements MetaStore {
  readonly #dir: string;
  readonly #tmp: string;
  readonly #fsync: boolean;
  readonly #now: () => number;

  private constructor(opts: DiskMetaStoreOptions) {
    this.#dir = join(opts.root, 'meta');
    this.#tmp = join(opts.root, 'tmp');
    this.#fsync = opts.fsync ?? true;
    this.#now = opts.now ?? Date.now;
  }

  static async open(opts: DiskMetaStoreOptions): Promise<DiskMetaStore> {
    const s = new DiskMetaStore(opts);
    await mkdir(s.#dir, { recursive: true });
    await mkdir(s.#tmp, { recursive: true });
    return s;
  }

  #path(key: string): { dir: string; file: string } {
    const hex = createHash('sha256').update(key).digest('hex');
    const dir = join(this.#dir, hex.slice(0, 2));
    return { dir, file: join(dir, hex) };
  }

  async get(key: string): Promise<string | undefined> {
    const { file } = this.#path(key);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      return undefined;
    }
    let rec: Record | undefined;
    try {
      rec = JSON.parse(text) as Record;
    } catch {
      rec = undefined;
    }
    if (!rec || rec.key !== key || typeof rec.value !== 'string' || rec.sum !== recordSum(key, rec.value)) {
      publish({ op: 'corrupt', tier: 'meta-disk', key });
      await rm(file, { force: true });
      return undefined;
    }
    if (rec.expiresAt !== null && rec.expiresAt <= this.#now()) {
      await rm(file, { force: true });
      return undefined;
    }
    return rec.value;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    const { dir, file } = this.#path(key);
    const rec: Record = { key, value, expiresAt: ttlMs !== undefined ? this.#now() + ttlMs : null, sum: recordSum(key, value) };
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(this.#tmp, file, JSON.stringify(rec), this.#fsync);
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key).file, { force: true });
  }

  /** Removes expired and unreadable records and stale temp files; returns how many records were removed. */
  async gc(): Promise<number> {
    await sweepTemp(this.#tmp, 3_600_000);
    let removed = 0;
    for (const sub of await readdir(this.#dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.#dir, sub)).catch(() => [] as string[])) {
        const file = join(this.#dir, sub, name);
        const rec = await readFile(file, 'utf8').then((t) => JSON.parse(t) as Record).catch(() => undefined);
        if (!rec || (rec.expiresAt !== null && rec.expiresAt <= this.#now())) {
          await rm(file, { force: true });
          removed++;
        }
      }
    }
    return removed;
  }
}
