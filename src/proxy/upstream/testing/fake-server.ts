/**
 * A tiny programmable HTTP server on a free loopback port for fault tests (429, 5xx, stalls, redirects,
 * bad digests). It records every accepted TCP connection and every request, so a test can also prove that
 * a host was never contacted at all.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface FakeServer {
  url: string;
  host: string;
  port: number;
  connections: number;
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>;
  stop(): Promise<void>;
}

export async function startFakeServer(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<FakeServer> {
  const state = { connections: 0 };
  const requests: FakeServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res, requests.length);
  });
  server.on('connection', () => { state.connections++; });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    get connections() { return state.connections; },
    requests,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
