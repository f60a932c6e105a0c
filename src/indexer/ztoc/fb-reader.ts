/**
 * A bounds-checked flatbuffer table reader. The npm `flatbuffers` ByteBuffer reads past the end of a
 * damaged buffer as zeros instead of failing; zTOCs come from registries, so every offset here is checked
 * against the buffer before it is followed, and any violation throws `ZtocFormatError` with the byte
 * position. Only what the zTOC and TarZinfo schemas need: scalar fields, strings, byte vectors, vectors of
 * tables or strings, and sub-tables (soci-format.md §4.1: no file identifier, no size prefix).
 */

/** A zTOC or TarZinfo that cannot be decoded or breaks a reader rule (soci-format.md §4.2). */
export class ZtocFormatError extends Error {
  readonly code = 'ZTOC_INVALID' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ZtocFormatError';
  }
}

const utf8 = new TextDecoder('utf-8');

/**
 * Where a read happens, for error messages only. Kept as parts (a base name, an element index, a field id,
 * a constant tag) and joined only when something is wrong: building a label per field read cost a third
 * of the decode time of a large zTOC.
 */
function label(what: string, elem: number, field: number, tag: string): string {
  return `${what}${elem >= 0 ? `[${elem}]` : ''}${field >= 0 ? ` field ${field}` : ''}${tag}`;
}

export class FbTable {
  readonly #buf: FbBuffer;
  readonly #pos: number;
  readonly #vt: number;
  readonly #vtSize: number;
  readonly #what: string;
  readonly #elem: number;

  constructor(buf: FbBuffer, pos: number, what: string, elem = -1) {
    this.#buf = buf;
    this.#pos = pos;
    this.#what = what;
    this.#elem = elem;
    this.#vt = pos - buf.i32(pos, what, elem, -1, ' vtable offset');
    this.#vtSize = buf.u16(this.#vt, what, elem, -1, ' vtable size');
    if (this.#vtSize < 4 || this.#vtSize % 2 !== 0) throw new ZtocFormatError(`${label(what, elem, -1, '')}: bad vtable size ${this.#vtSize}`);
    buf.check(this.#vt, this.#vtSize, what, elem, -1, ' vtable');
  }

  /** Absolute position of field `id`, or undefined when absent. */
  #field(id: number): number | undefined {
    const slot = 4 + 2 * id;
    if (slot + 2 > this.#vtSize) return undefined;
    const off = this.#buf.u16(this.#vt + slot, this.#what, this.#elem, id);
    return off === 0 ? undefined : this.#pos + off;
  }

  int8(id: number, dflt: number): number {
    const p = this.#field(id);
    return p === undefined ? dflt : this.#buf.i8(p, this.#what, this.#elem, id);
  }

  int32(id: number, dflt: number): number {
    const p = this.#field(id);
    return p === undefined ? dflt : this.#buf.i32(p, this.#what, this.#elem, id);
  }

  uint32(id: number, dflt: number): number {
    const p = this.#field(id);
    return p === undefined ? dflt : this.#buf.u32(p, this.#what, this.#elem, id);
  }

  int64(id: number, dflt: bigint): bigint {
    const p = this.#field(id);
    return p === undefined ? dflt : this.#buf.i64(p, this.#what, this.#elem, id);
  }

  /** A string field as bytes, or undefined when absent (Go returns nil, i.e. ""). */
  bytes(id: number): Uint8Array | undefined {
    const p = this.#field(id);
    if (p === undefined) return undefined;
    return this.#buf.vectorBytes(this.#buf.deref(p, this.#what, this.#elem, id), 1, this.#what, this.#elem, id);
  }

  string(id: number): string {
    const p = this.#field(id);
    return p === undefined ? '' : this.#buf.stringAt(this.#buf.deref(p, this.#what, this.#elem, id), this.#what, this.#elem, id);
  }

  table(id: number, what: string): FbTable | undefined {
    const p = this.#field(id);
    return p === undefined ? undefined : new FbTable(this.#buf, this.#buf.deref(p, what), what);
  }

  /** Positions of the elements of a vector of offsets (tables or strings), dereferenced. */
  offsets(id: number, what: string, max: number): number[] {
    const p = this.#field(id);
    if (p === undefined) return [];
    const v = this.#buf.deref(p, what);
    const n = this.#buf.u32(v, what, -1, -1, ' length');
    if (n > max) throw new ZtocFormatError(`${what}: ${n} elements, more than ${max}`);
    this.#buf.check(v + 4, n * 4, what);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.#buf.deref(v + 4 + 4 * i, what, i);
    return out;
  }

  tablesAt(id: number, what: string, max: number): FbTable[] {
    return this.offsets(id, what, max).map((p, i) => new FbTable(this.#buf, p, what, i));
  }

  stringsAt(id: number, what: string, max: number): string[] {
    return this.offsets(id, what, max).map((p, i) => this.#buf.stringAt(p, what, i));
  }
}

export class FbBuffer {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #length: number;
  /** The same bytes as a Buffer, for `toString('latin1')` (no view object per string). */
  readonly #latin1: Buffer;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#length = bytes.length;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  check(pos: number, len: number, what: string, elem = -1, field = -1, tag = ''): void {
    if (pos < 0 || len < 0 || pos + len > this.#length || !Number.isInteger(pos)) {
      throw new ZtocFormatError(`${label(what, elem, field, tag)}: bytes [${pos}, ${pos + len}) outside the ${this.#bytes.length}-byte buffer`);
    }
  }

  i8(p: number, what: string, elem = -1, field = -1, tag = ''): number {
    this.check(p, 1, what, elem, field, tag);
    return this.#view.getInt8(p);
  }
  u16(p: number, what: string, elem = -1, field = -1, tag = ''): number {
    this.check(p, 2, what, elem, field, tag);
    return this.#view.getUint16(p, true);
  }
  i32(p: number, what: string, elem = -1, field = -1, tag = ''): number {
    this.check(p, 4, what, elem, field, tag);
    return this.#view.getInt32(p, true);
  }
  u32(p: number, what: string, elem = -1, field = -1, tag = ''): number {
    this.check(p, 4, what, elem, field, tag);
    return this.#view.getUint32(p, true);
  }
  i64(p: number, what: string, elem = -1, field = -1, tag = ''): bigint {
    this.check(p, 8, what, elem, field, tag);
    return this.#view.getBigInt64(p, true);
  }

  /** Follow the uoffset stored at `p`. */
  deref(p: number, what: string, elem = -1, field = -1): number {
    return p + this.u32(p, what, elem, field);
  }

  /**
   * The string (a byte vector) at `v`, decoded as UTF-8 exactly as `TextDecoder` does (bad sequences
   * become U+FFFD). Pure ASCII, nearly every name in a layer, takes a fast path: latin1 is identical to
   * UTF-8 below 0x80 and needs neither a view object nor the decoder's checks (a third of a large zTOC's
   * decode time went there).
   */
  stringAt(v: number, what: string, elem = -1, field = -1): string {
    const n = this.u32(v, what, elem, field, ' length');
    const from = v + 4;
    this.check(from, n, what, elem, field);
    const b = this.#bytes;
    const to = from + n;
    for (let i = from; i < to; i++) if ((b[i] as number) > 0x7f) return utf8.decode(b.subarray(from, to));
    return this.#latin1.toString('latin1', from, to);
  }

  /** The element bytes of the vector at `v` (length prefix, then `n * elemSize` bytes). */
  vectorBytes(v: number, elemSize: number, what: string, elem = -1, field = -1): Uint8Array {
    const n = this.u32(v, what, elem, field, ' length');
    this.check(v + 4, n * elemSize, what, elem, field);
    return this.#bytes.subarray(v + 4, v + 4 + n * elemSize);
  }

  root(what: string): FbTable {
    return new FbTable(this, this.deref(0, what, -1, -1), what);
  }
}
