#!/usr/bin/env node
// Runs the test suites with Node's own test runner (through tsx for TypeScript).
//   node scripts/run-tests.mjs            unit tests (src/**/*.test.ts) then integration tests (test/**/*.test.ts)
//   node scripts/run-tests.mjs --unit     unit tests only
//   node scripts/run-tests.mjs PATH...    just those files (a directory: every *.test.ts below it)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  const out = [];
  let names = [];
  try { names = readdirSync(dir); } catch { return out; }
  for (const name of names.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith('--'));
const unitOnly = args.includes('--unit');
// A directory argument means every *.test.ts below it (Node 20's runner only expands .js itself).
const expand = (p) => (statSync(p, { throwIfNoEntry: false })?.isDirectory() ? find(p) : [p]);
const list = files.length ? files.flatMap(expand) : [...find('src'), ...(unitOnly ? [] : find('test'))];
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...list], {
  stdio: 'inherit',
  env: { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, '--max-old-space-size=4096'].filter(Boolean).join(' ') },
});
process.exit(res.status ?? 1);
