# Native gzip checkpoint engine (native/gzip_engine.c). Built by scripts/build-native.mjs with
# `node-gyp rebuild --nodedir=/usr`. zlib comes from node's own headers; the symbols resolve against
# the node binary at load time, so there is deliberately no -lz here.
{
  "targets": [
    {
      "target_name": "soci_gzip",
      "sources": ["native/gzip_engine.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
