#!/usr/bin/env node
// Post-build step of `npm run build`: copies the non-TypeScript assets the compiled code loads (the
// snapshotter's .proto files) from src/ into dist/ at the same relative paths, and reports which gzip
// engine dist/ will use (it finds the native addon at <package root>/build/Release/soci_gzip.node).
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');
let copied = 0;
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.proto')) {
      const to = join(dist, relative(src, p));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(p, to);
      copied++;
    }
  }
};
walk(src);
const native = existsSync(join(root, 'build', 'Release', 'soci_gzip.node'));
console.log(`copied ${copied} .proto file(s) to dist/; gzip engine available: ${native ? 'native (build/Release/soci_gzip.node)' : 'js (pako)'}`);
