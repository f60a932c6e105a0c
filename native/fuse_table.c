/*
 * The inode table of one layer mount (layout in fuse_layer.c's header): the checks that make every
 * reference in a table JS hands over safe to follow without further bounds checks (a malformed table is
 * rejected at mount, never served), the open-addressing hash from (parent, name) to dirent used by lookup,
 * and the record → struct stat conversion. The table is immutable once mounted, so none of this locks.
 */
#include "fuse_layer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int exact_nonneg(double v) { return v >= 0 && v < MAX_EXACT; } /* false for NaN too */

/* Whether strings[at, at+len) lies inside the heap and is followed by its NUL terminator. */
static int str_ok(const fsys_t *fs, size_t heap, uint64_t at, uint64_t len) {
  return at + len < heap && fs->strings[at + len] == 0 && memchr(fs->strings + at, 0, len) == NULL;
}

/*
 * NULL when every reference of the table stays in bounds, else why not: directory dirent ranges, symlink
 * targets and dirent names (NUL-terminated, no NUL inside: libfuse takes them as C strings), xattr ranges,
 * parents, child inodes, and sizes/offsets/mtimes that are finite and exact as doubles.
 */
const char *table_check(fsys_t *fs, size_t sb, size_t xb) {
  for (uint32_t i = 1; i < fs->nnodes; i++) {
    rec_t *r = &fs->nodes[i];
    if (!r->valid) continue;
    int dir = (r->mode & S_IFMT) == S_IFDIR, lnk = (r->mode & S_IFMT) == S_IFLNK;
    if ((dir && (uint64_t)r->a + r->b > fs->ndirents) || (lnk && !str_ok(fs, sb, r->a, r->b)) ||
        ((uint64_t)r->xs + r->xc) * 16 > xb || r->parent >= fs->nnodes)
      return "mount: table reference out of bounds";
    if (!exact_nonneg(r->size) || !exact_nonneg(r->offset) || r->offset + r->size >= MAX_EXACT || !isfinite(r->mtime) ||
        fabs(r->mtime) > 1e15 || r->nsec >= 1000000000u)
      return "mount: size, offset or mtime out of range";
  }
  for (uint32_t d = 0; d < fs->ndirents; d++) {
    const uint32_t *e = &fs->dirents[d * 3];
    if (e[0] >= fs->nnodes || e[2] == 0 || !str_ok(fs, sb, e[1], e[2])) return "mount: dirent out of bounds";
  }
  for (size_t x = 0; x + 16 <= xb; x += 16) {
    const uint32_t *q = &fs->xattrs[x / 4];
    if ((uint64_t)q[0] + q[1] > sb || (uint64_t)q[2] + q[3] > sb) return "mount: xattr out of bounds";
  }
  if (!fs->nodes[1].valid || (fs->nodes[1].mode & S_IFMT) != S_IFDIR) return "mount: inode 1 must be the root directory";
  return NULL;
}

/* NULL when the span starts (count + 1 of them, the last one the end) are finite, exact and ascending. */
const char *spans_check(const double *starts, uint32_t count) {
  for (uint32_t i = 0; i <= count; i++) {
    if (!exact_nonneg(starts[i]) || (i > 0 && starts[i] < starts[i - 1])) return "mount: spanStarts must ascend from 0";
  }
  return NULL;
}

static uint32_t hash_of(uint32_t parent, const char *name, size_t len) {
  uint32_t h = 2166136261u ^ parent * 0x9e3779b1u;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
  return h ^ (h >> 15);
}

int build_hash(fsys_t *fs) {
  uint64_t cap = 16;
  while (cap < (uint64_t)fs->ndirents * 2 + 16) cap <<= 1;
  if (cap > UINT32_MAX) return 0;
  fs->hash = calloc((size_t)cap, sizeof(uint32_t));
  if (!fs->hash) return 0;
  fs->hmask = (uint32_t)(cap - 1);
  for (uint32_t p = 1; p < fs->nnodes; p++) {
    rec_t *r = &fs->nodes[p];
    if (!r->valid || (r->mode & S_IFMT) != S_IFDIR) continue;
    for (uint32_t d = r->a; d < r->a + r->b; d++) { /* in bounds: table_check */
      uint32_t *e = &fs->dirents[d * 3];
      uint32_t h = hash_of(p, fs->strings + e[1], e[2]) & fs->hmask;
      while (fs->hash[h]) h = (h + 1) & fs->hmask;
      fs->hash[h] = d + 1;
    }
  }
  return 1;
}

/* The child of directory `parent` named `name`, or 0. */
uint32_t find_child(fsys_t *fs, fuse_ino_t parent, const char *name) {
  size_t len = strlen(name);
  rec_t *p = node_of(fs, parent); /* full width: an inode number past 2^32 must not alias a small one */
  if (!p || (p->mode & S_IFMT) != S_IFDIR) return 0;
  for (uint32_t h = hash_of((uint32_t)parent, name, len) & fs->hmask; fs->hash[h]; h = (h + 1) & fs->hmask) {
    uint32_t d = fs->hash[h] - 1;
    uint32_t *e = &fs->dirents[d * 3];
    if (d < p->a || d >= p->a + p->b) continue; /* another directory's entry */
    if (e[2] == len && memcmp(fs->strings + e[1], name, len) == 0) return e[0];
  }
  return 0;
}

void fill_attr(fuse_ino_t ino, const rec_t *r, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = r->mode;
  st->st_nlink = r->nlink;
  st->st_uid = r->uid;
  st->st_gid = r->gid;
  st->st_rdev = r->rdev;
  st->st_size = (off_t)r->size;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)((r->size + 511) / 512);
  st->st_mtim.tv_sec = (time_t)r->mtime;
  st->st_mtim.tv_nsec = r->nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

void free_tables(fsys_t *fs) {
  free(fs->nodes); fs->nodes = NULL; fs->nnodes = 0;
  free(fs->dirents); fs->dirents = NULL;
  free(fs->xattrs); fs->xattrs = NULL;
  free(fs->strings); fs->strings = NULL;
  free(fs->hash); fs->hash = NULL;
  free(fs->spanStarts); fs->spanStarts = NULL;
  free(fs->mountpoint); fs->mountpoint = NULL;
}
