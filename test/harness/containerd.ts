/**
 * A private containerd 1.6 for tests (test-environment.md §5): its own config, root, state, socket and opt
 * dir under one state dir, the CRI plugin disabled, and one `[proxy_plugins.NAME] type = "snapshot"` entry
 * per snapshotter under test (containerd starts even if the socket does not exist yet). `ctr(args)` and
 * `ctrRemote(args)` run the clients against its socket. Never run two on one root (bolt DB deadlock);
 * `stop()` SIGTERMs it, waits, then lazily unmounts anything still mounted under its dir.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, runCommand, type Daemon, type RunResult } from './process.js';
import { onProcessExit, tempDir } from './cleanup.js';
import { spawnSync } from 'node:child_process';

export interface ContainerdOptions {
  /** State dir; a fresh temp dir by default. */
  dir?: string;
  /** Snapshotter name -> unix socket path. */
  proxyPlugins?: Record<string, string>;
  /** Log level; info by default. */
  logLevel?: 'debug' | 'info' | 'warn';
}

export interface Containerd {
  socket: string;
  dir: string;
  daemon: Daemon;
  /** `ctr -a SOCKET ...args`; never throws on a non-zero exit. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** `ctr-remote -a SOCKET ...args`; never throws on a non-zero exit. */
  ctrRemote(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  stop(): Promise<void>;
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const lines = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  const out: string[] = [];
  for (const l of lines) {
    const mp = l.split(' ')[1]?.replace(/\\040/g, ' ');
    if (mp && (mp === dir || mp.startsWith(dir + '/'))) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Starts containerd and waits until `ctr version` answers on its socket. */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const tmp = opts.dir === undefined ? tempDir('containerd') : undefined;
  const dir = opts.dir ?? tmp!.path;
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, 'containerd.sock');
  const plugins = Object.entries(opts.proxyPlugins ?? {})
    .map(([name, sock]) => `  [proxy_plugins.${JSON.stringify(name)}]\n    type = "snapshot"\n    address = ${JSON.stringify(sock)}\n`)
    .join('');
  const config = [
    'version = 2',
    `root = ${JSON.stringify(join(dir, 'root'))}`,
    `state = ${JSON.stringify(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${JSON.stringify(socket)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(join(dir, 'containerd.sock.ttrpc'))}`,
    '[debug]',
    `  level = "${opts.logLevel ?? 'info'}"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(join(dir, 'opt'))}`,
    '[proxy_plugins]',
    plugins,
  ].join('\n');
  writeFileSync(join(dir, 'config.toml'), config);
  const ctrWith = (bin: string) => (args: string[], o: { timeoutMs?: number } = {}) =>
    runCommand(bin, ['-a', socket, ...args], { check: false, timeoutMs: o.timeoutMs ?? 120_000 });
  const ctr = ctrWith('ctr');
  const daemon = await startDaemon({
    name: 'containerd',
    cmd: 'containerd',
    args: ['--config', join(dir, 'config.toml')],
    cwd: dir,
    logFile: join(dir, 'containerd.log'),
    ready: async () => existsSync(socket) && (await ctr(['version'], { timeoutMs: 5000 })).code === 0,
    timeoutMs: 30_000,
  });
  // at exit: after the daemons are stopped (order 10), before temp dirs go (order 90), unmount leftovers
  const unhook = onProcessExit(() => {
    for (const mp of mountsUnder(dir)) spawnSync('umount', ['-l', mp]);
  }, 20);
  return {
    socket,
    dir,
    daemon,
    ctr,
    ctrRemote: ctrWith('ctr-remote'),
    async stop() {
      await daemon.stop();
      for (const mp of mountsUnder(dir)) await runCommand('umount', ['-l', mp], { check: false });
      unhook();
      tmp?.remove();
    },
  };
}
