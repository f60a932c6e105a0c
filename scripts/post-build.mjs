#!/usr/bin/env node
// Post-build step of `npm run build`. The compiled JS in dist/ finds the native addon at
// <package root>/build/Release/soci_gzip.node (the same relative path as from src/), so nothing needs
// copying today; this only reports which gzip engine dist/ will use.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = existsSync(join(root, 'build', 'Release', 'soci_gzip.node'));
console.log(`gzip engine available: ${native ? 'native (build/Release/soci_gzip.node)' : 'js (pako)'}`);
