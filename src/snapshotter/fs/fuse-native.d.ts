/** The part of fuse-native@2.2.6's API (a CommonJS module without types) that layer-fs uses. */
declare module 'fuse-native' {
  type Cb<T extends unknown[] = []> = (err: number, ...res: T) => void;
  export interface FuseStat {
    mode: number; uid: number; gid: number; size: number; dev?: number; nlink: number; ino: number; rdev: number;
    blksize?: number; blocks?: number; atime: Date | number; mtime: Date | number; ctime: Date | number;
  }
  export interface FuseOps {
    init?(cb: Cb): void;
    getattr?(path: string, cb: Cb<[FuseStat?]>): void;
    fgetattr?(path: string, fd: number, cb: Cb<[FuseStat?]>): void;
    access?(path: string, mode: number, cb: Cb): void;
    statfs?(path: string, cb: Cb<[Record<string, number>?]>): void;
    readdir?(path: string, cb: Cb<[string[]?, FuseStat[]?]>): void;
    readlink?(path: string, cb: Cb<[string?]>): void;
    open?(path: string, flags: number, cb: Cb<[number?]>): void;
    opendir?(path: string, flags: number, cb: Cb<[number?]>): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    release?(path: string, fd: number, cb: Cb): void;
    releasedir?(path: string, fd: number, cb: Cb): void;
    getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer | null) => void): void;
    listxattr?(path: string, cb: Cb<[string[]?]>): void;
    [op: string]: unknown;
  }
  export interface FuseOptions {
    force?: boolean; mkdir?: boolean; allowOther?: boolean; maxRead?: number; fsname?: string; subtype?: string;
    kernelCache?: boolean; autoCache?: boolean; attrTimeout?: number; entryTimeout?: number; debug?: boolean;
    timeout?: number | false | Record<string, number | false>;
  }
  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static readonly EIO: number;
    static readonly ENOENT: number;
    static readonly EROFS: number;
    static readonly EACCES: number;
    static readonly EINVAL: number;
    static readonly ENODATA: number;
    static readonly ENOTDIR: number;
    static readonly EISDIR: number;
    static readonly ERANGE: number;
  }
}
