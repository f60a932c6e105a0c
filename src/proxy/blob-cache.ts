/**
 * The pull-through blob cache (distribution's proxy mode keeps blobs too; users of rate-limited upstreams
 * want it): a whole upstream blob that the proxy streamed and verified — to a client, or to the indexer
 * while it built a zTOC — is kept in the disk tier, and later GETs, HEADs and Ranges of that digest are
 * answered from the local file. The store is the disk tier (`../cache` DiskBlobStore satisfies
 * `BlobFileStore`): one byte bound (`--cache-max-bytes`) and one LRU order for zTOCs and layers alike.
 * Redis never holds these (its tier keeps its 32 MiB cap; only `put` reaches it, and nothing here puts).
 *
 * Rules: (1) nothing becomes visible before the whole body was verified against its digest (the writer's
 * temp file is renamed only by `complete()`, which the stream verifier calls after the last byte hashed
 * right); (2) one write per digest at a time in this process (a second concurrent fetch just passes
 * through); (3) a blob larger than half the bound is not kept (it would flush everything else); (4) cache
 * failures never fail a request: a write that breaks is dropped, a lookup that throws is a miss. Access
 * control is the caller's (`blobs.ts` asks the upstream per client before serving a cached blob).
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Digest } from '../oci/digest.js';
import type { BlobFileWriter } from '../cache/index.js';

/** What the proxy needs of the disk tier. */
export interface BlobFileStore {
  readonly maxBytes: number;
  /** Path and size of a verified stored blob, or undefined. */
  locate(digest: Digest): Promise<{ path: string; size: number } | undefined>;
  createWriter(digest: Digest): BlobFileWriter;
}

/** A stored blob opened for reading (the handle stays valid if the file is evicted meanwhile). */
export interface OpenedBlob {
  handle: FileHandle;
  size: number;
}

/** Where a streamed body is also written; `complete` is called only after the digest was verified. */
export interface BlobSink {
  write(chunk: Uint8Array): boolean;
  drained(): Promise<void>;
  complete(): void;
  abort(): void;
}

export interface BlobCacheOptions {
  store: BlobFileStore;
  logger?: Logger;
  /** Largest blob kept (default: half the store's bound). */
  maxBlobBytes?: number;
}

export class BlobCache {
  readonly #store: BlobFileStore;
  readonly #logger: Logger | undefined;
  readonly #maxBlobBytes: number;
  readonly #writing = new Set<string>();

  constructor(opts: BlobCacheOptions) {
    this.#store = opts.store;
    this.#logger = opts.logger;
    this.#maxBlobBytes = opts.maxBlobBytes ?? Math.floor(opts.store.maxBytes / 2);
  }

  /** Size of a stored blob (for HEAD), or undefined. */
  async size(digest: string): Promise<number | undefined> {
    if (!digest.startsWith('sha256:')) return undefined;
    try {
      return (await this.#store.locate(digest as Digest))?.size;
    } catch (err) {
      this.#logger?.warn({ digest, err: (err as Error).message }, 'blob cache lookup failed');
      return undefined;
    }
  }

  /** Opens a stored blob for reading, or undefined on a miss (also when it vanished in between). */
  async open(digest: string): Promise<OpenedBlob | undefined> {
    if (!digest.startsWith('sha256:')) return undefined;
    try {
      const hit = await this.#store.locate(digest as Digest);
      if (!hit) return undefined;
      const handle = await open(hit.path, 'r');
      return { handle, size: hit.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger?.warn({ digest, err: (err as Error).message }, 'blob cache read failed');
      return undefined;
    }
  }

  /**
   * A sink that keeps the blob once its whole body is verified, or undefined when this blob is not to be
   * kept (too large, not sha256, already being written here). `size` is the upstream's Content-Length.
   */
  sink(digest: string, size: number | undefined): BlobSink | undefined {
    if (!digest.startsWith('sha256:') || size === undefined || size > this.#maxBlobBytes || this.#writing.has(digest)) return undefined;
    let w: BlobFileWriter;
    try {
      w = this.#store.createWriter(digest as Digest);
    } catch (err) {
      this.#logger?.warn({ digest, err: (err as Error).message }, 'blob cache write not started');
      return undefined;
    }
    this.#writing.add(digest);
    let settled = false;
    const release = (): boolean => {
      if (settled) return false;
      settled = true;
      this.#writing.delete(digest);
      return true;
    };
    return {
      write: (c) => w.write(c),
      drained: () => w.drained(),
      complete: () => {
        if (!release()) return;
        if (w.bytes !== size) {
          w.abort();
          return;
        }
        w.commit(digest).catch((err: Error) => this.#logger?.warn({ digest, err: err.message }, 'blob cache write failed'));
      },
      abort: () => {
        if (release()) w.abort();
      },
    };
  }

  /**
   * Passes `source` through unchanged while writing it to `sink` (waiting when the disk lags). The caller
   * calls `sink.complete()` once it has verified the digest, or `sink.abort()`; if the consumer stops
   * early or the source breaks, the sink is aborted here.
   */
  static async *tee(source: AsyncIterable<Uint8Array>, sink: BlobSink): AsyncGenerator<Uint8Array> {
    let ended = false;
    try {
      for await (const c of source) {
        if (!sink.write(c)) await sink.drained();
        yield c;
      }
      ended = true;
    } finally {
      if (!ended) sink.abort();
    }
  }
}
