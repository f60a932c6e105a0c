#!/usr/bin/env node
/**
 * `soci-proxy` command line: the composition root for every command. It alone reads argv and the
 * environment, binds sockets and mounts; each command hands typed options to the layer that does the work.
 *
 *   soci-proxy serve [options]                         the registry proxy (see `soci-proxy serve --help`)
 *   soci-proxy ztoc build LAYER --out ZTOC [--span-size N] [--media-type T] [--build-tool-id S] [--engine native|js]
 *   soci-proxy ztoc info ZTOC [--json]
 *   soci-proxy ztoc extract ZTOC LAYER PATH            file bytes to stdout
 *   soci-proxy index OCI_LAYOUT[:TAG] --out OCI_LAYOUT [--span-size N] [--min-layer-size N]
 *   soci-proxy cache stats|gc [--cache-dir DIR] [--max-bytes N]
 */
import { createReadStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { errorCode } from './oci/errors.js';
import { MediaType, SOCI_DEFAULTS } from './oci/media-types.js';
import type { EngineName } from './indexer/index.js';
import type { RangeSource } from './indexer/reader.js';
import { parseOptionValue, type OptionSpec } from './proxy/options.js';

class UsageError extends Error {}

function bytesOpt(flag: string, raw: string | undefined, def: number): number {
  if (raw === undefined) return def;
  const spec: OptionSpec = { flag, type: 'bytes', description: '' };
  return parseOptionValue(spec, raw, 'flag') as number;
}

function engineOpt(raw: string | undefined): EngineName {
  if (raw === undefined) return 'auto';
  if (raw === 'native' || raw === 'js' || raw === 'auto') return raw;
  throw new UsageError(`--engine must be native, js or auto, not ${JSON.stringify(raw)}`);
}

function fileSource(path: string): RangeSource & { close(): Promise<void> } {
  const fh = open(path, 'r');
  return {
    async read(start, end) {
      const f = await fh;
      const buf = new Uint8Array(end - start);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await f.read(buf, got, buf.length - got, start + got);
        if (bytesRead === 0) throw new Error(`${path}: short read at ${start + got}`);
        got += bytesRead;
      }
      return buf;
    },
    async close() {
      await (await fh).close();
    },
  };
}

function guessMediaType(path: string, head: Uint8Array): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return MediaType.ociLayerGzip;
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return MediaType.ociLayerZstd;
  if (/\.(tgz|gz)$/.test(path)) return MediaType.ociLayerGzip;
  return MediaType.ociLayerTar;
}

async function ztocBuild(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string' }, 'span-size': { type: 'string' }, 'media-type': { type: 'string' }, 'build-tool-id': { type: 'string' }, engine: { type: 'string' } },
  });
  const layer = positionals[0];
  if (!layer || !values.out) throw new UsageError('usage: soci-proxy ztoc build LAYER_FILE --out ZTOC_FILE [--span-size BYTES] [--media-type TYPE]');
  const sniff = fileSource(layer);
  const head = await sniff.read(0, 4).catch(() => new Uint8Array(0));
  await sniff.close().catch(() => undefined);
  const mediaType = values['media-type'] ?? guessMediaType(layer, head);
  // The indexer loads only for the commands that use it (it is the heaviest import of the CLI).
  const { indexLayer } = await import('./indexer/index.js');
  const result = await indexLayer(createReadStream(layer, { highWaterMark: 1 << 20 }), {
    mediaType,
    spanSize: bytesOpt('span-size', values['span-size'], SOCI_DEFAULTS.spanSize),
    buildToolIdentifier: values['build-tool-id'] ?? SOCI_DEFAULTS.buildToolIdentifier,
    engine: engineOpt(values.engine),
  });
  if (result.status === 'skipped') {
    process.stderr.write(`soci-proxy: no zTOC for ${layer}: ${result.reason} (${result.code})\n`);
    return 3;
  }
  await writeFile(values.out, result.ztoc);
  process.stdout.write(`${result.ztocDigest} ${result.ztoc.length} bytes, ${result.spanCount} spans, ${result.fileCount} entries (layer ${result.layerDigest})\n`);
  return 0;
}

async function ztocInfo(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const file = positionals[0];
  if (!file) throw new UsageError('usage: soci-proxy ztoc info ZTOC_FILE [--json]');
  const { readFile } = await import('node:fs/promises');
  const { ZtocReader } = await import('./indexer/reader.js');
  const reader = ZtocReader.fromBytes(await readFile(file));
  const z = reader.ztoc;
  const info = {
    version: z.version,
    buildToolIdentifier: z.buildToolIdentifier,
    compressionAlgorithm: z.compressionAlgorithm,
    compressedArchiveSize: z.compressedArchiveSize,
    uncompressedArchiveSize: z.uncompressedArchiveSize,
    maxSpanId: z.maxSpanId,
    spans: reader.spans.map((s) => ({ id: s.id, start: s.start, end: s.end, outStart: s.outStart, outEnd: s.outEnd, digest: s.digest })),
    entries: z.toc,
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `version: ${info.version}`,
    `build tool: ${info.buildToolIdentifier}`,
    `compression: ${info.compressionAlgorithm}`,
    `compressed size: ${info.compressedArchiveSize}`,
    `uncompressed size: ${info.uncompressedArchiveSize}`,
    `spans: ${reader.spans.length}`,
    ...reader.spans.map((s) => `  span ${s.id}: in [${s.start}, ${s.end}) out [${s.outStart}, ${s.outEnd}) ${s.digest}`),
    `entries: ${z.toc.length}`,
    ...z.toc.map((e) => `  ${e.type.padEnd(8)} ${e.mode.toString(8).padStart(6, '0')} ${String(e.uid)}/${String(e.gid)} ${String(e.uncompressedSize).padStart(10)} ${e.modTime} ${e.name}${e.linkname ? ` -> ${e.linkname}` : ''}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function ztocExtract(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const [ztocFile, layer, path] = positionals;
  if (!ztocFile || !layer || path === undefined) throw new UsageError('usage: soci-proxy ztoc extract ZTOC_FILE LAYER_FILE PATH');
  const { readFile } = await import('node:fs/promises');
  const { ZtocReader } = await import('./indexer/reader.js');
  const reader = ZtocReader.fromBytes(await readFile(ztocFile));
  const entry = reader.find(path);
  if (!entry) {
    process.stderr.write(`soci-proxy: ${path}: not in the zTOC\n`);
    return 2;
  }
  if (entry.type !== 'reg') {
    process.stderr.write(`soci-proxy: ${path}: is a ${entry.type}, not a regular file\n`);
    return 2;
  }
  const src = fileSource(layer);
  try {
    const bytes = await reader.readFile(src, entry);
    await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (err) => (err ? reject(err) : resolve())));
  } finally {
    await src.close();
  }
  return 0;
}

const HELP = `soci-proxy: lazy-loading (SOCI) images from any registry

  soci-proxy serve [--listen HOST:PORT] --upstream URL [--upstream NAME=URL ...] [options]   run the proxy
  soci-proxy ztoc build LAYER_FILE --out ZTOC_FILE [--span-size BYTES] [--media-type TYPE]
  soci-proxy ztoc info ZTOC_FILE [--json]
  soci-proxy ztoc extract ZTOC_FILE LAYER_FILE PATH
  soci-proxy index OCI_LAYOUT_DIR[:TAG] --out OCI_LAYOUT_DIR
  soci-proxy cache stats|gc [--cache-dir DIR] [--max-bytes N]
  soci-proxy snapshotter --address SOCKET --root DIR [--config FILE]   containerd remote snapshotter

'soci-proxy serve --help' lists every proxy setting.
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case 'ztoc':
      if (sub === 'build') return ztocBuild(rest);
      if (sub === 'info') return ztocInfo(rest);
      if (sub === 'extract') return ztocExtract(rest);
      throw new UsageError('usage: soci-proxy ztoc build|info|extract ...');
    case 'serve': {
      const { serveMain } = await import('./proxy/main.js');
      return serveMain(argv.slice(1));
    }
    case 'index': {
      const { indexLayoutMain } = await import('./indexer/layout-main.js');
      return indexLayoutMain(argv.slice(1));
    }
    case 'mount': {
      const { mountMain } = await import('./snapshotter/mount-main.js');
      return mountMain(argv.slice(1));
    }
    case 'unmount': {
      const { unmountMain } = await import('./snapshotter/mount-main.js');
      return unmountMain(argv.slice(1));
    }
    case 'cache': {
      const { cacheMain } = await import('./cache/main.js');
      return cacheMain(argv.slice(1));
    }
    case 'snapshotter': {
      const { snapshotterMain } = await import('./snapshotter/snapshotter-main.js');
      return snapshotterMain(argv.slice(1));
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}\n${HELP}`);
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${(await import('node:fs')).realpathSync(process.argv[1])}`).href;
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const msg = err instanceof Error ? err.message : String(err);
      const code = errorCode(err);
      process.stderr.write(`soci-proxy: ${msg}${code && !(err instanceof UsageError) ? ` [${code}]` : ''}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
