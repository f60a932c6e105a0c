/**
 * The Go `archive/tar` oracle for the tar TOC builder: builds `main.go` (stdlib only, no module proxy) into
 * a temp dir, runs it over tar files, and states what `TarTocBuilder` must produce for the same bytes:
 * the same entries field for field and the same archive size, or an error of the matching kind. Where the
 * builder is deliberately stricter than Go (sparse records, non-UTF-8 strings, values a zTOC cannot carry
 * exactly) the expectation says which `LayerSkipped` code, at the first entry Go returned that triggers it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TarTocBuilder } from '../../../src/indexer/tar/index.js';
import { errorCode } from '../../../src/oci/errors.js';
import type { FileMetadata } from '../../../src/indexer/types.js';

export interface OracleEntry {
  name: string;
  type: string;
  offset: string;
  size: string;
  linkname: string;
  mode: string;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mod_time: string;
  devmajor: string;
  devminor: string;
  xattrs: Array<[string, string]>;
  non_utf8?: boolean;
}

export interface OracleResult {
  entries: OracleEntry[];
  archive_size?: string;
  error?: string;
  error_kind?: string;
}

export class Oracle {
  readonly #dir: string;
  readonly #bin: string;

  private constructor(dir: string) {
    this.#dir = dir;
    this.#bin = join(dir, 'tartoc');
  }

  /** Build the oracle, or return a reason why it cannot be built (no `go`). */
  static build(): Oracle | string {
    const probe = spawnSync('go', ['version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) return 'the go toolchain is not installed; Go oracle tests skipped';
    const dir = mkdtempSync(join(tmpdir(), 'tartoc-oracle-'));
    const src = join(dirname(fileURLToPath(import.meta.url)), 'main.go');
    const res = spawnSync('go', ['build', '-o', join(dir, 'tartoc'), src], {
      encoding: 'utf8',
      env: { ...process.env, GO111MODULE: 'off', GOPROXY: 'off', GOFLAGS: '', GOCACHE: join(dir, 'gocache') },
    });
    if (res.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`go build of the tar oracle failed: ${res.stderr}`);
    }
    return new Oracle(dir);
  }

  /** Run Go's reader over each tar (any of them may be gzip). */
  runMany(tars: Uint8Array[]): OracleResult[] {
    const files = tars.map((t, i) => {
      const p = join(this.#dir, `in-${i}.tar`);
      writeFileSync(p, t);
      return p;
    });
    const res = spawnSync(this.#bin, files, { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (res.status !== 0) throw new Error(`tar oracle failed: ${res.stderr}`);
    for (const f of files) rmSync(f, { force: true });
    const lines = res.stdout.trim().split('\n');
    if (lines.length !== tars.length) throw new Error(`tar oracle printed ${lines.length} results for ${tars.length} inputs`);
    return lines.map((l) => JSON.parse(l) as OracleResult);
  }

  run(tar: Uint8Array): OracleResult {
    return this.runMany([tar])[0] as OracleResult;
  }

  close(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** What the builder must produce: a TOC or an error code. */
export type Expected = { ok: true; entries: OracleEntry[]; size: string } | { ok: false; code: string; entries: number };

function unsafe(s: string): boolean {
  return !Number.isSafeInteger(Number(s)) || String(Number(s)) !== s;
}

export function expectedFromOracle(r: OracleResult): Expected {
  for (let i = 0; i < r.entries.length; i++) {
    const e = r.entries[i] as OracleEntry;
    if (e.xattrs.some(([k]) => k.startsWith('GNU.sparse.'))) return { ok: false, code: 'SPARSE_ENTRY', entries: i };
    if (unsafe(e.size) || Number(e.size) < 0 || unsafe(e.mode) || unsafe(e.devmajor) || unsafe(e.devminor)) {
      return { ok: false, code: 'VALUE_OUT_OF_RANGE', entries: i };
    }
    if (e.non_utf8) return { ok: false, code: 'VALUE_OUT_OF_RANGE', entries: i };
  }
  if (r.error !== undefined) {
    const kind = r.error_kind;
    let code = 'CORRUPT_LAYER';
    if (kind === 'pax_global') code = 'PAX_GLOBAL_HEADER';
    else if (kind === 'unsupported_type') code = r.error === 'unsupported typeflag \'S\'' ? 'SPARSE_ENTRY' : 'UNSUPPORTED_TYPEFLAG';
    return { ok: false, code, entries: r.entries.length };
  }
  return { ok: true, entries: r.entries, size: r.archive_size as string };
}

/** A builder entry in the oracle's shape. */
export function toOracleShape(m: FileMetadata): OracleEntry {
  return {
    name: m.name, type: m.type, offset: String(m.uncompressedOffset), size: String(m.uncompressedSize),
    linkname: m.linkname, mode: String(m.mode), uid: m.uid, gid: m.gid, uname: m.uname, gname: m.gname,
    mod_time: m.modTime, devmajor: String(m.devmajor), devminor: String(m.devminor), xattrs: m.xattrs,
  };
}

export type BuilderOutcome = { ok: true; entries: OracleEntry[]; size: string; endedEarly: number | undefined } | { ok: false; code: string; message: string };

/** Feed `tar` to a fresh builder in chunks of the given sizes (cycled), then end it. */
export function runBuilder(tar: Uint8Array, chunkSizes: number[]): BuilderOutcome {
  let endedEarly: number | undefined;
  const b = new TarTocBuilder({ onEnd: (n) => { endedEarly = n; } });
  try {
    let i = 0;
    let k = 0;
    // Reuse one buffer for every chunk, to prove the builder keeps no view into a chunk.
    const scratch = new Uint8Array(Math.max(...chunkSizes));
    while (i < tar.length) {
      const n = Math.min(chunkSizes[k++ % chunkSizes.length] as number, tar.length - i);
      scratch.set(tar.subarray(i, i + n));
      b.write(scratch.subarray(0, n));
      scratch.fill(0xaa);
      i += n;
    }
    const toc = b.end();
    return { ok: true, entries: toc.entries.map(toOracleShape), size: String(toc.uncompressedArchiveSize), endedEarly };
  } catch (err) {
    return { ok: false, code: errorCode(err) ?? 'UNKNOWN', message: String(err) };
  }
}
