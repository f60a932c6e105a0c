/**
 * The proxy under test as a real process: `node dist/cli.js serve --listen 127.0.0.1:<free port>
 * --upstream <url> ...extraArgs`, ready when GET /healthz answers 200. Requires a built dist/ (npm run
 * build). The flag names follow the CLI the lead is writing; adjust here if they change.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';
import { startDaemon, type Daemon } from './process.js';
import { tempDir } from './cleanup.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ProxyOptions {
  /** Upstream registry URL, e.g. Registry.url. */
  upstream: string;
  extraArgs?: string[];
  /** Full environment for the proxy; the test process's by default. */
  env?: NodeJS.ProcessEnv;
  /** State/log dir; a fresh temp dir by default. */
  dir?: string;
  /** CLI entry; dist/cli.js of this repo by default. */
  cli?: string;
  timeoutMs?: number;
}

export interface Proxy {
  url: string;
  host: string;
  dir: string;
  daemon: Daemon;
  stop(): Promise<void>;
  kill(): Promise<void>;
  logs(): string;
}

/** Starts the proxy CLI and waits for /healthz. */
export async function startProxy(opts: ProxyOptions): Promise<Proxy> {
  const tmp = opts.dir === undefined ? tempDir('proxy') : undefined;
  const dir = opts.dir ?? tmp!.path;
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const daemon = await startDaemon({
    name: 'soci-proxy',
    cmd: process.execPath,
    args: [opts.cli ?? join(REPO_ROOT, 'dist', 'cli.js'), 'serve', '--listen', host, '--upstream', opts.upstream, ...(opts.extraArgs ?? [])],
    // Its own dir as cwd: a proxy started without --cache-dir keeps the default ./.soci-proxy-cache there,
    // never in the repository or shared with another test's proxy.
    cwd: dir,
    env: opts.env,
    logFile: join(dir, 'proxy.log'),
    ready: async () => {
      const res = await fetch(`http://${host}/healthz`);
      await res.arrayBuffer();
      return res.status === 200;
    },
    timeoutMs: opts.timeoutMs ?? 20_000,
  });
  return {
    url: `http://${host}`,
    host,
    dir,
    daemon,
    async stop() {
      await daemon.stop();
      tmp?.remove();
    },
    async kill() {
      await daemon.kill();
      tmp?.remove();
    },
    logs: () => daemon.logs(),
  };
}
