/*
 * Private header of the native layer filesystem (soci_fuse.node), shared by its four translation units:
 * fuse_table.c (the immutable inode table JS hands over: validation, name hash, lookups), fuse_ops.c (the
 * metadata operations answered from that table), fuse_read.c (the read path: content-file fast path, the
 * slow path to JS by token, the list prefetch) and fuse_session.c (the session thread, pending reads and
 * teardown), glued to JS in fuse_layer.c. The table layout is documented in fuse_layer.c's header. Nothing
 * here is visible outside the addon.
 */
#ifndef SOCI_FUSE_LAYER_H
#define SOCI_FUSE_LAYER_H

#define FUSE_USE_VERSION 312
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define REC_BYTES 80
#define MAX_REPLY (1024 * 1024)
/* largest integer a double holds exactly: every size and offset in the table must stay below it */
#define MAX_EXACT 9007199254740992.0
#define HIDDEN __attribute__((visibility("hidden")))

typedef struct {
  double size, offset, mtime;
  uint32_t mode, uid, gid, nlink, rdev, nsec, a, b, xs, xc, parent, valid, pushedFlag, listedFlag;
} rec_t;

typedef struct pend {
  struct pend *next;
  uint32_t token;
  fuse_req_t req;
  double tarOff;
  size_t len;
} pend_t;

typedef struct {
  uint32_t token, ino;
  double tarOff, len;
} call_t;

typedef struct fsys {
  /* table (owned copies) */
  rec_t *nodes;
  uint32_t nnodes;
  uint32_t *dirents;
  uint32_t ndirents;
  uint32_t *xattrs;
  char *strings;
  uint32_t *hash; /* dirent index + 1, open addressing */
  uint32_t hmask;
  double timeout;
  double statBlocks, statFiles;
  /* content file fast path */
  int fd;
  double *spanStarts;
  uint32_t nspans;
  volatile uint8_t *present;
  napi_ref presentRef;
  /* session */
  struct fuse_session *se;
  char *mountpoint;
  dev_t dev;
  pthread_t thread;
  int threadStarted;
  /* the layer has no xattr at all: getxattr/listxattr answer ENOSYS once and the kernel stops asking
   * (overlayfs asks every lower file for trusted.overlay.metacopy at lookup: one round trip per file) */
  int noXattrs;
  int noOpen, noOpendir;
  /* slow path */
  napi_threadsafe_function tsfn;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pend_t *pending;
  uint32_t nextToken;
  int closing;    /* no new slow reads; set by unmount */
  int loopDone;
  int stopped;    /* session torn down */
  int joined;     /* loop threads gone: the tables may be freed */
  int refs;       /* JS external + tsfn (+ 1 forever if the loop threads were never seen to end) */
  int replying;   /* JS-thread replies in flight on requests taken off `pending`; teardown waits for 0 */
  /* counters */
  uint64_t fastReads, slowReads;
  uint64_t ops[8]; /* lookup, getattr, open, read, opendir, readdir, readdirplus, other */
  /* list prefetch: small present files of a listed directory pushed into the page cache */
  uint32_t pushMax;
  pthread_t pusher;
  int pusherStarted, pusherStop;
  pthread_mutex_t pmu;
  pthread_cond_t pcv;
  uint32_t pq[256];
  uint32_t pqHead, pqLen;
  uint64_t pushed;
  struct fsys *nextLive;
  napi_async_work work;
  napi_deferred deferred;
} fsys_t;

#define FS(req) ((fsys_t *)fuse_req_userdata(req))
#define COUNT(fs, i) __atomic_add_fetch(&(fs)->ops[i], 1, __ATOMIC_RELAXED)

/* The record of inode `ino`, or NULL (0, out of range, or a hole in the numbering). */
static inline rec_t *node_of(fsys_t *fs, fuse_ino_t ino) {
  if (ino == 0 || ino >= fs->nnodes) return NULL;
  rec_t *r = &fs->nodes[ino];
  return r->valid ? r : NULL;
}

/* fuse_table.c */
HIDDEN const char *table_check(fsys_t *fs, size_t stringBytes, size_t xattrBytes);
HIDDEN const char *spans_check(const double *starts, uint32_t count);
HIDDEN int build_hash(fsys_t *fs);
HIDDEN uint32_t find_child(fsys_t *fs, fuse_ino_t parent, const char *name);
HIDDEN void fill_attr(fuse_ino_t ino, const rec_t *r, struct stat *st);
HIDDEN void free_tables(fsys_t *fs);

/* fuse_ops.c */
HIDDEN extern const struct fuse_lowlevel_ops soci_ops;

/* fuse_read.c */
HIDDEN void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
HIDDEN int read_present(fsys_t *fs, double off, size_t len, char *buf);
HIDDEN char *thread_buf(size_t len);
HIDDEN uint32_t push_dir(fsys_t *fs, rec_t *d, uint32_t from, uint32_t limit, char *buf);
HIDDEN void enqueue_push(fsys_t *fs, fuse_ino_t ino, uint32_t from);
HIDDEN void *pusher_main(void *arg);
HIDDEN void stop_pusher(fsys_t *fs, int join);

/* fuse_session.c */
HIDDEN void *loop_main(void *arg);
HIDDEN void stop_session(fsys_t *fs, int join);
HIDDEN void live_add(fsys_t *fs);
HIDDEN void fs_unref(fsys_t *fs);
HIDDEN pend_t *take_pending(fsys_t *fs, uint32_t token);
HIDDEN void reply_done(fsys_t *fs);
HIDDEN void put_back(fsys_t *fs, pend_t *p);

#endif
