/**
 * Serving cached blob files off the JS thread (native/sendfile.c, built as build/Release/soci_sendfile.node):
 * the response headers go out through Node as usual, then the body goes from the file to the socket on the
 * addon's own thread (pread/write in 1 MiB chunks), so a cached layer costs no JS buffers or stream
 * machinery. Measured on the bench machine (bench/results/proxy.md): Node's best read/write loop serves a
 * cached 109 MB layer at ~800 MB/s, docker-registry (Go) 1.1-2 GB/s; this path is what closes that gap.
 * It only takes plain TCP sockets (TLS needs the bytes in user space) and at most MAX_TRANSFERS at once;
 * otherwise, or when the addon is missing, `trySendfile` returns undefined without writing anything and the
 * caller streams the file itself. A transfer that stalls longer than `stallMs`, a client that goes away, or a
 * response destroyed by Node ends it; the promise then rejects and the caller destroys the response.
 */
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';

interface Addon {
  start(socketFd: number, fileFd: number, offset: number, length: number, stallMs: number, done: (errno: number, sent: number) => void): number;
  abort(id: number): void;
}

let addon: Addon | null | undefined;

function load(): Addon | undefined {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)('../../build/Release/soci_sendfile.node') as Addon;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/** Whether the addon loaded (for logs and tests). */
export function nativeSendfileAvailable(): boolean {
  return load() !== undefined;
}

/** Transfers running at once; more are streamed by the caller. */
const MAX_TRANSFERS = 64;
let running = 0;

/** The descriptor of the plain TCP socket under `res`, or undefined (TLS, pipe, no handle). */
function socketFd(res: ServerResponse): number | undefined {
  const s = res.socket as (ServerResponse['socket'] & { encrypted?: boolean; _handle?: { fd?: unknown } }) | null;
  if (!s || s.encrypted === true || s.destroyed) return undefined;
  const fd = s._handle?.fd;
  return typeof fd === 'number' && fd > 2 ? fd : undefined;
}

/**
 * Sends `status`, `headers` and then bytes `[offset, offset + length)` of the open file `fileFd` on `res`.
 * Undefined when this path cannot take the response (nothing written); else resolves with `length` once
 * every byte is in the socket (the caller then ends `res`), or rejects with the errno's error.
 */
export function trySendfile(
  res: ServerResponse, status: number, headers: Record<string, string>, fileFd: number, offset: number, length: number, stallMs = 60_000,
): Promise<number> | undefined {
  const a = load();
  const fd = socketFd(res);
  if (a === undefined || fd === undefined || running >= MAX_TRANSFERS || length <= 0) return undefined;
  running++;
  res.writeHead(status, headers);
  res.flushHeaders();
  const sock = res.socket as NonNullable<ServerResponse['socket']>;
  return new Promise<number>((resolve, reject) => {
    let id: number | undefined;
    let settled = false;
    const onClose = (): void => {
      if (id !== undefined) a.abort(id);
    };
    const settle = (err: Error | undefined, sent: number): void => {
      if (settled) return;
      settled = true;
      running--;
      res.off('close', onClose);
      if (err) reject(err);
      else resolve(sent);
    };
    res.on('close', onClose);
    // The headers must be in the kernel before the first body byte: Node writes them corked and uncorks
    // on the next tick, so wait for that and for any backlog to drain.
    const go = (): void => {
      if (res.destroyed || sock.destroyed) return settle(new Error('client went away before the body'), 0);
      if (sock.writableLength > 0 || sock.writableCorked > 0) {
        sock.once('drain', go);
        return;
      }
      try {
        id = a.start(fd, fileFd, offset, length, stallMs, (errno, sent) => {
          if (errno === 0 && sent === length) settle(undefined, sent);
          else settle(Object.assign(new Error(`sendfile failed after ${sent} of ${length} bytes (errno ${errno})`), { errno, sent }), sent);
        });
      } catch (err) {
        settle(err as Error, 0);
      }
    };
    setImmediate(go);
  });
}
