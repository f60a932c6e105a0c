/*
 * Test oracle for src/indexer/gzip: computes a gzip file's checkpoint blob independently, over the
 * system zlib, in the style of zlib's examples/zran.c, by the rules of soci-format.md §5.2 plus the
 * proxy's refinements (no duplicate `out`; no trailing checkpoint with no output after it). Writes the
 * v2 blob (§5.1) to stdout.
 *   gcc -O2 -o zran-checkpoints zran-checkpoints.c -lz && ./zran-checkpoints FILE SPAN_SIZE > blob
 * Exit status: 0 ok, 1 usage/IO, 2 inflate error or truncated stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <zlib.h>

#define WIN 32768

typedef struct { int64_t in, out; int bits; unsigned char window[WIN]; } point_t;

static void put64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s FILE SPAN_SIZE\n", argv[0]); return 1; }
  int64_t span = strtoll(argv[2], NULL, 10);
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror(argv[1]); return 1; }
  point_t *pts = NULL;
  size_t npts = 0, cap = 0;
  unsigned char inbuf[7000], ring[WIN];  /* odd input size on purpose */
  memset(ring, 0, sizeof ring);
  z_stream s;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, 47) != Z_OK) return 2;
  int64_t totin = 0, totout = 0, last = 0;
  int ret = Z_OK;
  s.avail_out = 0;
  do {
    if (s.avail_in == 0) {
      s.avail_in = (uInt)fread(inbuf, 1, sizeof inbuf, f);
      if (s.avail_in == 0) { fprintf(stderr, "truncated\n"); return 2; }
      s.next_in = inbuf;
    }
    do {
      if (s.avail_out == 0) { s.avail_out = WIN; s.next_out = ring; }
      totin += s.avail_in;
      totout += s.avail_out;
      ret = inflate(&s, Z_BLOCK);
      totin -= s.avail_in;
      totout -= s.avail_out;
      if (ret == Z_NEED_DICT || ret == Z_MEM_ERROR || ret == Z_DATA_ERROR) { fprintf(stderr, "inflate: %s\n", s.msg ? s.msg : "error"); return 2; }
      if (ret == Z_STREAM_END) break;
      if ((s.data_type & 128) && !(s.data_type & 64) && (totout == 0 || totout - last > span)) {
        if (npts > 0 && pts[npts - 1].out == totout) continue;  /* never two checkpoints with one out */
        if (npts == cap) { cap = cap ? cap * 2 : 16; pts = realloc(pts, cap * sizeof *pts); if (!pts) return 1; }
        point_t *p = &pts[npts++];
        p->in = totin; p->out = totout; p->bits = s.data_type & 7;
        /* linearize the ring: bytes after the write position are the oldest */
        size_t have = WIN - s.avail_out;
        memcpy(p->window, ring + have, WIN - have);
        memcpy(p->window + (WIN - have), ring, have);
        last = totout;
      }
    } while (s.avail_in != 0);
  } while (ret != Z_STREAM_END);
  inflateEnd(&s);
  fclose(f);
  /* the ring starts zeroed, so windows before 32 KiB of output are zero left-padded. Drop a trailing
     checkpoint that no output follows. */
  while (npts > 1 && pts[npts - 1].out >= totout) npts--;
  unsigned char hdr[12];
  int32_t n = (int32_t)npts;
  for (int i = 0; i < 4; i++) hdr[i] = (unsigned char)((uint32_t)n >> (8 * i));
  put64(hdr + 4, span);
  fwrite(hdr, 1, 12, stdout);
  for (size_t i = 0; i < npts; i++) {
    unsigned char rec[17];
    put64(rec, pts[i].in);
    put64(rec + 8, pts[i].out);
    rec[16] = (unsigned char)pts[i].bits;
    fwrite(rec, 1, 17, stdout);
    fwrite(pts[i].window, 1, WIN, stdout);
  }
  fprintf(stderr, "checkpoints=%zu totin=%lld totout=%lld\n", npts, (long long)totin, (long long)totout);
  return 0;
}
