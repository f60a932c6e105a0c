/**
 * The few host mount-table operations the snapshotter needs, all asynchronous because the process serves
 * FUSE on its main thread (a synchronous call that touches one of its own mounts would deadlock): read
 * `/proc/self/mounts`, and detach a leftover mount with `umount -l` run as a child process. Tests pass
 * their own `HostMounts` to run without root.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export interface HostMounts {
  /** Mount points at or below `dir`, deepest first. */
  under(dir: string): Promise<string[]>;
  /** Detaches the mount at `path` (lazy unmount). */
  unmount(path: string): Promise<void>;
}

/** Decodes the octal escapes (`\040` for a space) of a /proc/mounts field. */
function unescapeField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

export const linuxHostMounts: HostMounts = {
  async under(dir) {
    const text = await readFile('/proc/self/mounts', 'utf8');
    const out: string[] = [];
    for (const line of text.split('\n')) {
      const field = line.split(' ')[1];
      if (field === undefined) continue;
      const mp = unescapeField(field);
      if (mp === dir || mp.startsWith(`${dir}/`)) out.push(mp);
    }
    return out.sort((a, b) => b.length - a.length);
  },
  async unmount(path) {
    await run('umount', ['-l', path]);
  },
};
