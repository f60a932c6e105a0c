/**
 * Prints the fault suite's summary table once every other fault suite of this run has recorded its
 * figures (they run in parallel processes; this one waits for them, bounded), and asserts the counters
 * that must be zero: wrong bytes served, crashes, hangs, leaks of private artifacts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readAll, SUITES, table } from './summary.js';

test('fault suite summary', { timeout: 200_000 }, async () => {
  const deadline = Date.now() + 180_000;
  let all = readAll();
  while (SUITES.some((s) => !all[s]) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    all = readAll();
  }
  process.stdout.write(`\n# soci-proxy fault suite\n${table(all)}\n`);
  for (const [s, f] of Object.entries(all)) if (f.notes) process.stdout.write(`# ${s}: ${f.notes}\n`);
  for (const f of Object.values(all)) {
    assert.equal(f.wrongBytes, 0);
    assert.equal(f.crashes, 0);
    assert.equal(f.hangs, 0);
    assert.equal(f.leaks, 0);
  }
});
