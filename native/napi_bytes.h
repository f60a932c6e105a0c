/*
 * The one N-API argument helper the span/gzip addons share: a Uint8Array's data pointer and length.
 * Header-only (static inline) because each addon is its own shared object.
 */
#ifndef SOCI_NAPI_BYTES_H
#define SOCI_NAPI_BYTES_H
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

#endif
