/**
 * A streaming write into the disk tier, for blobs too large to hold in memory (layers the proxy passes
 * through or indexes). Bytes go to a uniquely named temp file under `<root>/tmp` as they arrive; the
 * file becomes visible under its digest only on `commit`, after the caller has verified that exactly the
 * bytes written hash to the digest (the proxy's streaming verifier or the indexer pool hashes them once on
 * the way; hashing a second time here would cost a core-second per GiB for nothing). `commit` optionally
 * fsyncs, then renames (atomic-file.ts rules: a reader sees the whole blob or nothing). `abort` — or any
 * failure — removes the temp file; a writer never leaves a partial blob behind. Chunks are queued and
 * written 1 MiB at a time (one writev instead of one write per network chunk). `write` returns false
 * when the file lags behind (then wait for `drained()`), so a slow disk slows the stream instead of
 * filling memory.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { OciError } from '../oci/errors.js';

/** Queued bytes handed to the file at once. */
const BATCH_BYTES = 1 << 20;

export interface BlobFileWriter {
  readonly digest: string;
  /** Bytes accepted so far. */
  readonly bytes: number;
  /** Queues `chunk`; false when the caller should wait for `drained()` before writing more. */
  write(chunk: Uint8Array): boolean;
  drained(): Promise<void>;
  /** Makes the blob visible. `verifiedDigest` is the digest the caller proved the written bytes hash to. */
  commit(verifiedDigest: string): Promise<void>;
  /** Drops the temp file (idempotent; a no-op after commit). */
  abort(): void;
}

export class DiskBlobWriter implements BlobFileWriter {
  readonly digest: string;
  readonly #tmp: string;
  readonly #fsync: boolean;
  readonly #adopt: (tmp: string, size: number) => Promise<void>;
  readonly #ws: WriteStream;
  #bytes = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #state: 'open' | 'committing' | 'done' | 'aborted' = 'open';
  #error: Error | undefined;

  constructor(opts: { digest: string; tmpPath: string; fsync: boolean; adopt: (tmp: string, size: number) => Promise<void> }) {
    this.digest = opts.digest;
    this.#tmp = opts.tmpPath;
    this.#fsync = opts.fsync;
    this.#adopt = opts.adopt;
    this.#ws = createWriteStream(this.#tmp, { flags: 'wx', mode: 0o644, highWaterMark: 4 << 20 });
    this.#ws.on('error', (err) => {
      this.#error ??= err;
      this.abort();
    });
  }

  get bytes(): number {
    return this.#bytes;
  }

  write(chunk: Uint8Array): boolean {
    if (this.#state !== 'open') return true;
    this.#bytes += chunk.length;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    return this.#pendingBytes >= BATCH_BYTES ? this.#flush() : true;
  }

  /** Hands the queued chunks to the file as one writev (network chunks are ~64 KiB: one syscall each costs). */
  #flush(): boolean {
    if (this.#pending.length === 0) return !this.#ws.writableNeedDrain;
    this.#ws.cork();
    let ok = true;
    for (const c of this.#pending) ok = this.#ws.write(c);
    this.#ws.uncork();
    this.#pending = [];
    this.#pendingBytes = 0;
    return ok;
  }

  drained(): Promise<void> {
    if (this.#state !== 'open' || !this.#ws.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#ws.off('drain', done);
        this.#ws.off('close', done);
        resolve();
      };
      this.#ws.on('drain', done);
      this.#ws.on('close', done);
    });
  }

  async commit(verifiedDigest: string): Promise<void> {
    if (this.#state !== 'open') throw this.#error ?? new Error(`blob writer for ${this.digest} is ${this.#state}`);
    if (verifiedDigest !== this.digest) {
      this.abort();
      throw new OciError('DIGEST_INVALID', `blob writer for ${this.digest} was asked to commit ${verifiedDigest}`);
    }
    this.#flush();
    this.#state = 'committing';
    try {
      await new Promise<void>((resolve, reject) => {
        this.#ws.once('error', reject);
        this.#ws.end(() => resolve());
      });
      if (this.#error) throw this.#error;
      if (this.#fsync) {
        const fh = await open(this.#tmp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      await this.#adopt(this.#tmp, this.#bytes);
      this.#state = 'done';
    } catch (err) {
      this.#state = 'aborted';
      await rm(this.#tmp, { force: true });
      throw err;
    }
  }

  abort(): void {
    if (this.#state === 'done' || this.#state === 'aborted') return;
    const wasCommitting = this.#state === 'committing';
    this.#state = 'aborted';
    if (wasCommitting) return; // commit's own catch removes the file
    this.#ws.destroy();
    this.#ws.once('close', () => void rm(this.#tmp, { force: true }));
    if (this.#ws.closed) void rm(this.#tmp, { force: true });
  }
}
