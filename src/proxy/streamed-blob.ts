/**
 * A blob body on its way from upstream to a client, independent of the transport. `main.ts` writes it
 * straight onto the Node socket (`pipeStreamedBlob`), which is what keeps pass-through throughput close to
 * the upstream's own; tests that call `app.request()` get the same bytes as a web stream (`toWebStream`).
 *
 * Verification: when `verify` names a digest (a whole blob), every byte is hashed on the way and the last
 * chunk is held back until the end of the body proves the digest; a body that does not match, or breaks,
 * aborts the client's response (the connection is destroyed short of its Content-Length), so a client
 * never receives a complete copy of wrong bytes. Ranged bodies cannot be verified here; soci verifies
 * spans against the zTOC's span digests.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { OciError } from '../oci/errors.js';

export interface StreamedBlob {
  readonly kind: 'streamed-blob';
  status: number;
  headers: Record<string, string>;
  body: Readable;
  /** Digest the whole body must hash to, or undefined for a range. */
  verify: string | undefined;
  /** Called once at the end with the bytes sent. */
  onDone(bytes: number, ok: boolean): void;
}

export function isStreamedBlob(x: unknown): x is StreamedBlob {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'streamed-blob';
}

/** Runs `body` through the hold-back verifier, calling `emit` for each releasable chunk. */
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

/** Writes the blob onto a Node response with backpressure; aborts the response on any failure. */
export function pipeStreamedBlob(s: StreamedBlob, res: ServerResponse): void {
  const v = verifier(s.verify);
  let sent = 0;
  let finished = false;
  const done = (ok: boolean): void => {
    if (finished) return;
    finished = true;
    s.onDone(sent, ok);
  };
  const abort = (err: Error): void => {
    done(false);
    s.body.destroy();
    res.destroy(err);
  };
  res.writeHead(s.status, s.headers);
  const write = (c: Buffer): void => {
    sent += c.length;
    if (!res.write(c)) {
      s.body.pause();
      res.once('drain', () => s.body.resume());
    }
  };
  s.body.on('data', (c: Buffer) => {
    const out = v.push(c);
    if (out) write(out);
  });
  s.body.once('end', () => {
    const last = v.finish();
    if (last instanceof Error) return abort(last);
    if (last) write(last);
    res.end();
    done(true);
  });
  s.body.once('error', (err: Error) => abort(err));
  res.once('close', () => {
    if (!res.writableFinished) {
      s.body.destroy();
      done(false);
    }
  });
}

/** The same bytes as a web stream (for `app.request()` and non-Node transports). */
export function toWebStream(s: StreamedBlob): ReadableStream<Uint8Array> {
  const v = verifier(s.verify);
  let sent = 0;
  const it = s.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        for (;;) {
          const { value, done } = await it.next();
          if (done) {
            const last = v.finish();
            if (last instanceof Error) throw last;
            if (last) {
              sent += last.length;
              ctrl.enqueue(last);
            }
            s.onDone(sent, true);
            ctrl.close();
            return;
          }
          const out = v.push(value);
          if (out) {
            sent += out.length;
            ctrl.enqueue(out);
            return;
          }
        }
      } catch (err) {
        s.onDone(sent, false);
        s.body.destroy();
        ctrl.error(err);
      }
    },
    cancel() {
      s.onDone(sent, false);
      s.body.destroy();
    },
  });
}
