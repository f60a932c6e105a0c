/**
 * Test fixtures for the gzip checkpoint engine, generated at test time into a temp dir (no binary
 * fixtures in the repo): one ~3 MB PAX tar with random and repetitive files (so both stored and
 * Huffman blocks occur, files cross spans), compressed with `gzip -1/-6/-9`, `pigz` (one member),
 * Python's gzip with FNAME, a handcrafted FEXTRA+FNAME+FCOMMENT+FHCRC header, a stream whose first
 * deflate block is empty (sync flush before any data), and a stream of full-flushed pieces ending in an
 * empty final block (whose last boundary gets a checkpoint that end() must drop).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { GzipCheckpointer, type GzipZinfoResult } from '../../src/indexer/gzip/index.js';
import type { Checkpoint } from '../../src/indexer/types.js';

export interface GzipFixture {
  name: string;
  path: string;
  bytes: Buffer;
  spanSize: number;
}

const PY = String.raw`
import gzip, io, os, random, struct, sys, tarfile, zlib
out = sys.argv[1]
rnd = random.Random(1234)
def rbytes(n): return bytes(rnd.getrandbits(8) for _ in range(n)) if n < 4096 else os.urandom(n)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tf:
    words = [bytes(rnd.choice(b'abcdefghijklmnop') for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    for i in range(26):
        kind = i % 3
        n = rnd.choice([0, 1, 511, 512, 513, 70000, 200000, 350000, 600000])
        if kind == 0: data = os.urandom(n // 2)
        elif kind == 1: data = (b'repetitive line %d of some text\n' % i) * (n // 30 + 1)
        else: data = b' '.join(rnd.choice(words) for _ in range(n // 6))
        ti = tarfile.TarInfo('dir/file-%02d.%d' % (i, kind)); ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(data))
raw = buf.getvalue()
open(os.path.join(out, 'layer.tar'), 'wb').write(raw)
with open(os.path.join(out, 'py-fname.gz'), 'wb') as f:
    with gzip.GzipFile(filename='layer.tar', mode='wb', fileobj=f, mtime=0, compresslevel=6) as g: g.write(raw)
def trailer(data): return struct.pack('<II', zlib.crc32(data) & 0xffffffff, len(data) & 0xffffffff)
small = raw[:400000]
hdr = bytes([0x1f, 0x8b, 8, 2 | 4 | 8 | 16]) + struct.pack('<I', 0) + bytes([0, 3])
extra = b'SC' + struct.pack('<H', 96) + os.urandom(96)
hdr += struct.pack('<H', len(extra)) + extra + b'name.tar\0' + b'a comment\0'
hdr += struct.pack('<H', zlib.crc32(hdr) & 0xffff)
c = zlib.compressobj(6, zlib.DEFLATED, -15)
open(os.path.join(out, 'hand-header.gz'), 'wb').write(hdr + c.compress(small) + c.flush() + trailer(small))
c = zlib.compressobj(6, zlib.DEFLATED, 31)
open(os.path.join(out, 'empty-first-block.gz'), 'wb').write(c.flush(zlib.Z_SYNC_FLUSH) + c.compress(raw) + c.flush())
pieces = [os.urandom(10000) for _ in range(9)]
c = zlib.compressobj(6, zlib.DEFLATED, 31)
body = b''.join(c.compress(p) + c.flush(zlib.Z_FULL_FLUSH) for p in pieces)
open(os.path.join(out, 'empty-final-block.gz'), 'wb').write(body + c.flush(zlib.Z_FINISH))
`;

/** Generates every fixture into a fresh temp dir; call `cleanup()` when done. */
export function makeGzipFixtures(): { dir: string; tar: Buffer; fixtures: GzipFixture[]; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'gzip-fixtures-'));
  try {
    execFileSync('python3', ['-c', PY, dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tarPath = join(dir, 'layer.tar');
    const sh = (cmd: string, args: string[], out: string): void => {
      execFileSync('sh', ['-c', `"$0" "$@" < '${tarPath}' > '${join(dir, out)}'`, cmd, ...args]);
    };
    sh('gzip', ['-1', '-n', '-c'], 'gzip-1.gz');
    sh('gzip', ['-6', '-n', '-c'], 'gzip-6.gz');
    sh('gzip', ['-9', '-n', '-c'], 'gzip-9.gz');
    sh('pigz', ['-6', '-n', '-c', '-b', '128'], 'pigz.gz');
    const spec: Array<[string, number]> = [
      ['gzip-1.gz', 65536], ['gzip-6.gz', 65536], ['gzip-9.gz', 65536], ['pigz.gz', 65536],
      ['py-fname.gz', 100000], ['hand-header.gz', 32768], ['empty-first-block.gz', 65536], ['empty-final-block.gz', 25000],
    ];
    const fixtures = spec.map(([name, spanSize]) => {
      const path = join(dir, name);
      return { name, path, bytes: readFileSync(path), spanSize };
    });
    return { dir, tar: readFileSync(tarPath), fixtures, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface RunOptions {
  engine: 'native' | 'js';
  spanSize: number;
  /** Input chunk size (default: all at once). */
  chunk?: number;
  outputChunkSize?: number;
  /** Passed to end(); default: the uncompressed size. */
  archiveSize?: number;
  /** Calls limitCheckpoints(limit) as soon as the output reaches it, from inside onData. */
  limit?: number;
}

/** Runs a GzipCheckpointer over `bytes` and returns its result and the concatenated output. */
export function runCheckpointer(bytes: Uint8Array, opts: RunOptions): { result: GzipZinfoResult; output: Buffer } {
  const c = new GzipCheckpointer({ spanSize: opts.spanSize, engine: opts.engine, outputChunkSize: opts.outputChunkSize });
  const parts: Buffer[] = [];
  let total = 0;
  let limited = false;
  const onData = (out: Uint8Array): void => {
    parts.push(Buffer.from(out));
    total += out.length;
    if (opts.limit !== undefined && !limited && total >= opts.limit) {
      limited = true;
      c.limitCheckpoints(opts.limit);
    }
  };
  const step = opts.chunk ?? bytes.length;
  for (let p = 0; p < bytes.length; p += step) c.write(bytes.subarray(p, Math.min(p + step, bytes.length)), onData);
  const result = c.end(opts.archiveSize ?? total);
  return { result, output: Buffer.concat(parts) };
}

/** Span digests computed directly from the whole blob by the §6 formula. */
export function digestsFromBlob(blob: Uint8Array, checkpoints: readonly Checkpoint[]): string[] {
  return checkpoints.map((cp, i) => {
    const start = cp.in - (cp.bits ? 1 : 0);
    const end = i + 1 < checkpoints.length ? checkpoints[i + 1]!.in : blob.length;
    return `sha256:${createHash('sha256').update(blob.subarray(start, end)).digest('hex')}`;
  });
}
