/**
 * Root filesystems for images that must run programs. `hostBinariesRootfs` copies host binaries and the
 * shared libraries `ldd` names into a dir (merged-/usr layout: bin, lib, lib64, sbin are symlinks into
 * usr/), which is enough for /bin/sh or python3.11 under runc. `debianRootfs` runs debootstrap minbase
 * bookworm (needs the `debootstrap` package and the Debian mirror, ~35 s, test-environment.md §4.1) once
 * and caches the result under the repo's ignored `.cache/fixtures`, keyed by a version string.
 */
import { copyFileSync, existsSync, lstatSync, mkdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, chmodSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from './process.js';

/** The repo's ignored fixture cache dir. */
export const FIXTURE_CACHE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '.cache', 'fixtures');

function copyPath(src: string, root: string): void {
  const dest = join(root, src);
  if (existsSync(dest) || (() => { try { lstatSync(dest); return true; } catch { return false; } })()) return;
  mkdirSync(dirname(dest), { recursive: true });
  const st = lstatSync(src);
  if (st.isSymbolicLink()) {
    const target = readlinkSync(src);
    symlinkSync(target, dest);
    copyPath(resolve(dirname(src), target), root);
  } else if (st.isDirectory()) {
    mkdirSync(dest, { recursive: true });
  } else {
    copyFileSync(src, dest);
    chmodSync(dest, st.mode & 0o7777);
  }
}

/** Host path with its directory part resolved (so /bin/sh becomes /usr/bin/sh on merged-/usr hosts). */
function canonicalDir(p: string): string {
  return join(resolvePath(dirname(p)), p.split('/').pop() ?? '');
}

function resolvePath(p: string): string {
  try {
    return lstatSync(p).isSymbolicLink() ? resolvePath(resolve(dirname(p), readlinkSync(p))) : p === '/' ? p : join(resolvePath(dirname(p)), p.split('/').pop() ?? '');
  } catch {
    return p;
  }
}

/** Copies `binaries` (and `extraPaths`, files or whole dirs) plus every library ldd lists into `dest`. */
export async function hostBinariesRootfs(binaries: string[], dest: string, extraPaths: string[] = []): Promise<string> {
  for (const d of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'tmp', 'etc', 'proc', 'sys', 'dev']) mkdirSync(join(dest, d), { recursive: true });
  for (const [link, target] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']] as const) {
    if (!existsSync(join(dest, link))) symlinkSync(target, join(dest, link));
  }
  const libs = new Set<string>();
  for (const bin of binaries) {
    const out = (await runCommand('ldd', [bin], { check: false })).stdout;
    for (const m of out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) if (m[1]) libs.add(m[1]);
  }
  for (const p of [...binaries, ...libs]) copyPath(canonicalDir(p), dest);
  for (const p of extraPaths) {
    const src = canonicalDir(p);
    if (statSync(src).isDirectory()) {
      mkdirSync(join(dest, dirname(src)), { recursive: true });
      await runCommand('cp', ['-a', '--no-preserve=ownership', src, join(dest, dirname(src)) + '/']);
    } else copyPath(src, dest);
  }
  return dest;
}

/** True when debootstrap is installed. */
export function hasDebootstrap(): boolean {
  return existsSync('/usr/sbin/debootstrap');
}

/** A debootstrap minbase bookworm rootfs, built once and cached under FIXTURE_CACHE/<version>/rootfs. */
export async function debianRootfs(version = 'bookworm-minbase-v1', mirror = 'http://deb.debian.org/debian'): Promise<string> {
  const dir = join(FIXTURE_CACHE, `debian-${version}`);
  const rootfs = join(dir, 'rootfs');
  if (existsSync(join(rootfs, 'etc', 'debian_version'))) return rootfs;
  if (!hasDebootstrap()) throw new Error('debianRootfs: debootstrap is not installed (apt-get install debootstrap)');
  const building = join(dir, `building-${process.pid}`);
  rmSync(building, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await runCommand('debootstrap', ['--variant=minbase', 'bookworm', building, mirror], { timeoutMs: 600_000 });
  for (const sub of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    await runCommand('find', [join(building, sub), '-mindepth', '1', '-maxdepth', '1', '-name', '*.deb', '-delete'], { check: false });
  }
  await runCommand('sh', ['-c', 'rm -rf "$1"/var/lib/apt/lists/*', 'sh', building], { check: false });
  renameSync(building, rootfs);
  return rootfs;
}
