/**
 * A small TCP fault proxy for tests: it sits between soci-proxy and an upstream registry on loopback,
 * forwards every byte, and follows the HTTP/1.1 responses on each connection (Content-Length framing) so
 * it can damage one response body at a time. Rules are switchable at runtime and match per request
 * (method, path, connection number): reset the connection after N body bytes, truncate the body (correct
 * Content-Length, then a clean close), stall before body byte N for T ms, flip (XOR 0xff) the byte at
 * body offset N, or trickle the body out slowly. A chunked response turns its connection into plain
 * pass-through (docker-registry sends Content-Length on everything the proxy reads). `injected` counts the
 * faults applied.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export type Fault =
  | { mode: 'reset'; afterBytes: number }
  | { mode: 'truncate'; afterBytes: number }
  | { mode: 'stall'; ms: number; atByte?: number }
  | { mode: 'flip'; offset: number }
  | { mode: 'trickle'; bytesPerTick: number; intervalMs: number };

export interface RequestInfo {
  method: string;
  path: string;
  /** Connection number (1-based, in accept order). */
  connection: number;
}

export interface FaultRule {
  match: RegExp | ((req: RequestInfo) => boolean);
  fault: Fault;
  /** How many responses this rule damages; unlimited by default. */
  times?: number;
}

export interface FaultProxy {
  url: string;
  host: string;
  port: number;
  setRules(rules: FaultRule[]): void;
  clearRules(): void;
  /** Faults applied so far. */
  readonly injected: number;
  /** Every request seen, in order. */
  readonly requests: RequestInfo[];
  close(): Promise<void>;
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** Pulls bytes from a socket on demand (so a slow writer applies backpressure upstream). */
class Pull {
  #buf: Buffer = Buffer.alloc(0);
  readonly #it: AsyncIterator<Buffer>;
  #done = false;
  constructor(sock: Socket) {
    this.#it = sock[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }
  async #fill(): Promise<boolean> {
    if (this.#done) return false;
    try {
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        return false;
      }
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, r.value]) : r.value;
      return true;
    } catch {
      this.#done = true;
      return false;
    }
  }
  async head(): Promise<Buffer | undefined> {
    for (;;) {
      const i = this.#buf.indexOf(HEAD_END);
      if (i >= 0) {
        const h = this.#buf.subarray(0, i + 4);
        this.#buf = this.#buf.subarray(i + 4);
        return h;
      }
      if (this.#buf.length > 1 << 20 || !(await this.#fill())) return undefined;
    }
  }
  async take(max: number): Promise<Buffer | undefined> {
    if (this.#buf.length === 0 && !(await this.#fill())) return undefined;
    const n = Math.min(max, this.#buf.length);
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
  rest(): Buffer {
    const b = this.#buf;
    this.#buf = Buffer.alloc(0);
    return b;
  }
}

function headerValue(head: string, name: string): string | undefined {
  const m = new RegExp(`\\r\\n${name}:\\s*([^\\r]*)`, 'i').exec(head);
  return m?.[1]?.trim();
}

/** Starts the fault proxy on 127.0.0.1:<free port>, forwarding to `target` (HOST:PORT). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const [thost, tport] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let rules: Array<FaultRule & { left: number }> = [];
  let injected = 0;
  let connections = 0;
  let closed = false;
  const requests: RequestInfo[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const pick = (req: RequestInfo): Fault | undefined => {
    for (const r of rules) {
      if (r.left <= 0) continue;
      const ok = r.match instanceof RegExp ? r.match.test(req.path) : r.match(req);
      if (!ok) continue;
      r.left--;
      injected++;
      return r.fault;
    }
    return undefined;
  };

  const server: Server = createServer((client) => {
    const id = ++connections;
    const up = connect({ host: thost, port: tport });
    sockets.add(client);
    sockets.add(up);
    const kill = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('close', () => {
      sockets.delete(client);
      up.destroy();
    });
    up.on('close', () => sockets.delete(up));
    client.on('error', kill);
    up.on('error', kill);

    // Requests: forward as they come, note each request line (GET/HEAD carry no body; others skip theirs).
    const pending: RequestInfo[] = [];
    let reqBuf = Buffer.alloc(0);
    let skipBody = 0;
    client.on('data', (chunk: Buffer) => {
      up.write(chunk);
      reqBuf = Buffer.concat([reqBuf, chunk]);
      for (;;) {
        if (skipBody > 0) {
          const n = Math.min(skipBody, reqBuf.length);
          skipBody -= n;
          reqBuf = reqBuf.subarray(n);
          if (skipBody > 0) return;
        }
        const i = reqBuf.indexOf(HEAD_END);
        if (i < 0) {
          if (reqBuf.length > 2 << 20) reqBuf = Buffer.alloc(0);
          return;
        }
        const head = reqBuf.subarray(0, i + 4).toString('latin1');
        reqBuf = reqBuf.subarray(i + 4);
        const [method = '', path = ''] = head.split('\r\n')[0]!.split(' ');
        const info = { method, path, connection: id };
        pending.push(info);
        requests.push(info);
        skipBody = Number(headerValue(head, 'content-length') ?? 0) || 0;
      }
    });

    const write = async (b: Buffer): Promise<boolean> => {
      if (client.destroyed) return false;
      if (!client.write(b)) await new Promise<void>((r) => client.once('drain', r).once('close', r));
      return !client.destroyed;
    };

    // Responses: head, then Content-Length body bytes, damaged per the rule picked for that request.
    const pull = new Pull(up);
    void (async () => {
      for (;;) {
        const headBuf = await pull.head();
        if (!headBuf) break;
        const head = headBuf.toString('latin1');
        const status = Number(head.slice(9, 12));
        const req = pending.shift() ?? { method: 'GET', path: '?', connection: id };
        const chunked = /chunked/i.test(headerValue(head, 'transfer-encoding') ?? '');
        const noBody = req.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
        const len = noBody ? 0 : Number(headerValue(head, 'content-length') ?? 0);
        if (chunked && !noBody) {
          // Plain pass-through for the rest of this connection.
          if (!(await write(headBuf)) || !(await write(pull.rest()))) break;
          for (;;) {
            const c = await pull.take(1 << 16);
            if (!c || !(await write(c))) break;
          }
          break;
        }
        const fault = len > 0 ? pick(req) : undefined;
        if (!(await write(headBuf))) break;
        let pos = 0;
        let alive = true;
        while (pos < len && alive) {
          const c = await pull.take(Math.min(len - pos, 1 << 16));
          if (!c) {
            alive = false;
            break;
          }
          const end = pos + c.length;
          if (!fault) alive = await write(c);
          else if (fault.mode === 'flip') {
            if (fault.offset >= pos && fault.offset < end) {
              const copy = Buffer.from(c);
              copy[fault.offset - pos] = (copy[fault.offset - pos] as number) ^ 0xff;
              alive = await write(copy);
            } else alive = await write(c);
          } else if (fault.mode === 'reset' || fault.mode === 'truncate') {
            if (end > fault.afterBytes) {
              await write(c.subarray(0, Math.max(0, fault.afterBytes - pos)));
              if (fault.mode === 'reset') client.resetAndDestroy();
              else client.end();
              up.destroy();
              return;
            }
            alive = await write(c);
          } else if (fault.mode === 'stall') {
            const at = fault.atByte ?? 0;
            if (at >= pos && at < end) {
              alive = await write(c.subarray(0, at - pos));
              await sleep(fault.ms);
              if (closed) return kill();
              alive = alive && (await write(c.subarray(at - pos)));
            } else alive = await write(c);
          } else {
            for (let o = 0; o < c.length && alive; o += fault.bytesPerTick) {
              alive = await write(c.subarray(o, o + fault.bytesPerTick));
              await sleep(fault.intervalMs);
              if (closed) return kill();
            }
          }
          pos = end;
        }
        if (!alive) break;
      }
      client.end();
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    setRules(next) {
      rules = next.map((r) => ({ ...r, left: r.times ?? Number.POSITIVE_INFINITY }));
    },
    clearRules() {
      rules = [];
    },
    get injected() {
      return injected;
    },
    requests,
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
