/**
 * Last-resort cleanup for the test process. Every daemon the harness starts and every temp dir it makes is
 * registered here; when the process exits (normally, through an uncaught error, or on SIGINT/SIGTERM/SIGHUP)
 * the registered hooks run synchronously: daemons first (SIGTERM, a short grace, SIGKILL), then temp dirs.
 * Tests should still stop what they start; this only makes sure a failing test leaves nothing behind.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Hook = { order: number; run: () => void };
const hooks = new Set<Hook>();
let installed = false;

function runAll(): void {
  const list = [...hooks].sort((a, b) => a.order - b.order);
  hooks.clear();
  for (const h of list) {
    try {
      h.run();
    } catch {
      // best effort: keep going with the other hooks
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runAll();
      process.kill(process.pid, sig);
    });
  }
}

/** Registers a synchronous hook run at process exit; lower `order` runs first. Returns an unregister function. */
export function onProcessExit(run: () => void, order = 50): () => void {
  install();
  const hook = { order, run };
  hooks.add(hook);
  return () => hooks.delete(hook);
}

/** True when the PID no longer names a live process (gone, or a zombie waiting to be reaped). */
export function pidGone(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    const text = readFileSync(stat, 'utf8');
    const state = text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** Blocks the thread for `ms` milliseconds (only for exit hooks, where nothing async can run). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGTERM, wait up to graceMs, then SIGKILL; synchronous. */
export function killSync(pid: number, graceMs = 3000): void {
  if (pidGone(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (pidGone(pid)) return;
    sleepSync(25);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A fresh temp dir that is removed at process exit unless `keep` is set; `remove()` removes it now. */
export function tempDir(prefix: string, opts: { keep?: boolean } = {}): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `soci-${prefix}-`));
  const rm = (): void => rmSync(path, { recursive: true, force: true });
  const unregister = opts.keep ? () => true : onProcessExit(rm, 90);
  return {
    path,
    remove() {
      unregister();
      rm();
    },
  };
}
