/**
 * Composition root of `soci-proxy snapshotter --address SOCKET --root DIR [--config FILE]`: the containerd
 * proxy-plugin remote snapshotter. It reads the flags and the JSON config, builds one `SociLayerProvider`
 * per registry route (wrapped by `RoutedProvider`, span cache under `<root>/cache`), opens the snapshot
 * state under `<root>` and serves containerd's Snapshots API on the unix socket. SIGTERM and SIGINT stop
 * the server and unmount every FUSE layer (remounted on demand after a restart). FUSE is served on this
 * process's main thread: nothing here may use a synchronous call that could touch a mount.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { RegistryClient, SociLayerProvider } from './core/index.js';
import { RoutedProvider, Snapshotter, parseSnapshotterConfig, serveSnapshotter, type SnapshotterConfig } from './grpc/index.js';

const USAGE = 'usage: soci-proxy snapshotter --address SOCKET --root DIR [--config FILE.json] [--log-level debug|info|warn|error]';

export async function loadConfig(path: string | undefined): Promise<SnapshotterConfig> {
  if (path === undefined) return parseSnapshotterConfig(undefined);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read config file ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseSnapshotterConfig(raw, `config file ${path}`);
}

export async function snapshotterMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: { address: { type: 'string' }, root: { type: 'string' }, config: { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.address || !values.root) throw Object.assign(new Error(USAGE), { usage: true });
  const config = await loadConfig(values.config);
  const level = values['log-level'] ?? config.logLevel;
  const logger = pino({ level, base: { cmd: 'snapshotter' } }, pino.destination(2));
  const root = resolve(values.root);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const cacheDir = join(root, 'cache');
  const provider = new RoutedProvider(config, (route) =>
    new SociLayerProvider({
      client: new RegistryClient({ plainHttp: route.plainHttp, credentials: route.credentials, timeoutMs: config.timeouts.requestMs, retries: config.retries }),
      cacheDir,
      defaultHost: config.defaultHost,
      readTimeoutMs: config.timeouts.readMs,
      fetchTimeoutMs: config.timeouts.fetchMs,
      retries: config.retries,
      bgFetchPeriodMs: config.backgroundFetch.periodMs,
      bgQuietMs: config.backgroundFetch.quietMs,
      maxSpanCacheBytes: config.spanCacheBytes,
      onReadError: (layerDigest, path, err) => logger.warn({ layerDigest, path, err: (err as Error).message }, 'FUSE read failed'),
    }),
  );
  const snap = await Snapshotter.open({ root, provider, logger });
  const server = await serveSnapshotter(snap, resolve(values.address), { logger });
  logger.info({ address: server.address, root }, 'snapshotter listening');

  await new Promise<void>((done) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping');
      void (async () => {
        await server.close().catch(() => undefined);
        await snap.close().catch(() => undefined);
        await provider.close().catch(() => undefined);
        done();
      })();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  logger.info('stopped');
  return 0;
}
