/**
 * The pure-JS gzip engine over pako 2.2's low-level inflate ('pako/lib/zlib/inflate.js'), used when
 * the native addon is not built. It runs the same Z_BLOCK loop as native/gzip_engine.c (contract in
 * engine.ts). pako has no inflatePrime, so a span is primed by setting the inflate state's bit buffer
 * (`state.hold`, `state.bits`) right after inflateInit2(−15), which is what inflatePrime does on an
 * empty bit buffer (soci-format.md §5.3); span.test.ts checks it restores every span exactly.
 */
import pakoInflate from 'pako/lib/zlib/inflate.js';
import ZStream from 'pako/lib/zlib/zstream.js';
import { ST_DATA_TYPE, ST_IN_POS, ST_LENGTH, ST_OUT_POS, ST_RET, ST_TOTAL_IN, ST_TOTAL_OUT, Z_BLOCK_FLUSH, Z_DATA_ERROR, Z_OK, Z_STREAM_END, type BlockInflater, type GzipEngine } from './engine.js';

const Z_NO_FLUSH = 0;
const MAX_CALL = 1 << 30;

class JsBlockInflater implements BlockInflater {
  readonly state = new Float64Array(ST_LENGTH);
  #strm = new ZStream();
  #totIn = 0;
  #totOut = 0;

  constructor() {
    if (pakoInflate.inflateInit2(this.#strm, 31) !== Z_OK) throw new Error('pako inflateInit2 failed');
  }

  run(input: Uint8Array, inPos: number, inEnd: number, output: Uint8Array, outPos: number, outEnd: number, minOut: number): void {
    const s = this.#strm;
    s.input = input;
    s.output = output;
    let ret = Z_OK;
    for (;;) {
      const ia = Math.min(inEnd - inPos, MAX_CALL);
      const oa = Math.min(outEnd - outPos, MAX_CALL);
      s.next_in = inPos;
      s.avail_in = ia;
      s.next_out = outPos;
      s.avail_out = oa;
      ret = pakoInflate.inflate(s, Z_BLOCK_FLUSH);
      const usedIn = ia - s.avail_in;
      const usedOut = oa - s.avail_out;
      inPos += usedIn;
      outPos += usedOut;
      this.#totIn += usedIn;
      this.#totOut += usedOut;
      if (ret !== Z_OK) break;
      if (inPos === inEnd || outPos === outEnd) break;
      if ((s.data_type & 128) !== 0 && (s.data_type & 64) === 0 && this.#totOut >= minOut) break;
    }
    s.input = null;
    s.output = null;
    const st = this.state;
    st[ST_RET] = ret;
    st[ST_IN_POS] = inPos;
    st[ST_OUT_POS] = outPos;
    st[ST_DATA_TYPE] = s.data_type;
    st[ST_TOTAL_IN] = this.#totIn;
    st[ST_TOTAL_OUT] = this.#totOut;
  }

  message(): string | undefined {
    return this.#strm.msg || undefined;
  }

  close(): void {
    pakoInflate.inflateEnd(this.#strm);
  }
}

function inflateSpan(input: Uint8Array, bits: number, window: Uint8Array, output: Uint8Array): number {
  const s = new ZStream();
  let ret = pakoInflate.inflateInit2(s, -15);
  if (ret !== Z_OK || s.state === null) return ret < 0 ? ret : Z_DATA_ERROR;
  let skip = 0;
  if (bits !== 0) {
    if (input.length < 1 || bits < 0 || bits > 7) return Z_DATA_ERROR;
    s.state.hold = input[0]! >> (8 - bits);
    s.state.bits = bits;
    skip = 1;
  }
  ret = pakoInflate.inflateSetDictionary(s, window);
  if (ret !== Z_OK) return ret;
  s.input = input;
  s.next_in = skip;
  s.avail_in = input.length - skip;
  s.output = output;
  s.next_out = 0;
  s.avail_out = output.length;
  while (s.avail_out > 0) {
    ret = pakoInflate.inflate(s, Z_NO_FLUSH);
    if (ret !== Z_OK) break;
  }
  pakoInflate.inflateEnd(s);
  if (ret === Z_OK || ret === Z_STREAM_END || s.avail_out === 0) return output.length - s.avail_out;
  return ret < 0 ? ret : Z_DATA_ERROR;
}

export const jsEngine: GzipEngine = {
  name: 'js',
  createBlockInflater: () => new JsBlockInflater(),
  inflateSpan,
};
