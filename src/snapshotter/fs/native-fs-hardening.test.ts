/**
 * Regression tests for the native FUSE server's hardening (native/fuse_*.c), driving the addon directly on
 * real FUSE mounts: malformed tables (a name without its NUL terminator, a NaN file size, descending span
 * starts) are refused at mount instead of being served, and a JS reply with an errno outside 1..511 (which
 * the kernel refuses without answering, so the reader hung until abort) reaches the reader as EIO.
 * Needs root and /dev/fuse; the reader runs in a child process so this process stays free to answer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileMetadata } from '../../indexer/types.js';
import { buildLayerTree } from './layer-tree.js';
import { nativeFuseAvailable, serializeTree, type NativeTable } from './native-fs.js';

const skip = process.getuid?.() !== 0 || !existsSync('/dev/fuse') ? 'needs root and /dev/fuse (skipped)'
  : !nativeFuseAvailable() ? 'build/Release/soci_fuse.node missing (skipped)' : false;

interface Addon {
  mount(o: Record<string, unknown>): object;
  unmount(h: object): Promise<void>;
  replyError(h: object, token: number, errno: number): boolean;
  setDevice(h: object, dev: number): void;
}

function entry(name: string, type: FileMetadata['type'], extra: Partial<FileMetadata> = {}): FileMetadata {
  return {
    name, type, uncompressedOffset: 0, uncompressedSize: 0, linkname: '', mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0,
    uname: '', gname: '', modTime: '2023-11-14T22:13:20Z', devmajor: 0, devminor: 0, xattrs: [], ...extra,
  };
}

const mounted = (p: string): boolean => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === p);

/** A fresh copy of a small table: /f (100 B regular file at tar offset 0), /l -> f. */
function table(): NativeTable {
  const t = serializeTree(buildLayerTree([entry('f', 'reg', { uncompressedSize: 100 }), entry('l', 'symlink', { linkname: 'f' })]));
  return { ...t, nodes: t.nodes.slice(), dirents: t.dirents.slice(), xattrs: t.xattrs.slice(), strings: t.strings.slice() };
}

describe('native FUSE server hardening', { skip }, () => {
  let dir = '';
  let a: Addon;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'soci-native-hard-'));
    a = createRequire(import.meta.url)('../../../build/Release/soci_fuse.node') as Addon;
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const base = (mp: string, t: NativeTable, onRead: (...x: number[]) => void = () => undefined): Record<string, unknown> => ({
    mountpoint: mp, options: 'ro,subtype=soci,fsname=soci-hard', ...t, cacheSeconds: 0, listPrefetchBytes: 0, onRead,
  });

  test('malformed tables are refused at mount, nothing is mounted', async () => {
    const cases: Array<[string, (t: NativeTable) => Record<string, unknown> | void]> = [
      ['dirent name without its NUL', (t) => {
        const at = t.dirents[1] as number, len = t.dirents[2] as number;
        t.strings[at + len] = 0x78;
      }],
      ['NaN file size', (t) => {
        const f64 = new Float64Array(t.nodes.buffer, t.nodes.byteOffset, t.nodes.byteLength / 8);
        for (let i = 1; i * 80 < t.nodes.byteLength; i++) if (((new Uint32Array(t.nodes.buffer, t.nodes.byteOffset + i * 80, 20)[6] as number) & 0o170000) === 0o100000) f64[i * 10] = NaN;
      }],
      ['descending span starts', () => {
        const content = join(dir, 'content');
        writeFileSync(content, Buffer.alloc(200));
        return { contentPath: content, spanStarts: new Float64Array([0, 150, 100]), present: new Uint8Array(2) };
      }],
    ];
    for (const [name, corrupt] of cases) {
      const mp = join(dir, `bad-${name.replace(/\W+/g, '-')}`);
      mkdirSync(mp, { recursive: true });
      const t = table();
      const extra = corrupt(t) ?? {};
      let h: object | undefined;
      try {
        h = a.mount({ ...base(mp, t), ...extra });
      } catch (err) {
        assert.match((err as Error).message, /^mount: /, name);
      }
      if (h !== undefined) {
        a.setDevice(h, (await stat(mp)).dev);
        await a.unmount(h);
      }
      assert.equal(h, undefined, `${name}: mounted`);
      assert.equal(mounted(mp), false, name);
    }
  });

  test('replyError with an errno the kernel refuses (600) reaches the reader as EIO, not a hang', async () => {
    const mp = join(dir, 'errno');
    mkdirSync(mp, { recursive: true });
    let h: object | undefined;
    const seen: number[] = [];
    h = a.mount(base(mp, table(), (token) => {
      seen.push(token);
      setImmediate(() => a.replyError(h as object, token, 600));
    }));
    try {
      a.setDevice(h, (await stat(mp)).dev);
      const py = 'import sys,errno\ntry:\n  open(sys.argv[1],"rb").read(); print("ok")\nexcept OSError as e: print(errno.errorcode[e.errno])';
      const out = await new Promise<string>((resolve) => execFile('python3', ['-c', py, join(mp, 'f')], { timeout: 8000 }, (e, o) => resolve(e ? `failed: ${e.message}` : o.trim())));
      assert.equal(out, 'EIO');
      assert.ok(seen.length >= 1);
    } finally {
      await a.unmount(h);
    }
    assert.equal(mounted(mp), false);
  });
});
