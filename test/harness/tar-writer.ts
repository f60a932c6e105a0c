/**
 * A small deterministic tar writer for test layers: ustar headers, PAX extended headers ('x') for paths or
 * link targets that do not fit the ustar fields, and an optional PAX global header ('g') at the start —
 * which is how tests build a layer the indexer must refuse (PAX_GLOBAL_HEADER). Regular files, directories,
 * symlinks and hardlinks; numeric fields are octal, the checksum is the unsigned byte sum with the checksum
 * field read as spaces (POSIX ustar). The archive ends with two zero blocks, no record padding.
 */

export type TarEntry =
  | { type: 'file'; path: string; content: Uint8Array; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'symlink'; path: string; target: string; uid?: number; gid?: number; mtime?: number }
  | { type: 'hardlink'; path: string; target: string; uid?: number; gid?: number; mtime?: number };

export interface TarOptions {
  /** Records of a PAX global extended header written before the first entry. */
  paxGlobal?: Record<string, string>;
  /** Default mtime (seconds) for entries without one; 0 by default, for reproducible bytes. */
  mtime?: number;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  // width includes the terminating NUL
  const s = Math.floor(value).toString(8);
  if (s.length > width - 1) throw new Error(`tar: ${value} does not fit a ${width}-byte octal field`);
  return s.padStart(width - 1, '0') + '\0';
}

function paxRecords(records: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    const bodyLen = Buffer.byteLength(body);
    let len = bodyLen + String(bodyLen).length;
    if (String(len).length + bodyLen !== len) len = bodyLen + String(len).length;
    parts.push(Buffer.from(`${len}${body}`));
  }
  return Buffer.concat(parts);
}

function header(f: { name: string; mode: number; uid: number; gid: number; size: number; mtime: number; typeflag: string; linkname: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  const put = (off: number, len: number, s: string): void => {
    const b = Buffer.from(s, 'utf8');
    if (b.length > len) throw new Error(`tar: field too long: ${s}`);
    b.copy(h, off);
  };
  put(0, 100, f.name);
  put(100, 8, octal(f.mode, 8));
  put(108, 8, octal(f.uid, 8));
  put(116, 8, octal(f.gid, 8));
  put(124, 12, octal(f.size, 12));
  put(136, 12, octal(f.mtime, 12));
  put(148, 8, '        ');
  put(156, 1, f.typeflag);
  put(157, 100, f.linkname);
  put(257, 6, 'ustar\0');
  put(263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

function padded(data: Uint8Array): Buffer[] {
  const rem = data.length % BLOCK;
  return rem === 0 ? [Buffer.from(data)] : [Buffer.from(data), Buffer.alloc(BLOCK - rem)];
}

function fits(s: string, len: number): boolean {
  return Buffer.byteLength(s) <= len && /^[\x20-\x7e]*$/.test(s);
}

/** Serializes the entries, in order, into one tar archive. */
export function writeTar(entries: TarEntry[], opts: TarOptions = {}): Buffer {
  const out: Buffer[] = [];
  const defMtime = opts.mtime ?? 0;
  if (opts.paxGlobal) {
    const body = paxRecords(opts.paxGlobal);
    out.push(header({ name: 'pax_global_header', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: defMtime, typeflag: 'g', linkname: '' }));
    out.push(...padded(body));
  }
  for (const e of entries) {
    let name = e.path.replace(/^\/+/, '');
    if (e.type === 'dir' && !name.endsWith('/')) name += '/';
    const linkname = e.type === 'symlink' || e.type === 'hardlink' ? e.target : '';
    const content = e.type === 'file' ? e.content : new Uint8Array(0);
    const ext: Record<string, string> = {};
    if (!fits(name, 100)) ext.path = name;
    if (!fits(linkname, 100)) ext.linkpath = linkname;
    const common = { uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: e.mtime ?? defMtime };
    if (Object.keys(ext).length > 0) {
      const body = paxRecords(ext);
      const short = `PaxHeaders/${name.replace(/\/$/, '').split('/').pop() ?? 'x'}`.slice(0, 99);
      out.push(header({ ...common, name: short, mode: 0o644, size: body.length, typeflag: 'x', linkname: '' }));
      out.push(...padded(body));
    }
    const typeflag = { file: '0', dir: '5', symlink: '2', hardlink: '1' }[e.type];
    const mode = e.type === 'file' ? e.mode ?? 0o644 : e.type === 'dir' ? e.mode ?? 0o755 : e.type === 'hardlink' ? 0o644 : 0o777;
    out.push(
      header({
        ...common,
        name: ext.path ? Buffer.from(name).subarray(0, 100).toString('latin1').replace(/[^\x20-\x7e]/g, '_') : name,
        mode,
        size: content.length,
        typeflag,
        linkname: ext.linkpath ? '' : linkname,
      }),
    );
    if (content.length > 0) out.push(...padded(content));
  }
  out.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(out);
}
