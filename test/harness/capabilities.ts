/**
 * What this machine can run, for suites that need root, /dev/fuse, containerd and a loadable fuse-native:
 * one probe, one skip reason, shared by every suite that mounts layers under containerd.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const have = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** A skip reason (string) when containerd + FUSE suites cannot run here, else false. */
export function containerdFuseSkip(root: string, cli: string): string | false {
  const canRun = process.getuid?.() === 0 && existsSync('/dev/fuse') && ['containerd', 'runc', 'ctr', 'ctr-remote'].every(have);
  if (!canRun) return 'needs root, /dev/fuse, containerd, runc, ctr and ctr-remote (skipped)';
  const probe = spawnSync(process.execPath, ['-e', "require('fuse-native')"], { cwd: root, encoding: 'utf8' });
  if (probe.status !== 0) return `fuse-native does not load: ${probe.stderr.slice(0, 200)} (skipped)`;
  if (!existsSync(cli)) return 'run `npm run build` first (dist/cli.js missing)';
  return false;
}
