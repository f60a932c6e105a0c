/**
 * Tar fixtures for the TOC builder's oracle tests, generated at test time in a temp dir: GNU tar in every
 * format it writes (gnu, posix, ustar, v7; plain and gzip), Python `tarfile` in PAX, GNU and USTAR formats
 * with PAX records, fractional/negative/huge times, big ids, base-256 fields and char/block/fifo members,
 * and the negative ones (GNU sparse, PAX global header). Nothing binary is committed.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, linkSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

function run(cmd: string, args: string[], cwd: string, allowFail = false): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

/** Names the tree must contain, so that a test can check that the fixtures exercise them. */
export const LONG_DIR = 'd'.repeat(150);
export const LONG_FILE = `f${'é'.repeat(60)}${'x'.repeat(80)}.txt`; // > 100 bytes, unicode
export const LONG_TARGET = `${'t'.repeat(120)}/target`;

/** A tree with long names (>100 and >255 bytes), long link targets, unicode, links, whiteouts, odd sizes. */
export function makeTree(root: string): void {
  const t = join(root, 'tree');
  mkdirSync(join(t, 'a/b/c'), { recursive: true });
  mkdirSync(join(t, LONG_DIR), { recursive: true });
  mkdirSync(join(t, 'opaque'), { recursive: true });
  for (const n of [0, 1, 511, 512, 513, 1024, 5000]) writeFileSync(join(t, `a/size-${n}`), Buffer.alloc(n, n % 251));
  writeFileSync(join(t, 'a/b/c/deep.txt'), 'deep\n');
  writeFileSync(join(t, LONG_DIR, LONG_FILE), 'long name\n'); // path > 255 bytes
  writeFileSync(join(t, `${'m'.repeat(120)}.txt`), 'over 100\n');
  writeFileSync(join(t, 'ünïcödé-日本語.txt'), 'unicode\n');
  writeFileSync(join(t, 'empty'), '');
  writeFileSync(join(t, '.wh.gone'), '');
  writeFileSync(join(t, 'opaque/.wh..wh..opq'), '');
  symlinkSync('a/size-1', join(t, 'short-link'));
  symlinkSync(LONG_TARGET, join(t, 'long-link'));
  linkSync(join(t, 'a/size-513'), join(t, 'hard-link'));
}

export interface Fixture {
  label: string;
  bytes: Uint8Array;
}

/** GNU tar archives of the tree; formats that cannot hold some names still write the rest. */
export function gnuTarFixtures(root: string): Fixture[] {
  makeTree(root);
  const out: Fixture[] = [];
  for (const format of ['gnu', 'posix', 'ustar', 'v7']) {
    const file = join(root, `gnutar-${format}.tar`);
    run('tar', [`--format=${format}`, '--sort=name', '-cf', file, 'tree'], root, format === 'ustar' || format === 'v7');
    out.push({ label: `GNU tar --format=${format}`, bytes: readFileSync(file) });
    run('gzip', ['-k', '-n', file], root);
    out.push({ label: `GNU tar --format=${format} | gzip`, bytes: readFileSync(`${file}.gz`) });
  }
  const file = join(root, 'gnutar-posix-times.tar');
  run('tar', ['--format=posix', '--pax-option=mtime:=1700000000.123456789123,atime:=-12.5,comment:=hi', '-cf', file, 'tree/a'], root);
  out.push({ label: 'GNU tar --format=posix with pax-option times', bytes: readFileSync(file) });
  return out;
}

/** GNU sparse archives (old `S` and PAX 1.0) of a file that is one big hole. */
export function sparseFixtures(root: string): Fixture[] {
  const dir = join(root, 'sparse');
  mkdirSync(dir, { recursive: true });
  run('truncate', ['-s', '3M', join(dir, 'holes')], root);
  const out: Fixture[] = [];
  for (const [label, args] of [
    ['GNU tar --sparse --format=gnu', ['--format=gnu']],
    ['GNU tar --sparse --format=posix (1.0)', ['--format=posix', '--sparse-version=1.0']],
    ['GNU tar --sparse --format=posix (0.1)', ['--format=posix', '--sparse-version=0.1']],
  ] as const) {
    const file = join(root, `sparse-${out.length}.tar`);
    run('tar', ['--sparse', ...args, '-cf', file, 'sparse'], root);
    out.push({ label, bytes: readFileSync(file) });
  }
  return out;
}

const PYTHON = String.raw`
import io, sys, tarfile, os
out = sys.argv[1]
def data(n): return bytes((i * 7) % 256 for i in range(n))
def add(tf, name, n=0, **kw):
    ti = tarfile.TarInfo(name)
    ti.size = n
    ti.mtime = kw.pop('mtime', 1700000000)
    for k, v in kw.items(): setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data(n)) if n else None)
def special(tf, long=True):
    add(tf, 'dev/char', type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o20666)
    add(tf, 'dev/block', type=tarfile.BLKTYPE, devmajor=8, devminor=1)
    add(tf, 'dev/fifo', type=tarfile.FIFOTYPE)
    add(tf, 'dir', type=tarfile.DIRTYPE, mode=0o755)
    add(tf, 'dir/link', type=tarfile.SYMTYPE, linkname='../' + 'l' * (150 if long else 50))
    add(tf, 'dir/hard', type=tarfile.LNKTYPE, linkname='dir/file')
with tarfile.open(os.path.join(out, 'py-pax.tar'), 'w', format=tarfile.PAX_FORMAT) as tf:
    add(tf, 'dir/file', 513)
    add(tf, 'xattr', 10, pax_headers={'SCHILY.xattr.user.x': 'value', 'SCHILY.xattr.security.selinux': 'system_u:object_r:x\x00', 'odd.key': 'ünï', 'zz': '', 'ctime': '1.5', 'atime': '1700000000.000000001'})
    add(tf, 'frac', 1, mtime=1700000000.25)
    add(tf, 'frac-long', 1, pax_headers={'mtime': '1700000000.1234567891234'})
    add(tf, 'neg-int', 1, mtime=-5)
    add(tf, 'neg-frac', 1, pax_headers={'mtime': '-1.5'})
    add(tf, 'neg-small', 1, pax_headers={'mtime': '-0.000000001'})
    add(tf, 'far-future', 1, pax_headers={'mtime': '253402300800'})
    add(tf, 'far-past', 1, pax_headers={'mtime': '-62167219201'})
    add(tf, 'year-0', 1, pax_headers={'mtime': '-62167219200'})
    add(tf, 'big-ids', 2, uid=2**40 + 7, gid=2**33, uname='ü' * 40, gname='g')
    add(tf, 'neg-ids', 2, pax_headers={'uid': '-1', 'gid': '-2'})
    add(tf, 'p' * 300, 3)
    add(tf, 'uni-ñ/日本', 4)
    add(tf, 'empty-path-record', 1, pax_headers={'path': ''})
    add(tf, 'regA', 5, type=tarfile.AREGTYPE)
    special(tf)
with tarfile.open(os.path.join(out, 'py-gnu.tar'), 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'g' * 200, 3)
    add(tf, 'big', 3, uid=2**40 + 7, gid=2**21, mtime=-1000)
    add(tf, 'huge-mtime', 1, mtime=8**11 + 5)
    add(tf, 'future', 1, mtime=2**40)
    add(tf, 'link', type=tarfile.SYMTYPE, linkname='k' * 180)
    special(tf)
with tarfile.open(os.path.join(out, 'py-ustar.tar'), 'w', format=tarfile.USTAR_FORMAT) as tf:
    add(tf, ('/'.join(['seg%03d' % i for i in range(25)])) + '/file', 7)
    add(tf, 'dir/file', 511)
    special(tf, False)
with tarfile.open(os.path.join(out, 'py-global.tar'), 'w', format=tarfile.PAX_FORMAT, pax_headers={'comment': 'global'}) as tf:
    add(tf, 'file', 1)
`;

export function pythonFixtures(root: string): Fixture[] {
  const dir = join(root, 'py');
  mkdirSync(dir, { recursive: true });
  const script = join(root, 'gen.py');
  writeFileSync(script, PYTHON);
  run('python3', [script, dir], root);
  return readdirSync(dir).sort().filter((f) => existsSync(join(dir, f))).map((f) => ({ label: `python tarfile ${f}`, bytes: readFileSync(join(dir, f)) }));
}
