/**
 * Test helper (not exported by src/cache/index.ts): starts a real `redis-server` on a free loopback port
 * with its own temp dir and no persistence, following the PID-file pattern of
 * ../shared/spec/test-environment.md §2/§8 (the PID is written to `<dir>/pid`; stop and kill act on that
 * PID only and wait until the process has gone). `kill()` (SIGKILL), `pause()`/`resume()` (SIGSTOP/SIGCONT) and `restart()` (same port, same dir)
 * let tests cut Redis away mid-use and bring it back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServerHandle {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** PID of the running server (undefined while stopped). */
  readonly pid: number | undefined;
  /** SIGKILL, as a crash or a cut would do; resolves when the process has gone. */
  kill(): Promise<void>;
  /** Starts again on the same port and dir (after kill/stop). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: the server hangs with connections open, like a cut network. */
  pause(): void;
  resume(): void;
  /** SIGTERM, waits, and removes the dir. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

export async function startRedisServer(opts: { port?: number } = {}): Promise<RedisServerHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'soci-redis-'));
  const port = opts.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log')];
    // No shell in between: spawn's PID is the daemon's PID, recorded in <dir>/pid.
    const c = spawn('redis-server', args, { stdio: 'ignore' });
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    if (c.pid === undefined) throw new Error('redis-server did not start');
    await writeFile(join(dir, 'pid'), `${c.pid}\n`);
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (c.exitCode !== null) throw new Error(`redis-server exited with ${c.exitCode} (port ${port})`);
      if (Date.now() > deadline) throw new Error('redis-server did not answer PING within 10 s');
      await new Promise((r) => setTimeout(r, 30));
    }
  };

  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(sig);
    await exited;
    child = undefined;
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get pid() {
      return child?.pid;
    },
    kill: () => signal('SIGKILL'),
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    restart: async () => {
      await signal('SIGTERM');
      await launch();
    },
    stop: async () => {
      await signal('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
