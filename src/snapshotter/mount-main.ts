/**
 * Composition root of `soci-proxy mount IMAGE_REF MOUNTPOINT` and `soci-proxy unmount MOUNTPOINT`: parses
 * flags, builds the registry client and `SociLayerProvider`, mounts the image's rootfs (core/rootfs.ts) and
 * serves it until SIGINT/SIGTERM, then unmounts everything and logs a summary. `--detach` re-runs this
 * command as a detached child that reports readiness through a pipe (fd 3) and returns once the rootfs is
 * mounted; that parent loads nothing heavy (the child alone imports undici, pino and FUSE). The child starts
 * resolving the image (manifest, SOCI index, zTOCs over node:http) before it loads the rest. The mounting
 * process records its PID and mounts in `.<name>.soci-mount.json` next to the mountpoint; `unmount`
 * signals that PID and waits, then clears whatever is left (`umount -l`, `fusermount -uz`) for a process
 * that died without cleaning up. The mounting process serves FUSE on its
 * main thread: nothing here touches the mounts with a synchronous call. The detached child runs this file
 * as its entry (see the end of the file), so it skips the CLI's other top-level imports on its way to
 * mounting.
 */
import { spawn } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { exec, type RootfsMount } from './core/rootfs.js';

const USAGE = `usage: soci-proxy mount IMAGE_REF MOUNTPOINT [--registry URL] [--cache-dir DIR] [--detach] [--plain-http]
         [--user USER:PASSWORD] [--platform OS/ARCH] [--read-timeout-ms N] [--fetch-timeout-ms N] [--retries N]
         [--bg-fetch-period-ms N (default 500, 0 = off)] [--bg-quiet-ms N (default 30000)] [--log-level L]
         [--fill-layer-bytes N (layers of at most N compressed bytes are fetched whole at mount; default 5242880, 0 = off)]
         [--ztoc-worker-bytes N (zTOCs above N bytes are fetched, verified and turned into FUSE tables on a worker thread; default 4194304)]
       soci-proxy unmount MOUNTPOINT [--timeout-ms N]`;

class UsageError extends Error {
  readonly code = 'USAGE';
}

interface MountState {
  pid: number;
  mountpoint: string;
  imageRef: string;
  manifestDigest: string;
  stateDir: string;
  layers: Array<{ digest: string; dir: string; lazy: boolean }>;
  startedAt: string;
}

const stateFile = (mp: string): string => join(dirname(mp), `.${basename(mp)}.soci-mount.json`);
const mountKey = (mp: string): string => createHash('sha256').update(mp).digest('hex').slice(0, 16);

function intOpt(name: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, not ${JSON.stringify(raw)}`);
  return n;
}

/** `soci-proxy mount ...`; resolves with the exit status after teardown (or once detached). */
export async function mountMain(args: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      registry: { type: 'string' }, 'cache-dir': { type: 'string' }, detach: { type: 'boolean' }, 'plain-http': { type: 'boolean' },
      user: { type: 'string' }, platform: { type: 'string' }, 'read-timeout-ms': { type: 'string' }, 'fetch-timeout-ms': { type: 'string' },
      retries: { type: 'string' }, 'bg-fetch-period-ms': { type: 'string' }, 'bg-quiet-ms': { type: 'string' }, 'log-level': { type: 'string' },
      'fill-layer-bytes': { type: 'string' }, 'ztoc-worker-bytes': { type: 'string' },
      'ready-fd': { type: 'string' },
    },
  });
  const [imageRef, mpArg] = positionals;
  if (!imageRef || !mpArg) throw new UsageError(USAGE);
  const mountpoint = resolve(mpArg);
  const cacheDir = resolve(v['cache-dir'] ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'soci-proxy', 'snapshotter'));
  const key = mountKey(mountpoint);
  const stateDir = join(cacheDir, 'mounts', key);
  await mkdir(join(cacheDir, 'mounts'), { recursive: true });
  if (v.detach) return detach(args.filter((a) => a !== '--detach'), join(cacheDir, 'mounts', `${key}.log`));

  const registryUrl = v.registry;
  const plainHttp = v['plain-http'] ?? registryUrl?.startsWith('http://') ?? false;
  const defaultHost = registryUrl?.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
  let credentials: { username: string; password: string } | undefined;
  if (v.user !== undefined) {
    const i = v.user.indexOf(':');
    if (i < 0) throw new UsageError('--user must be USER:PASSWORD');
    credentials = { username: v.user.slice(0, i), password: v.user.slice(i + 1) };
  }
  const [os, architecture, variant] = (v.platform ?? 'linux/amd64').split('/');
  if (!os || !architecture) throw new UsageError('--platform must be OS/ARCH[/VARIANT]');
  const readyFd = v['ready-fd'] === undefined ? undefined : intOpt('ready-fd', v['ready-fd'], 3);
  // Loaded only here: the `--detach` parent above and `unmount` never pay for undici, pino or FUSE. The
  // light modules come first: the image's manifest, SOCI index and zTOC requests (node:http) are in flight
  // while the rest (undici, the indexer's reader, FUSE, pino) loads. Log lines from before the logger wait
  // in `early`.
  const [{ RegistryClient, parseImageRef }, { ImageResolver }, { SnapshotterMetrics, SNAPSHOTTER_CHANNEL }] = await Promise.all([
    import('./core/registry-client.js'), import('./core/image-resolver.js'), import('./core/metrics.js'),
  ]);
  let logger: Logger | undefined;
  const early: Array<(l: Logger) => void> = [];
  const log = (f: (l: Logger) => void): void => void (logger === undefined ? early.push(f) : f(logger));
  subscribe(SNAPSHOTTER_CHANNEL, (e) => {
    const ev = e as { type: string };
    if (ev.type === 'resolved' || ev.type === 'layer' || ev.type === 'background-done') log((l) => l.info(ev, ev.type));
    else log((l) => l.debug(ev, ev.type));
  });
  const client = new RegistryClient({ plainHttp, credentials, timeoutMs: intOpt('fetch-timeout-ms', v['fetch-timeout-ms'], 10_000), retries: intOpt('retries', v.retries, 2) });
  const metrics = new SnapshotterMetrics();
  const platform = { os, architecture, ...(variant ? { variant } : {}) };
  const resolver = new ImageResolver({ client, platform, ztocWorkerBytes: intOpt('ztoc-worker-bytes', v['ztoc-worker-bytes'], 4 * 1024 * 1024), onEvent: (e) => metrics.emit(e) });
  const t0 = performance.now();
  try {
    // mountRootfs asks again below and gets this resolution; it also reports any failure (a bad ref too).
    resolver.resolve(parseImageRef(imageRef, defaultHost)).catch(() => undefined);
  } catch {
    /* reported by mountRootfs */
  }
  // FUSE (fuse-native) is needed once the image resolves, pino at once: all load while the requests are in flight.
  const loadingPino = import('pino');
  loadingPino.catch(() => undefined);
  void import('./fs/index.js').catch(() => undefined);
  const { SociLayerProvider, mountRootfs } = await import('./core/index.js');

  const provider = new SociLayerProvider({
    client,
    cacheDir,
    defaultHost,
    platform,
    metrics,
    resolver,
    readTimeoutMs: intOpt('read-timeout-ms', v['read-timeout-ms'], 20_000),
    fetchTimeoutMs: intOpt('fetch-timeout-ms', v['fetch-timeout-ms'], 10_000),
    retries: intOpt('retries', v.retries, 2),
    bgFetchPeriodMs: intOpt('bg-fetch-period-ms', v['bg-fetch-period-ms'], 500),
    bgQuietMs: intOpt('bg-quiet-ms', v['bg-quiet-ms'], 30_000),
    fillLayerBytes: intOpt('fill-layer-bytes', v['fill-layer-bytes'], 5 * 1024 * 1024),
    onReadError: (layerDigest, path, err) => log((l) => l.warn({ layerDigest, path, err: (err as Error).message }, 'read failed (EIO)')),
  });
  let stopping: (() => void) | undefined;
  const stopped = new Promise<void>((r) => (stopping = r));
  let signalled = false;
  const onSignal = (sig: string): void => {
    log((l) => l.info({ signal: sig }, 'stopping'));
    signalled = true;
    stopping?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const mounting = mountRootfs({ provider, imageRef, mountpoint, stateDir });
  mounting.catch(() => undefined); // handled below, once the logger is up
  const { default: pino } = await loadingPino;
  logger = pino({ level: v['log-level'] ?? 'info', base: { pid: process.pid, cmd: 'mount' } }, pino.destination({ dest: 2, sync: true }));
  for (const f of early.splice(0)) f(logger);
  let rootfs: RootfsMount;
  try {
    rootfs = await mounting;
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'mount failed');
    await provider.close();
    client.close();
    if (readyFd !== undefined) await report(readyFd, `error ${(err as Error).message.replace(/\n/g, ' ')}\n`);
    throw err;
  }
  const state: MountState = {
    pid: process.pid, mountpoint, imageRef, manifestDigest: rootfs.image.manifestDigest, stateDir,
    layers: rootfs.layers.map((l, i) => ({ digest: rootfs.image.manifest.layers[i]?.digest ?? '', dir: l.dir, lazy: l.lazy })),
    startedAt: new Date().toISOString(),
  };
  // Synchronous: a few hundred bytes next to the mountpoint, while the libuv pool may be busy with the
  // span files of layers being filled (fdatasync), which would hold back the readiness report.
  writeFileSync(stateFile(mountpoint), `${JSON.stringify(state, null, 2)}\n`);
  logger.info({ mountpoint, manifestDigest: state.manifestDigest, sociIndex: rootfs.image.sociIndexDigest ?? null, noIndexReason: rootfs.image.noIndexReason, lazy: state.layers.filter((l) => l.lazy).length, unpacked: state.layers.filter((l) => !l.lazy).length, ms: Math.round(performance.now() - t0) }, 'mounted');
  if (readyFd !== undefined) await report(readyFd, 'ready\n');
  else process.stdout.write(`mounted ${imageRef} at ${mountpoint}\n`);

  if (!signalled) await stopped;
  await rootfs.unmount();
  await provider.close();
  client.close();
  await rm(stateFile(mountpoint), { force: true });
  logger.info({ stats: provider.stats(), uptimeMs: Math.round(performance.now() - t0) }, 'unmounted; summary');
  // Keep-alive sockets or a straggling FUSE handle must not keep a finished mount process around.
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  return 0;
}

/** Writes `line` to the readiness pipe and closes it; synchronous, so a busy libuv pool cannot delay it. */
function report(fd: number, line: string): Promise<void> {
  try {
    writeSync(fd, line);
  } catch {
    /* the parent is gone: nothing to tell */
  }
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
  return Promise.resolve();
}

/** Starts this command again as a detached child and waits for its `ready`/`error` line on fd 3. */
async function detach(args: string[], logFile: string): Promise<number> {
  const log = openSync(logFile, 'a');
  // The child starts at this very file (its entry below), not at the CLI, whose other imports it never needs.
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args, '--ready-fd', '3'], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
  });
  closeSync(log);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  const outcome = await new Promise<string>((resolve) => {
    pipe.on('data', (c: Buffer) => (text += c.toString()));
    pipe.on('end', () => resolve(text));
    child.on('exit', (code) => resolve(text || `error mount process exited with ${code}`));
  });
  child.unref();
  (pipe as unknown as { destroy(): void }).destroy();
  if (outcome.startsWith('ready')) {
    process.stdout.write(`mounted (pid ${child.pid}, log ${logFile})\n`);
    return 0;
  }
  const tail = await readFile(logFile, 'utf8').then((t) => t.split('\n').slice(-15).join('\n'), () => '');
  process.stderr.write(`soci-proxy: mount failed: ${outcome.replace(/^error /, '').trim()}\n${tail}\n`);
  return 1;
}

function mountsTable(text: string): Array<{ source: string; target: string; type: string }> {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').filter(Boolean).map((line) => {
    const [source = '', target = '', type = ''] = line.split(' ');
    return { source: unescape(source), target: unescape(target), type };
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** `soci-proxy unmount MOUNTPOINT`. */
export async function unmountMain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { 'timeout-ms': { type: 'string' } } });
  if (!positionals[0]) throw new UsageError(USAGE);
  const mountpoint = resolve(positionals[0]);
  const timeout = intOpt('timeout-ms', values['timeout-ms'], 30_000);
  const state = await readFile(stateFile(mountpoint), 'utf8').then((t) => JSON.parse(t) as MountState, () => undefined);
  if (state !== undefined && alive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    const deadline = Date.now() + timeout;
    while (alive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(state.pid)) process.stderr.write(`soci-proxy: mount process ${state.pid} did not exit in ${timeout} ms; forcing the unmount\n`);
  }
  // Fallback for a process that died or hung: overlay first, then every FUSE mount it left.
  const table = mountsTable(await readFile('/proc/mounts', 'utf8'));
  const stale = table.filter((m) => m.target === mountpoint || (state !== undefined && m.target.startsWith(`${state.stateDir}/`)));
  stale.sort((a, b) => (a.target === mountpoint ? -1 : b.target === mountpoint ? 1 : 0));
  for (const m of stale) {
    if (m.type.startsWith('fuse')) await exec('fusermount', ['-uz', m.target]).catch(() => exec('umount', ['-l', m.target]).catch(() => undefined));
    else await exec('umount', ['-l', m.target]).catch(() => undefined);
  }
  if (state !== undefined) {
    if (alive(state.pid)) process.kill(state.pid, 'SIGKILL');
    await rm(state.stateDir, { recursive: true, force: true }).catch(() => undefined);
    await rm(stateFile(mountpoint), { force: true });
  }
  if (state === undefined && stale.length === 0) {
    process.stderr.write(`soci-proxy: nothing mounted at ${mountpoint}\n`);
    return 1;
  }
  process.stdout.write(`unmounted ${mountpoint}${stale.length ? ` (${stale.length} stale mount(s) cleared)` : ''}\n`);
  return 0;
}

/** Entry of the detached child started by `detach`: `node mount-main.js ARGS --ready-fd 3`, errors as the CLI prints them. */
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  mountMain(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    async (err: unknown) => {
      const { errorCode } = await import('../oci/errors.js');
      const code = errorCode(err);
      process.stderr.write(`soci-proxy: ${err instanceof Error ? err.message : String(err)}${code && !(err instanceof UsageError) ? ` [${code}]` : ''}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
