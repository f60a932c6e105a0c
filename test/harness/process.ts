/**
 * Starting and stopping real daemons for tests. `startDaemon` spawns the program directly (no shell, so the
 * recorded PID is the daemon's own — see test-environment.md §2), sends its stdout and stderr to a log file,
 * waits until a readiness check passes (a callback, a TCP port that accepts, or a log line that matches)
 * and fails with the log tail if the daemon exits first or the timeout passes. `stop()` sends SIGTERM and
 * waits until the process is gone, then SIGKILLs after a grace period. Every daemon is also registered with
 * the exit hooks in cleanup.ts so that a failing test leaves nothing running. `runCommand` runs a short
 * command to completion and captures its output.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { canConnect } from './ports.js';
import { killSync, onProcessExit } from './cleanup.js';

export type Readiness = (() => Promise<boolean> | boolean) | { tcpPort: number; host?: string } | { logMatch: RegExp };

export interface DaemonOptions {
  /** Short name used in errors. */
  name: string;
  cmd: string;
  args?: string[];
  cwd?: string;
  /** Full environment of the daemon; defaults to the test process's environment. */
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr are appended here. */
  logFile: string;
  ready: Readiness;
  /** How long to wait for readiness; default 15 s. */
  timeoutMs?: number;
  /** Grace between SIGTERM and SIGKILL in stop(); default 10 s. */
  graceMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  /** Sends `signal` (SIGTERM), waits until the process is gone, SIGKILLs after the grace period. */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL now and wait for the exit. */
  kill(): Promise<ExitInfo>;
  /** The whole log file so far. */
  logs(): string;
  /** Resolves when the process has exited. */
  waitExit(): Promise<ExitInfo>;
  /** True once the process has exited. */
  readonly exited: boolean;
}

function tail(text: string, lines = 30): string {
  return text.split('\n').slice(-lines).join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function checkReady(ready: Readiness, logs: () => string): Promise<boolean> {
  if (typeof ready === 'function') return await ready();
  if ('tcpPort' in ready) return canConnect(ready.tcpPort, ready.host ?? '127.0.0.1');
  return ready.logMatch.test(logs());
}

/** Spawns a daemon and waits until it is ready; rejects (after killing it) if it is not. */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const fd = openSync(opts.logFile, 'a');
  let child;
  try {
    child = spawn(opts.cmd, opts.args ?? [], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  const logs = (): string => (existsSync(opts.logFile) ? readFileSync(opts.logFile, 'utf8') : '');
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new Error(`${opts.name}: cannot spawn ${opts.cmd}: ${err.message}`);
  }
  // The child handle keeps the event loop alive only while someone waits on it (startup, stop, waitExit),
  // so a test that forgets a daemon still exits and the exit hook stops it.
  let exitInfo: ExitInfo | undefined;
  const exitPromise = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const unregister = onProcessExit(() => {
    if (exitInfo === undefined) killSync(pid);
  }, 10);
  const graceMs = opts.graceMs ?? 10_000;

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitInfo> => {
    child.ref();
    if (exitInfo === undefined) {
      try {
        process.kill(pid, signal);
      } catch {
        // raced with its exit
      }
      let handle: NodeJS.Timeout | undefined;
      const timer = new Promise<'timeout'>((r) => {
        handle = setTimeout(() => r('timeout'), graceMs);
      });
      const winner = await Promise.race([exitPromise, timer]);
      clearTimeout(handle);
      if (winner === 'timeout' && exitInfo === undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    const info = await exitPromise;
    unregister();
    return info;
  };

  const daemon: Daemon = {
    name: opts.name,
    pid,
    stop,
    kill: () => stop('SIGKILL'),
    logs,
    waitExit: () => {
      child.ref();
      return exitPromise;
    },
    get exited() {
      return exitInfo !== undefined;
    },
  };

  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitInfo !== undefined) {
      unregister();
      throw new Error(`${opts.name} (pid ${pid}) exited before it was ready (code ${exitInfo.code}, signal ${exitInfo.signal}); log tail:\n${tail(logs())}`);
    }
    let ok = false;
    try {
      ok = await checkReady(opts.ready, logs);
    } catch {
      ok = false;
    }
    if (ok) {
      child.unref();
      return daemon;
    }
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`${opts.name} (pid ${pid}) not ready after ${timeoutMs} ms; log tail:\n${tail(logs())}`);
    }
    await sleep(50);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
}

/** Runs a command to completion (no shell) and captures its output; throws on a non-zero exit unless check is false. */
export function runCommand(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const res = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? 128 };
      if ((opts.check ?? true) && res.code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} failed (code ${code}, signal ${signal}):\n${tail(res.stderr || res.stdout)}`));
      } else resolve(res);
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}
