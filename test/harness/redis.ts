/**
 * A real redis-server for cache tests (test-environment.md §8): loopback only, a free port, no persistence
 * (`--save '' --appendonly no`), its own working dir. `kill()` SIGKILLs it so tests can check how the
 * cache behaves when Redis disappears mid-run. `redisCommand` sends one command over a raw socket (RESP),
 * enough for smoke checks without a client library.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, canConnect } from './ports.js';
import { startDaemon, type Daemon } from './process.js';
import { tempDir } from './cleanup.js';

export interface Redis {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  daemon: Daemon;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** Starts redis-server and waits until it answers PING. */
export async function startRedis(opts: { dir?: string } = {}): Promise<Redis> {
  const tmp = opts.dir === undefined ? tempDir('redis') : undefined;
  const dir = opts.dir ?? tmp!.path;
  const port = await freePort();
  const daemon = await startDaemon({
    name: 'redis-server',
    cmd: 'redis-server',
    args: ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'],
    cwd: dir,
    logFile: join(dir, 'redis.log'),
    ready: async () => (await canConnect(port)) && (await redisCommand(port, ['PING'])) === 'PONG',
  });
  const done = (): void => tmp?.remove();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    daemon,
    async stop() {
      await daemon.stop();
      done();
    },
    async kill() {
      await daemon.kill();
      done();
    },
  };
}

/** Sends one command and returns the first reply line's payload (simple string, integer, bulk string or error). */
export function redisCommand(port: number, args: string[], timeoutMs = 2000): Promise<string | number | null> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    sock.setTimeout(timeoutMs, () => {
      sock.destroy();
      reject(new Error('redis: timeout'));
    });
    sock.once('error', reject);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf('\r\n');
      if (nl < 0) return;
      const head = buf.subarray(0, nl).toString('utf8');
      const kind = head[0];
      const rest = head.slice(1);
      if (kind === '$') {
        const len = Number(rest);
        if (len < 0) return finish(null);
        if (buf.length < nl + 2 + len + 2) return;
        return finish(buf.subarray(nl + 2, nl + 2 + len).toString('utf8'));
      }
      if (kind === ':') return finish(Number(rest));
      if (kind === '-') {
        sock.destroy();
        return reject(new Error(`redis: ${rest}`));
      }
      return finish(rest);
    });
    function finish(v: string | number | null): void {
      sock.end();
      resolve(v);
    }
    const parts = args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
    sock.write(`*${args.length}\r\n${parts}`);
  });
}
