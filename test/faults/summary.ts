/**
 * Figures of the fault suite: each test file records its counts with `record(suite, figures)` into a
 * directory shared by every file of one `node --test` run (keyed by the runner's PID, the parent of every
 * test-file process); `zz-summary.test.ts` waits for them and prints one table. Counters that must stay 0
 * (wrong bytes, crashes, hangs, leaks) are asserted there as well as in each suite.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Figures {
  faultsInjected: number;
  requestsServed: number;
  wrongBytes: number;
  crashes: number;
  hangs: number;
  leaks: number;
  /** Only the load suite. */
  p99Ms?: number;
  notes?: string;
}

export const SUITES = ['upstream', 'state', 'bad-input', 'security', 'load', 'snapshotter'] as const;

export function summaryDir(): string {
  const dir = join(tmpdir(), `soci-faults-summary-${process.ppid}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function record(suite: (typeof SUITES)[number], f: Figures): void {
  writeFileSync(join(summaryDir(), `${suite}.json`), JSON.stringify(f));
}

export function readAll(): Record<string, Figures> {
  const out: Record<string, Figures> = {};
  for (const name of readdirSync(summaryDir())) {
    if (name.endsWith('.json')) out[name.slice(0, -5)] = JSON.parse(readFileSync(join(summaryDir(), name), 'utf8')) as Figures;
  }
  return out;
}

/** A mutable tally a suite fills as it goes. */
export function tally(): Figures {
  return { faultsInjected: 0, requestsServed: 0, wrongBytes: 0, crashes: 0, hangs: 0, leaks: 0 };
}

export function table(all: Record<string, Figures>): string {
  const rows = [['suite', 'faults injected', 'requests served', 'wrong bytes', 'crashes', 'hangs', 'leaks', 'p99 ms']];
  const sum = tally();
  for (const s of SUITES) {
    const f = all[s];
    if (!f) {
      rows.push([s, '(not run)', '', '', '', '', '', '']);
      continue;
    }
    rows.push([s, String(f.faultsInjected), String(f.requestsServed), String(f.wrongBytes), String(f.crashes), String(f.hangs), String(f.leaks), f.p99Ms === undefined ? '' : f.p99Ms.toFixed(1)]);
    for (const k of ['faultsInjected', 'requestsServed', 'wrongBytes', 'crashes', 'hangs', 'leaks'] as const) sum[k] += f[k];
  }
  const p99 = all.load?.p99Ms;
  rows.push(['TOTAL', String(sum.faultsInjected), String(sum.requestsServed), String(sum.wrongBytes), String(sum.crashes), String(sum.hangs), String(sum.leaks), p99 === undefined ? '' : p99.toFixed(1)]);
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`).join('\n');
}
