/*
 * The N-API argument helpers the gzip engine and the ISA-L span inflater share: a Uint8Array's data, and
 * the argument contract of both addons' inflateSpan(input, bits, window, output).
 * Header-only (static inline) because each addon is its own shared object.
 */
#ifndef SOCI_NAPI_ARGS_H
#define SOCI_NAPI_ARGS_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* 1 with data and len set when `v` is a Uint8Array (any view of any buffer), else 0. */
static inline int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  void *ptr;
  size_t length, offset;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = (uint8_t *)ptr;
  *len = length;
  return 1;
}

typedef struct {
  uint8_t *in, *win, *out;
  size_t inLen, outLen;
  int bits;
} span_args_t;

/*
 * inflateSpan's arguments: input (at most 1 GiB), bits (an integer 0..7: the checkpoint's bit count; a
 * zinfo blob never holds another), a 32 KiB window and output (at most 1 GiB). 1 when they are that,
 * else 0 with a TypeError thrown.
 */
static inline int get_span_args(napi_env env, napi_callback_info info, span_args_t *a) {
  size_t argc = 4, winLen = 0;
  napi_value argv[4];
  double bits = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || !get_bytes(env, argv[0], &a->in, &a->inLen) ||
      napi_get_value_double(env, argv[1], &bits) != napi_ok || !(bits >= 0 && bits <= 7) || bits != (double)(int)bits ||
      !get_bytes(env, argv[2], &a->win, &winLen) || !get_bytes(env, argv[3], &a->out, &a->outLen) || winLen != 32768 ||
      a->inLen > (1u << 30) || a->outLen > (1u << 30)) {
    napi_throw_type_error(env, NULL, "inflateSpan: bad arguments");
    return 0;
  }
  a->bits = (int)bits;
  return 1;
}

#endif
