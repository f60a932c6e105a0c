/**
 * Ready-made test images, each built once per test process (memoized) into its own temp OCI layout:
 * `smallImage` (two small gzip layers, via umoci), `mixedImage` (one layer per indexing case: a large gzip
 * layer, an uncompressed tar, a PAX-global-header layer, a multi-member gzip layer, and one below the
 * minimum size; `roles` names their positions), `multiPlatformImage` (an OCI index over linux/amd64 and
 * linux/arm64/v8) and `pythonImage` (host /bin/sh + python3.11 + a slice of the stdlib, runnable under
 * runc). Content comes from a seeded generator, so the bytes are the same on every run.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, buildImageWithUmoci, buildIndex, type BuiltImage, type BuiltIndex } from './images.js';
import { hostBinariesRootfs } from './rootfs.js';
import { runCommand } from './process.js';
import { tempDir } from './cleanup.js';

/** Deterministic pseudo-random bytes (xorshift32), incompressible for gzip. */
export function randomBytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Text that compresses like source code does (about 4:1). */
export function textBytes(n: number, seed = 1): Buffer {
  const words = ['layer', 'index', 'span', 'checkpoint', 'gzip', 'tar', 'registry', 'digest', 'manifest', 'blob', 'zTOC', 'fuse'];
  const r = randomBytes(n, seed);
  let s = '';
  for (let i = 0; s.length < n; i++) s += words[r[i % n]! % words.length] + ((r[(i * 7) % n]! & 15) === 0 ? '\n' : ' ');
  return Buffer.from(s.slice(0, n));
}

function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** Two small gzip layers built by umoci (its manifest has no top-level mediaType). */
export const smallImage = memo(async (): Promise<BuiltImage> => {
  const tmp = tempDir('small');
  const a = join(tmp.path, 'a');
  const b = join(tmp.path, 'b');
  mkdirSync(join(a, 'etc'), { recursive: true });
  mkdirSync(join(b, 'app'), { recursive: true });
  writeFileSync(join(a, 'etc', 'hello.txt'), 'hello from layer one\n');
  writeFileSync(join(b, 'app', 'data.bin'), randomBytes(4096, 7));
  writeFileSync(join(b, 'app', 'readme.md'), textBytes(2048, 8));
  return buildImageWithUmoci({ layout: join(tmp.path, 'oci'), tag: 'small', dirs: [a, b], config: { cmd: ['/bin/sh'] } });
});

export interface MixedImage extends BuiltImage {
  /** Layer positions by role. */
  roles: { large: number; uncompressed: number; paxGlobal: number; multiMember: number; small: number };
}

/** One layer per indexing case; sizes assume a --min-layer-size of 64 KiB. */
export const mixedImage = memo(async (): Promise<MixedImage> => {
  const large: Record<string, Uint8Array | string> = {};
  for (let i = 0; i < 6; i++) large[`data/random-${i}.bin`] = randomBytes(48 * 1024 + i * 1000, 100 + i);
  for (let i = 0; i < 20; i++) large[`src/file-${i}.txt`] = textBytes(8 * 1024, 200 + i);
  large['data/empty'] = '';
  const img = await buildImage({
    tag: 'mixed',
    layers: [
      { files: large },
      { files: { 'plain/a.txt': textBytes(20 * 1024, 3), 'plain/b.bin': randomBytes(80 * 1024, 4) }, compression: 'uncompressed' },
      { files: { 'pax/blob.bin': randomBytes(100 * 1024, 5) }, paxGlobal: { comment: 'global header' } },
      { files: { 'multi/one.bin': randomBytes(60 * 1024, 6), 'multi/two.bin': randomBytes(60 * 1024, 9) }, compression: 'gzip-multi' },
      { files: { 'tiny/hello.txt': 'tiny layer\n', 'tiny/link': { symlink: 'hello.txt' }, 'tiny/hard': { hardlink: 'tiny/hello.txt' } } },
    ],
    config: { cmd: ['/bin/sh'] },
  });
  return Object.assign(img, { roles: { large: 0, uncompressed: 1, paxGlobal: 2, multiMember: 3, small: 4 } });
});

/** An OCI index over a linux/amd64 and a linux/arm64/v8 image (different layers each). */
export const multiPlatformImage = memo(async (): Promise<BuiltIndex> => {
  const layout = tempDir('multi').path;
  const amd = await buildImage({ layout, layers: [{ files: { 'arch.txt': 'amd64\n', 'bin/tool': randomBytes(96 * 1024, 11) } }], config: { arch: 'amd64' } });
  const arm = await buildImage({ layout, layers: [{ files: { 'arch.txt': 'arm64\n', 'bin/tool': randomBytes(96 * 1024, 12) } }], config: { arch: 'arm64', variant: 'v8' } });
  return buildIndex({ layout, tag: 'multi', images: [amd, arm] });
});

const PY_STDLIB_DIRS = ['encodings', 'json', 're', 'collections', 'importlib'];

/**
 * python3.11 from the host on a copied-libs rootfs, plus a stdlib slice in a second layer (top-level
 * modules, encodings, json, re, collections, importlib); cmd prints {"ok": 1}. About 6 MB of gzip.
 */
export const pythonImage = memo(async (): Promise<BuiltImage> => {
  const tmp = tempDir('python');
  const base = await hostBinariesRootfs(['/bin/sh', '/usr/bin/python3.11'], join(tmp.path, 'base'));
  const stdlib = join(tmp.path, 'stdlib', 'usr', 'lib', 'python3.11');
  mkdirSync(stdlib, { recursive: true });
  const src = '/usr/lib/python3.11';
  const top = readdirSync(src).filter((n) => n.endsWith('.py'));
  await runCommand('cp', ['-a', '--no-preserve=ownership', ...[...top, ...PY_STDLIB_DIRS].map((n) => join(src, n)), stdlib + '/']);
  await runCommand('find', [stdlib, '-name', '__pycache__', '-prune', '-exec', 'rm', '-rf', '{}', ';']);
  return buildImage({
    tag: 'python',
    layers: [{ dir: base }, { dir: join(tmp.path, 'stdlib') }],
    config: { cmd: ['/usr/bin/python3.11', '-c', 'import json; print(json.dumps({"ok": 1}))'] },
  });
});
