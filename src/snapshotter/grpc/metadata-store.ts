/**
 * The snapshotter's crash-safe metadata: one JSON file per snapshot under `<root>/metadata/<id>.json`,
 * each written to a temp file, fsynced, renamed over the old one and the directory fsynced, so a crash
 * leaves either the old or the new record, never half of one. Every file carries a sha256 of its record;
 * a file that does not parse or whose sum does not match (a torn write by some other path, a truncated
 * copy) is ignored at load and reported, and leftover temp files are deleted. A snapshot's identity is its
 * numeric id (its directory `<root>/snapshots/<id>`); renames (Commit) rewrite the same file. Ids are
 * unique among loaded records and reserved ids (the owner reserves the ids of leftover directories). Only async
 * fs calls here: the process serves FUSE on its main thread.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export type SnapshotKind = 'active' | 'view' | 'committed';

/** Where a lazily mounted layer comes from; persisted so a restarted daemon can remount it. */
export interface RemoteSource {
  imageRef: string;
  layerDigest: string;
  manifestDigest?: string | undefined;
}

export interface SnapshotRecord {
  id: string;
  /** Backend name (`<ns>/<seq>/<key>`, or a bare chain ID for remote snapshots). */
  name: string;
  /** Backend name of the parent; '' for none. */
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  /** Disk usage fixed at commit time (committed snapshots). */
  usage?: { size: number; inodes: number } | undefined;
  remote?: RemoteSource | undefined;
}

interface FileBody {
  sum: string;
  record: SnapshotRecord;
}

const sumOf = (record: SnapshotRecord): string => createHash('sha256').update(JSON.stringify(record)).digest('hex');

function isRecord(x: unknown): x is SnapshotRecord {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as Record<string, unknown>;
  return typeof r.id === 'string' && /^\d+$/.test(r.id) && typeof r.name === 'string' && r.name !== '' && typeof r.parent === 'string'
    && (r.kind === 'active' || r.kind === 'view' || r.kind === 'committed') && typeof r.labels === 'object' && r.labels !== null
    && typeof r.createdAt === 'number' && typeof r.updatedAt === 'number';
}

export interface LoadProblem {
  file: string;
  reason: string;
}

export class MetadataStore {
  readonly dir: string;
  readonly problems: LoadProblem[];
  #byName = new Map<string, SnapshotRecord>();
  #byId = new Map<string, SnapshotRecord>();
  #nextId: number;
  #tmpSeq = 0;

  private constructor(dir: string, records: SnapshotRecord[], problems: LoadProblem[]) {
    this.dir = dir;
    this.problems = problems;
    let max = 0;
    for (const r of records) {
      this.#byId.set(r.id, r);
      this.#byName.set(r.name, r);
      max = Math.max(max, Number(r.id));
    }
    this.#nextId = max + 1;
  }

  /** Loads every valid record under `dir` (created if missing); invalid files are skipped and listed in `problems`. */
  static async open(dir: string): Promise<MetadataStore> {
    await mkdir(dir, { recursive: true });
    const records: SnapshotRecord[] = [];
    const problems: LoadProblem[] = [];
    const names = new Set<string>();
    for (const file of (await readdir(dir)).sort()) {
      const path = join(dir, file);
      if (file.endsWith('.tmp')) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!/^\d+\.json$/.test(file)) continue;
      let body: FileBody;
      try {
        body = JSON.parse(await readFile(path, 'utf8')) as FileBody;
      } catch (err) {
        problems.push({ file, reason: `unparseable: ${(err as Error).message}` });
        continue;
      }
      if (!isRecord(body?.record) || body.record.id !== file.slice(0, -5)) {
        problems.push({ file, reason: 'not a snapshot record' });
        continue;
      }
      if (body.sum !== sumOf(body.record)) {
        problems.push({ file, reason: 'checksum mismatch' });
        continue;
      }
      if (names.has(body.record.name)) {
        problems.push({ file, reason: `duplicate name ${body.record.name}` });
        continue;
      }
      names.add(body.record.name);
      records.push(body.record);
    }
    return new MetadataStore(dir, records, problems);
  }

  get(name: string): SnapshotRecord | undefined {
    return this.#byName.get(name);
  }

  byId(id: string): SnapshotRecord | undefined {
    return this.#byId.get(id);
  }

  all(): SnapshotRecord[] {
    return [...this.#byId.values()].sort((a, b) => Number(a.id) - Number(b.id));
  }

  children(name: string): SnapshotRecord[] {
    return this.all().filter((r) => r.parent === name);
  }

  /** Makes every later id greater than `id` (for ids still in use outside the store, e.g. leftover dirs). */
  reserveThrough(id: number): void {
    this.#nextId = Math.max(this.#nextId, id + 1);
  }

  /** A fresh id: above every loaded or reserved id, never handed out twice by this instance. */
  allocateId(): string {
    return String(this.#nextId++);
  }

  /** Writes `record` durably (replacing the record with the same id) and then updates the in-memory index. */
  async put(record: SnapshotRecord): Promise<void> {
    const other = this.#byName.get(record.name);
    if (other && other.id !== record.id) throw new Error(`metadata: name ${record.name} already belongs to snapshot ${other.id}`);
    const body: FileBody = { sum: sumOf(record), record };
    const final = join(this.dir, `${record.id}.json`);
    const tmp = join(this.dir, `${record.id}.${process.pid}.${this.#tmpSeq++}.tmp`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(body));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, final);
    await this.#syncDir();
    const old = this.#byId.get(record.id);
    if (old) this.#byName.delete(old.name);
    this.#byId.set(record.id, record);
    this.#byName.set(record.name, record);
  }

  /** Deletes a record durably. */
  async delete(id: string): Promise<void> {
    await unlink(join(this.dir, `${id}.json`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await this.#syncDir();
    const old = this.#byId.get(id);
    if (old) this.#byName.delete(old.name);
    this.#byId.delete(id);
  }

  async #syncDir(): Promise<void> {
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}
