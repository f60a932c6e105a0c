/**
 * A tiny node:http upstream for fault tests: by default it forwards every request to a real registry
 * (method, path, Accept and Authorization kept; Range too) and streams the answer back, but a handler set
 * at runtime may answer instead: 5xx and 429 with Retry-After, or crafted manifests and blobs (malformed,
 * oversized, unknown media types) served under whatever digest the test wants. Every request is recorded.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface Canned {
  status: number;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

export type Handler = (req: { method: string; path: string; headers: IncomingMessage['headers'] }) => Canned | undefined;

export interface HttpUpstream {
  url: string;
  host: string;
  setHandler(h: Handler | undefined): void;
  readonly requests: Array<{ method: string; path: string; status: number }>;
  /** Responses answered by the handler instead of the registry. */
  readonly injected: number;
  close(): Promise<void>;
}

/** Starts on 127.0.0.1:<free port>; `target` is the registry's HOST:PORT, or undefined for handler-only. */
export async function startHttpUpstream(target: string | undefined, handler?: Handler): Promise<HttpUpstream> {
  let h = handler;
  let injected = 0;
  const requests: HttpUpstream['requests'] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const canned = h?.({ method, path, headers: req.headers });
    if (canned || !target) {
      const c = canned ?? { status: 404, body: '{"errors":[{"code":"NAME_UNKNOWN","message":"no target"}]}' };
      if (canned) injected++;
      const body = c.body === undefined ? Buffer.alloc(0) : Buffer.from(c.body);
      requests.push({ method, path, status: c.status });
      res.writeHead(c.status, { 'Content-Length': String(body.length), ...c.headers });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const headers: Record<string, string> = {};
    for (const k of ['accept', 'authorization', 'range', 'user-agent']) {
      const v = req.headers[k];
      if (typeof v === 'string') headers[k] = v;
    }
    const up = httpRequest({ host, port, method, path, headers }, (ur) => {
      requests.push({ method, path, status: ur.statusCode ?? 0 });
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    setHandler(next) {
      h = next;
    },
    requests,
    get injected() {
      return injected;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
