/*
 * soci-proxy native gzip engine: a tiny N-API addon over zlib's inflate, used by
 * src/indexer/gzip/native-engine.ts. It exposes exactly the two primitives of
 * src/indexer/gzip/engine.ts: a block-wise gzip inflater (inflate(Z_BLOCK) run in a C loop until a
 * candidate checkpoint boundary, full output, exhausted input, stream end or an error) and a span
 * inflater (raw inflate primed with the partial byte and the 32 KiB window, soci-format.md §5.3).
 * It is compiled against node's own zlib header and is NOT linked with -lz: the zlib symbols resolve
 * against the node binary, which exports them, when the addon is loaded.
 *
 * Results of blockRun are written into a Float64Array the caller registered at creation, so the hot
 * path allocates nothing: [0]=zlib ret, [1]=input position, [2]=output position, [3]=data_type,
 * [4]=total in, [5]=total out.
 */
#include <node_api.h>
#include "napi_args.h"
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

typedef struct {
  z_stream strm;
  double *state;   /* the registered Float64Array (>= 6 elements) */
  napi_ref stateRef;
  int live;
  double totIn, totOut;
} block_t;

static void block_finalize(napi_env env, void *data, void *hint) {
  block_t *b = (block_t *)data;
  (void)hint;
  if (b->live) inflateEnd(&b->strm);
  if (b->stateRef) napi_delete_reference(env, b->stateRef);
  free(b);
}

static double get_num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

/* blockCreate(state: Float64Array): handle — inflateInit2(31), gzip only. */
static napi_value block_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], handle;
  napi_typedarray_type type;
  void *ptr;
  size_t length, offset;
  napi_value ab;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &type, &length, &ptr, &ab, &offset) != napi_ok ||
      type != napi_float64_array || length < 6) {
    napi_throw_type_error(env, NULL, "blockCreate expects a Float64Array(6)");
    return NULL;
  }
  block_t *b = (block_t *)calloc(1, sizeof(block_t));
  if (!b) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  if (inflateInit2(&b->strm, 31) != Z_OK) { free(b); napi_throw_error(env, NULL, "inflateInit2 failed"); return NULL; }
  b->live = 1;
  b->state = (double *)ptr;
  if (napi_create_reference(env, argv[0], 1, &b->stateRef) != napi_ok ||
      napi_create_external(env, b, block_finalize, NULL, &handle) != napi_ok) {
    inflateEnd(&b->strm);
    free(b);
    napi_throw_error(env, NULL, "blockCreate failed");
    return NULL;
  }
  return handle;
}

/*
 * blockRun(handle, input, inPos, inEnd, output, outPos, outEnd, minOut): void.
 * Loops inflate(Z_BLOCK) and returns as soon as: zlib reports anything but Z_OK (stream end, error,
 * no progress), the output is full, the input is used up, or the stream sits on a non-final block
 * boundary (data_type & 128 set, & 64 clear) with total out >= minOut.
 */
static napi_value block_run(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  block_t *b;
  uint8_t *in, *out;
  size_t inLen, outLen;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8 || napi_get_value_external(env, argv[0], (void **)&b) != napi_ok || !b->live ||
      !get_bytes(env, argv[1], &in, &inLen) || !get_bytes(env, argv[4], &out, &outLen)) {
    napi_throw_type_error(env, NULL, "blockRun: bad arguments");
    return NULL;
  }
  size_t inPos = (size_t)get_num(env, argv[2]), inEnd = (size_t)get_num(env, argv[3]);
  size_t outPos = (size_t)get_num(env, argv[5]), outEnd = (size_t)get_num(env, argv[6]);
  double minOut = get_num(env, argv[7]);
  if (inEnd > inLen || inPos > inEnd || outEnd > outLen || outPos > outEnd) {
    napi_throw_range_error(env, NULL, "blockRun: range out of bounds");
    return NULL;
  }
  z_stream *s = &b->strm;
  int ret = Z_OK;
  for (;;) {
    /* zlib counts are uInt: feed at most 1 GiB per call. */
    size_t ia = inEnd - inPos, oa = outEnd - outPos;
    if (ia > (1u << 30)) ia = 1u << 30;
    if (oa > (1u << 30)) oa = 1u << 30;
    s->next_in = in + inPos;
    s->avail_in = (uInt)ia;
    s->next_out = out + outPos;
    s->avail_out = (uInt)oa;
    ret = inflate(s, Z_BLOCK);
    size_t usedIn = ia - s->avail_in, usedOut = oa - s->avail_out;
    inPos += usedIn;
    outPos += usedOut;
    b->totIn += (double)usedIn;
    b->totOut += (double)usedOut;
    if (ret != Z_OK) break;
    if (inPos == inEnd || outPos == outEnd) break;
    if ((s->data_type & 128) && !(s->data_type & 64) && b->totOut >= minOut) break;
  }
  double *st = b->state;
  st[0] = ret;
  st[1] = (double)inPos;
  st[2] = (double)outPos;
  st[3] = s->data_type;
  st[4] = b->totIn;
  st[5] = b->totOut;
  return NULL;
}

/* blockMessage(handle): string | null — zlib's msg for the last error. */
static napi_value block_message(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  block_t *b;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&b) != napi_ok) return NULL;
  if (!b->live || !b->strm.msg) { napi_get_null(env, &res); return res; }
  CHECK(napi_create_string_utf8(env, b->strm.msg, NAPI_AUTO_LENGTH, &res));
  return res;
}

/* blockClose(handle): frees zlib's state now instead of at GC. */
static napi_value block_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  block_t *b;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&b) != napi_ok) return NULL;
  if (b->live) { inflateEnd(&b->strm); b->live = 0; }
  return NULL;
}

/*
 * inflateSpan(input, bits, window, output): number — raw inflate of input (which starts with the
 * partial byte when bits != 0) after priming and setting the dictionary; fills output and returns
 * the byte count produced, or a negative zlib error code.
 */
static napi_value inflate_span(napi_env env, napi_callback_info info) {
  napi_value res;
  span_args_t a;
  if (!get_span_args(env, info, &a)) return NULL;
  uint8_t *in = a.in, *win = a.win, *out = a.out;
  size_t inLen = a.inLen, outLen = a.outLen;
  int bits = a.bits;
  z_stream s;
  memset(&s, 0, sizeof s);
  int ret = inflateInit2(&s, -15);
  size_t skip = 0;
  if (ret == Z_OK && bits != 0) {
    if (inLen < 1) ret = Z_DATA_ERROR;
    else { ret = inflatePrime(&s, bits, in[0] >> (8 - bits)); skip = 1; }
  }
  if (ret == Z_OK) ret = inflateSetDictionary(&s, win, 32768);
  double produced = ret;
  if (ret == Z_OK) {
    s.next_in = in + skip;
    s.avail_in = (uInt)(inLen - skip);
    s.next_out = out;
    s.avail_out = (uInt)outLen;
    while (s.avail_out > 0) {
      ret = inflate(&s, Z_NO_FLUSH);
      if (ret != Z_OK) break;
    }
    if (ret == Z_OK || ret == Z_STREAM_END || (ret == Z_BUF_ERROR && s.avail_out == 0)) produced = (double)(outLen - s.avail_out);
    else produced = ret < 0 ? ret : Z_DATA_ERROR;
  }
  inflateEnd(&s);
  CHECK(napi_create_double(env, produced, &res));
  return res;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "blockCreate", NULL, block_create, NULL, NULL, NULL, napi_enumerable, NULL },
    { "blockRun", NULL, block_run, NULL, NULL, NULL, napi_enumerable, NULL },
    { "blockMessage", NULL, block_message, NULL, NULL, NULL, napi_enumerable, NULL },
    { "blockClose", NULL, block_close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "inflateSpan", NULL, inflate_span, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_value zv;
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, zlibVersion(), NAPI_AUTO_LENGTH, &zv) == napi_ok)
    napi_set_named_property(env, exports, "zlibVersion", zv);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
