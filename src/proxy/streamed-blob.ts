/**
 * A blob body on its way to a client, independent of the transport: either an upstream body (`body`)
 * or a slice of a locally cached file (`file`, see blob-cache.ts). `main.ts` writes it straight onto the
 * Node socket (`pipeStreamedBlob`), which is what keeps throughput close to the upstream's own; tests
 * that call `app.request()` get the same bytes as a web stream (`toWebStream`).
 *
 * Verification: when `verify` names a digest (a whole upstream blob), every byte is hashed on the way and
 * the last chunk is held back until the end of the body proves the digest; a body that does not match, or
 * breaks, aborts the client's response (the connection is destroyed short of its Content-Length), so a
 * client never receives a complete copy of wrong bytes. Ranged bodies cannot be verified here; soci
 * verifies spans against the zTOC's span digests. A `sink` (the blob cache) receives every byte too and is
 * completed only after the digest was proven; if the client goes away first, the body is still read to
 * its end for the sink (a cache fill finishes even without its client; STYLE.md §5).
 *
 * Cached files were verified before they became visible and are sent without re-hashing: with sendfile(2)
 * from the native addon on plain TCP (native-sendfile.ts), else in 2 MiB reads (one read ahead of the
 * socket) written straight to the response with backpressure.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { OciError } from '../oci/errors.js';
import type { BlobSink } from './blob-cache.js';
import type { OffThreadHasher } from './off-thread-hasher.js';
import { trySendfile } from './native-sendfile.js';

/** A byte range [start, end] of an open cached file; the consumer closes the handle. */
export interface FileSlice {
  handle: FileHandle;
  start: number;
  end: number;
}

export interface StreamedBlob {
  readonly kind: 'streamed-blob';
  status: number;
  headers: Record<string, string>;
  /** An upstream body (exactly one of `body` and `file` is set). */
  body?: Readable;
  /** A slice of a cached file. */
  file?: FileSlice;
  /** Digest the whole upstream body must hash to, or undefined for a range or a cached file. */
  verify: string | undefined;
  /** Also receives the upstream body; completed after `verify` held, aborted otherwise. */
  sink?: BlobSink;
  /** Called once at the end with the bytes sent to the client. */
  onDone(bytes: number, ok: boolean): void;
}

/** Bytes per read of a cached file (measured: 1–4 MiB reads are fastest; bench/results/proxy.md). */
const FILE_CHUNK = 2 << 20;

export function isStreamedBlob(x: unknown): x is StreamedBlob {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'streamed-blob';
}

interface Verifier {
  /** Returns the chunk that may be released now; `wait`, when set, must settle before more data. */
  push(c: Buffer): { out: Buffer | undefined; wait?: Promise<void> };
  /** The held-back last chunk once the digest is proven, or the Error that disproves it. */
  finish(): Promise<Buffer | undefined | Error>;
  cancel(): void;
}

/** The hold-back verifier, hashing on a worker thread (off-thread-hasher.ts). */
function offThreadVerifier(digest: string, hasher: OffThreadHasher): Verifier {
  const alg = digest.startsWith('sha512:') ? 'sha512' : 'sha256';
  const job = hasher.start(alg);
  let held: Buffer | undefined;
  return {
    push(c) {
      const out = held;
      held = c;
      return job.update(c) ? { out } : { out, wait: job.drained() };
    },
    async finish() {
      try {
        const got = await job.digest();
        return got === digest ? held : new OciError('DIGEST_INVALID', `upstream blob does not match ${digest}`, { status: 502 });
      } catch (err) {
        return err as Error;
      }
    },
    cancel: () => job.cancel(),
  };
}

/** Either verifier behind the async interface pipeStreamedBlob uses. */
function pipeVerifier(digest: string | undefined, hasher: OffThreadHasher | undefined): Verifier {
  if (digest && hasher) return offThreadVerifier(digest, hasher);
  const v = verifier(digest);
  return { push: (c) => ({ out: v.push(c) }), finish: () => Promise.resolve(v.finish()), cancel: () => undefined };
}

/** The hold-back verifier: `push` returns the chunk that may be released, `finish` the last one or an Error. */
function verifier(digest: string | undefined): { push(c: Buffer): Buffer | undefined; finish(): Buffer | undefined | Error } {
  if (!digest) return { push: (c) => c, finish: () => undefined };
  const alg = digest.startsWith('sha512:') ? 'sha512' : 'sha256';
  const hash = createHash(alg);
  let held: Buffer | undefined;
  return {
    push(c) {
      hash.update(c);
      const out = held;
      held = c;
      return out;
    },
    finish() {
      const got = `${alg}:${hash.digest('hex')}`;
      if (got !== digest) return new OciError('DIGEST_INVALID', `upstream blob does not match ${digest}`, { status: 502 });
      return held;
    },
  };
}

/** Reads up to `len` bytes at `pos` (fewer only at end of file). */
async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === len ? buf : buf.subarray(0, got);
}

/** Yields the slice in FILE_CHUNK reads, one read ahead; closes the handle at the end. */
async function* fileChunks(f: FileSlice): AsyncGenerator<Buffer> {
  const end = f.end + 1;
  let pos = f.start;
  let next: Promise<Buffer> | undefined = pos < end ? readAt(f.handle, pos, Math.min(FILE_CHUNK, end - pos)) : undefined;
  try {
    while (next) {
      const buf = await next;
      if (buf.length === 0) throw new Error('cached blob is shorter than its recorded size');
      pos += buf.length;
      next = pos < end ? readAt(f.handle, pos, Math.min(FILE_CHUNK, end - pos)) : undefined;
      yield buf;
    }
  } finally {
    await next?.catch(() => undefined);
    await f.handle.close().catch(() => undefined);
  }
}

/**
 * Writes the blob onto a Node response with backpressure; aborts the response on any failure. With a
 * `hasher`, the digest of a whole blob is computed on its worker thread instead of this one.
 */
export function pipeStreamedBlob(s: StreamedBlob, res: ServerResponse, opts: { hasher?: OffThreadHasher | undefined } = {}): void {
  if (s.file) return pipeFile(s, s.file, res);
  const body = s.body;
  if (!body) throw new Error('streamed blob without a body');
  const v = pipeVerifier(s.verify, opts.hasher);
  const sink = s.sink;
  let sent = 0;
  let finished = false;
  let clientGone = false;
  const done = (ok: boolean): void => {
    if (finished) return;
    finished = true;
    s.onDone(sent, ok);
  };
  const abort = (err: Error): void => {
    v.cancel();
    sink?.abort();
    done(false);
    body.destroy();
    res.destroy(err);
  };
  // The body pauses while the client or the sink is behind, and resumes when both caught up.
  let waits = 0;
  const waitFor = (p: Promise<void>): void => {
    if (waits++ === 0) body.pause();
    void p.then(() => {
      if (--waits === 0) body.resume();
    });
  };
  res.writeHead(s.status, s.headers);
  const write = (c: Buffer): void => {
    if (clientGone) return;
    sent += c.length;
    if (!res.write(c)) waitFor(drainOrClose(res));
  };
  body.on('data', (c: Buffer) => {
    if (sink && !sink.write(c)) waitFor(sink.drained());
    const { out, wait } = v.push(c);
    if (wait) waitFor(wait);
    if (out) write(out);
  });
  body.once('end', () => {
    void v.finish().then((last) => {
      if (last instanceof Error) return abort(last);
      sink?.complete();
      if (clientGone) return;
      if (last) write(last);
      res.end();
      done(true);
    });
  });
  body.once('error', (err: Error) => abort(err));
  res.once('close', () => {
    if (res.writableFinished) return;
    clientGone = true;
    done(false);
    // Without a sink nobody wants the rest; with one, the body is read to its end to fill the cache.
    if (!sink) body.destroy();
  });
}

/** Resolves once `res` can take more bytes, or is closed. */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((r) => {
    const go = (): void => {
      res.off('drain', go);
      res.off('close', go);
      r();
    };
    res.on('drain', go);
    res.on('close', go);
  });
}

function pipeFile(s: StreamedBlob, f: FileSlice, res: ServerResponse): void {
  const zeroCopy = trySendfile(res, s.status, s.headers, f.handle.fd, f.start, f.end - f.start + 1);
  if (zeroCopy) {
    zeroCopy.then(
      (n) => {
        res.end();
        s.onDone(n, true);
      },
      (err: Error & { sent?: number }) => {
        s.onDone(err.sent ?? 0, false);
        res.destroy(err);
      },
    ).finally(() => void f.handle.close().catch(() => undefined));
    return;
  }
  let sent = 0;
  res.writeHead(s.status, s.headers);
  const it = fileChunks(f);
  void (async () => {
    try {
      for await (const buf of it) {
        if (res.destroyed) break;
        sent += buf.length;
        if (!res.write(buf)) await drainOrClose(res);
      }
      if (res.destroyed) return s.onDone(sent, false);
      res.end();
      s.onDone(sent, true);
    } catch (err) {
      s.onDone(sent, false);
      res.destroy(err as Error);
    } finally {
      await it.return(undefined);
    }
  })();
}

/** The same bytes as a web stream (for `app.request()` and non-Node transports). */
export function toWebStream(s: StreamedBlob): ReadableStream<Uint8Array> {
  const v = verifier(s.verify);
  const sink = s.sink;
  let sent = 0;
  const source: AsyncIterable<Buffer> | undefined = s.file ? fileChunks(s.file) : (s.body as AsyncIterable<Buffer> | undefined);
  if (!source) throw new Error('streamed blob without a body');
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const stop = (): void => {
    sink?.abort();
    s.body?.destroy();
    void it.return?.(undefined);
  };
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        for (;;) {
          const { value, done } = await it.next();
          if (done) {
            const last = v.finish();
            if (last instanceof Error) throw last;
            sink?.complete();
            if (last) {
              sent += last.length;
              ctrl.enqueue(last);
            }
            s.onDone(sent, true);
            ctrl.close();
            return;
          }
          if (sink && !sink.write(value)) await sink.drained();
          const out = v.push(value);
          if (out) {
            sent += out.length;
            ctrl.enqueue(out);
            return;
          }
        }
      } catch (err) {
        s.onDone(sent, false);
        stop();
        ctrl.error(err);
      }
    },
    cancel() {
      s.onDone(sent, false);
      stop();
    },
  });
}
