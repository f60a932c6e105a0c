/*
 * soci-proxy span inflater over Intel ISA-L (igzip): the same primitive as gzip_engine.c's
 * inflateSpan (soci-format.md §5.3: raw inflate of one span, primed with the partial byte when the
 * checkpoint's bit count is not zero, with the checkpoint's 32 KiB window as dictionary), about twice
 * as fast as zlib's inflate on this kind of data. Only span restore uses it: finding checkpoints needs
 * zlib's Z_BLOCK stops, which ISA-L does not offer, so the indexer keeps gzip_engine.c.
 *
 * Built only when ISA-L's headers are installed (`pkg-config --exists libisal`, Debian libisal-dev);
 * src/indexer/gzip/native-engine.ts falls back to zlib's inflateSpan without it. Results must equal
 * zlib's byte for byte: src/indexer/gzip/span.test.ts restores every span of every fixture with each
 * engine and compares them with gunzip's output.
 */
#include <node_api.h>
#include "napi_args.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <isa-l/igzip_lib.h>

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

/*
 * Returns the number of bytes produced (at most outLen; fewer when the deflate stream ended or the
 * input ran out first), or a negative ISA-L error code (callers only test < 0).
 */
static double span_in(struct inflate_state *s, const uint8_t *in, size_t inLen, int bits, uint8_t *win, uint8_t *out, size_t outLen) {
  isal_inflate_init(s);
  s->crc_flag = ISAL_DEFLATE;
  if (isal_inflate_set_dict(s, win, 32768) != ISAL_DECOMP_OK) return -1;
  size_t skip = 0;
  if (bits != 0) {
    if (inLen < 1) return -1;
    /* zlib's inflatePrime(bits, in[0] >> (8 - bits)): the byte's top `bits` bits, next in the bit buffer. */
    s->read_in = (uint64_t)(in[0] >> (8 - bits));
    s->read_in_length = bits;
    skip = 1;
  }
  s->next_in = (uint8_t *)in + skip;
  s->avail_in = (uint32_t)(inLen - skip);
  s->next_out = out;
  s->avail_out = (uint32_t)outLen;
  for (;;) {
    uint32_t before = s->avail_out, beforeIn = s->avail_in;
    int ret = isal_inflate(s);
    if (ret < 0) return ret;
    if (s->avail_out == 0 || s->block_state == ISAL_BLOCK_FINISH) break;
    if (s->avail_out == before && s->avail_in == beforeIn) break; /* no progress: input used up */
  }
  return (double)(outLen - s->avail_out);
}

/* The state is 85 KiB of tables: allocated per span (a span is megabytes of output), never kept by a thread. */
static double span(const uint8_t *in, size_t inLen, int bits, uint8_t *win, uint8_t *out, size_t outLen) {
  struct inflate_state *s = (struct inflate_state *)malloc(sizeof *s);
  if (!s) return -1;
  double r = span_in(s, in, inLen, bits, win, out, outLen);
  free(s);
  return r;
}

/* inflateSpan(input, bits, window, output): number — as gzip_engine.c's, over ISA-L. */
static napi_value inflate_span(napi_env env, napi_callback_info info) {
  napi_value res;
  span_args_t a;
  if (!get_span_args(env, info, &a)) return NULL;
  CHECK(napi_create_double(env, span(a.in, a.inLen, a.bits, a.win, a.out, a.outLen), &res));
  return res;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "inflateSpan", NULL, inflate_span, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
