/**
 * Unpacks a layer tar (gzip or plain, already digest-verified on disk) into a directory in overlayfs form:
 * the system `tar` extracts it (async spawn: the mounting process must never block its main thread, which
 * serves FUSE) keeping numeric owners, permissions, mtimes and `SCHILY.xattr` records; then a python3
 * pass turns whiteouts into what overlayfs reads: `.wh.NAME` → a char device 0:0 named NAME (unless a
 * real NAME exists in the same directory), `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory.
 * Each touched directory gets its tar mtime back afterwards.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';

const WHITEOUTS_PY = String.raw`
import os, stat, sys
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    names = [n for n in dirs + files if n.startswith('.wh.')]
    if not names:
        continue
    st = os.lstat(d)
    for n in names:
        p = os.path.join(d, n)
        if n == '.wh..wh..opq':
            os.setxattr(d, 'trusted.overlay.opaque', b'y', follow_symlinks=False)
            os.unlink(p)
            continue
        hidden = n[4:]
        if hidden in ('', '.', '..'):
            continue
        wst = os.lstat(p)
        if stat.S_ISDIR(wst.st_mode):
            continue
        os.unlink(p)
        target = os.path.join(d, hidden)
        if not os.path.lexists(target):
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
            os.lchown(target, wst.st_uid, wst.st_gid)
    dirs[:] = [x for x in dirs if not x.startswith('.wh.')]
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
`;

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')}…: ${err.message.split('\n')[0]} ${stderr.slice(0, 500)}`));
      else resolve(stdout);
    });
  });
}

/** Extracts `blobFile` (gzip or plain tar) into `dir` and converts its whiteouts. */
export async function unpackLayer(blobFile: string, dir: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const timeout = opts.timeoutMs ?? 600_000;
  await mkdir(dir, { recursive: true });
  // GNU tar detects gzip itself on extraction; as root it keeps owners and modes (-p, --same-owner).
  await run('tar', ['-x', '-f', blobFile, '-C', dir, '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*'], timeout);
  await run('python3', ['-c', WHITEOUTS_PY, dir], timeout);
}
