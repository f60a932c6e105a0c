# Native addons, built by scripts/build-native.mjs with `node-gyp rebuild --nodedir=/usr`.
# soci_gzip (native/gzip_engine.c): zlib comes from node's own headers; the symbols resolve against the
# node binary at load time, so there is deliberately no -lz here.
# soci_sendfile (native/sendfile.c): zero-copy blob serving for the proxy (src/proxy/native-sendfile.ts).
# soci_isal (native/isal_span.c): span restore over ISA-L's inflate, built only when `pkg-config --exists libisal`
# (Debian libisal-dev); without it spans are inflated by soci_gzip's zlib.
# soci_fuse (native/fuse_layer.c + fuse_{table,ops,read,session}.c, private header fuse_layer.h): the low-level
# libfuse3 layer server; built only when
# `pkg-config --exists fuse3` succeeds, so a machine without libfuse3-dev still gets soci_gzip.
{
  "variables": {
    "have_fuse3": "<!(pkg-config --exists fuse3 && echo 1 || echo 0)",
    "have_isal": "<!(pkg-config --exists libisal && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "soci_gzip",
      "sources": ["native/gzip_engine.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "soci_sendfile",
      "sources": ["native/sendfile.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ],
  "conditions": [
    ["have_fuse3==1", {
      "targets": [
        {
          "target_name": "soci_fuse",
          "sources": ["native/fuse_layer.c", "native/fuse_table.c", "native/fuse_ops.c", "native/fuse_read.c", "native/fuse_session.c"],
          "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
          "defines": ["NAPI_VERSION=8"],
          "libraries": ["<!@(pkg-config --libs fuse3)"]
        }
      ]
    }],
    ["have_isal==1", {
      "targets": [
        {
          "target_name": "soci_isal",
          "sources": ["native/isal_span.c"],
          "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "defines": ["NAPI_VERSION=8"],
          "libraries": ["<!@(pkg-config --libs libisal)"]
        }
      ]
    }]
  ]
}
