#!/usr/bin/env node
// Builds the optional native addons (binding.gyp): the gzip engine (build/Release/soci_gzip.node), when
// ISA-L's headers are installed the span inflater over it (build/Release/soci_isal.node), and,
// when libfuse3's headers are installed (`pkg-config --exists fuse3`), the low-level FUSE layer server
// (build/Release/soci_fuse.node; without it layer mounts use fuse-native), with npm's node-gyp. Offline: when node's headers are installed under /usr/include/node it passes
// --nodedir=/usr so node-gyp downloads nothing. Any failure prints one warning and exits 0: the
// indexer then uses the pure-JS engine (pako), which gives byte-identical results, only slower.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
];
const args = ['rebuild'];
if (existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');

const script = candidates.find((p) => existsSync(p));
const res = script
  ? spawnSync(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  : spawnSync('node-gyp', args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });

const fuse3 = spawnSync('pkg-config', ['--exists', 'fuse3']).status === 0;
if (res.status === 0 && existsSync(join(root, 'build', 'Release', 'soci_gzip.node'))) {
  console.log('native gzip engine built: build/Release/soci_gzip.node');
  if (existsSync(join(root, 'build', 'Release', 'soci_sendfile.node'))) console.log('native sendfile built: build/Release/soci_sendfile.node');
  if (existsSync(join(root, 'build', 'Release', 'soci_isal.node'))) console.log('native ISA-L span inflater built: build/Release/soci_isal.node');
  else console.warn('warning: ISA-L span inflater unavailable, spans are inflated with zlib (apt-get install libisal-dev pkg-config for ~1.4x faster span restore)');
  if (existsSync(join(root, 'build', 'Release', 'soci_fuse.node'))) console.log('native FUSE server built: build/Release/soci_fuse.node');
  else console.warn(`warning: native FUSE server unavailable, layer mounts will use fuse-native (${fuse3 ? 'soci_fuse did not build' : 'libfuse3 headers missing: apt-get install libfuse3-dev pkg-config'})`);
} else {
  const why = res.error ? res.error.message : (res.stderr || res.stdout || '').trim().split('\n').slice(-3).join(' | ');
  console.warn(`warning: native gzip engine not built, the pure-JS engine will be used (${why || 'node-gyp failed'})`);
  console.warn('warning: native FUSE server unavailable, layer mounts will use fuse-native');
}
process.exit(0);
