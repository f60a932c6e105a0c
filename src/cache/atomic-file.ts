/**
 * Atomic file writes for the disk tiers: the bytes go to a uniquely named temp file under `<root>/tmp`
 * (same filesystem as the target), optionally fsync'd, then `rename(2)`d over the target. Readers of the
 * target path therefore see the old file, the whole new file, or nothing — never a prefix — and
 * concurrent writers of the same path each rename a complete file (for content-addressed paths they are
 * identical). Temp files live outside the addressed directories, so they are never visible as entries;
 * leftovers of a crash are removed by `sweepTemp` at open and gc.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export async function writeFileAtomic(tmpDir: string, target: string, bytes: Uint8Array | string, fsync: boolean): Promise<void> {
  const tmp = join(tmpDir, `${randomBytes(8).toString('hex')}.${process.pid}.tmp`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(bytes);
    if (fsync) await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(tmp, { force: true });
      throw err;
    }
    // The target's directory vanished (e.g. removed by hand): recreate it once.
    await mkdir(dirname(target), { recursive: true });
    await rename(tmp, target).catch(async (e) => {
      await rm(tmp, { force: true });
      throw e;
    });
  }
}

/** Removes temp files older than `olderThanMs` (a live writer's file is younger). */
export async function sweepTemp(tmpDir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    const p = join(tmpDir, name);
    const st = await stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs >= olderThanMs) {
      await rm(p, { force: true });
      removed++;
    }
  }
  return removed;
}
