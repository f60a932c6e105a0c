/*
 * The FUSE operations of a layer mount other than READ (fuse_read.c): INIT's capability choices, lookup,
 * getattr, readlink, opendir/readdir/readdirplus (which also triggers the list prefetch at the end of a
 * listing), xattrs, statfs, access, open/release, and EROFS for every write. Each runs on a libfuse worker
 * thread, reads only the immutable table, and answers its request exactly once before returning.
 */
#include "fuse_layer.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void ll_init(void *ud, struct fuse_conn_info *conn) {
  fsys_t *fs = ud;
  fs->noOpen = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  fs->noOpendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA; /* attributes never change */
  /* every listing chunk as readdirplus: entries arrive with attributes (no LOOKUP per name) and the kernel
   * holds their inodes, which the list prefetch needs */
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  COUNT(FS(req), 0);
  fsys_t *fs = FS(req);
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.attr_timeout = fs->timeout;
  e.entry_timeout = fs->timeout; /* negative entries are cached too: the layer never changes */
  uint32_t c = find_child(fs, parent, name);
  if (c != 0 && !node_of(fs, c)) c = 0;
  if (c == 0) {
    if (!node_of(fs, parent)) { fuse_reply_err(req, ENOENT); return; }
    if (fs->timeout <= 0) { fuse_reply_err(req, ENOENT); return; }
    fuse_reply_entry(req, &e); /* ino 0: cached negative entry */
    return;
  }
  e.ino = c;
  fill_attr(c, &fs->nodes[c], &e.attr);
  fuse_reply_entry(req, &e);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) { fuse_reply_none(req); }
static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f) { fuse_reply_none(req); }

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  COUNT(FS(req), 1);
  fsys_t *fs = FS(req);
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  struct stat st;
  fill_attr(ino, r, &st);
  fuse_reply_attr(req, &st, fs->timeout);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  COUNT(FS(req), 7);
  fsys_t *fs = FS(req);
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  if ((r->mode & S_IFMT) != S_IFLNK) { fuse_reply_err(req, EINVAL); return; }
  fuse_reply_readlink(req, fs->strings + r->a);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  COUNT(FS(req), 4);
  /* zero-message opendir/releasedir from now on (two round trips per directory walked); the kernel then
   * opens directories with FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, as below */
  if (FS(req)->noOpendir) { fuse_reply_err(req, ENOSYS); return; }
  rec_t *r = node_of(FS(req), ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  if ((r->mode & S_IFMT) != S_IFDIR) { fuse_reply_err(req, ENOTDIR); return; }
  fi->keep_cache = 1;
  fi->cache_readdir = 1; /* the kernel keeps the listing: a second pass sends no readdir */
  fuse_reply_open(req, fi);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  COUNT(FS(req), 7); fuse_reply_err(req, 0); }


static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  fsys_t *fs = FS(req);
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  if ((r->mode & S_IFMT) != S_IFDIR) { fuse_reply_err(req, ENOTDIR); return; }
  if (size > MAX_REPLY) size = MAX_REPLY;
  char *buf = malloc(size);
  if (!buf) { fuse_reply_err(req, ENOMEM); return; }
  size_t used = 0;
  uint64_t total = (uint64_t)r->b + 2;
  for (uint64_t k = off < 0 ? 0 : (uint64_t)off; k < total; k++) {
    uint32_t child;
    const char *name;
    if (k == 0) { child = (uint32_t)ino; name = "."; }
    else if (k == 1) { child = r->parent ? r->parent : (uint32_t)ino; name = ".."; }
    else {
      uint32_t *e = &fs->dirents[(r->a + (uint32_t)(k - 2)) * 3];
      child = e[0];
      name = fs->strings + e[1];
    }
    rec_t *c = node_of(fs, child);
    if (!c) continue;
    size_t n;
    if (plus) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      e.ino = child;
      e.attr_timeout = fs->timeout;
      e.entry_timeout = fs->timeout;
      fill_attr(child, c, &e.attr);
      n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(k + 1));
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = child;
      st.st_mode = c->mode;
      n = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(k + 1));
    }
    if (n > size - used) break;
    used += n;
  }
  if (plus && off == 0) __atomic_store_n(&r->listedFlag, 1, __ATOMIC_RELEASE);
  if (used == 0 && off > 0 && fs->pusherStarted && __atomic_exchange_n(&r->listedFlag, 2, __ATOMIC_ACQ_REL) == 1) {
    /* end of a readdirplus listing: the kernel has every entry's inode, the caller has not read any yet */
    char *pb = thread_buf(fs->pushMax);
    uint32_t next = pb ? push_dir(fs, r, 0, 256, pb) : 0;
    if (next < r->b) enqueue_push(fs, ino, next);
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  COUNT(FS(req), 5); do_readdir(req, ino, size, off, 0); }
static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  fsys_t *fs = FS(req);
  COUNT(fs, 6);
  do_readdir(req, ino, size, off, 1);
  /* callers that read files while still listing (python's scandir) get the first chunk pushed in background */
  if (off == 0 && fs->pusherStarted) enqueue_push(fs, ino, 0);
}

/* Replies to an xattr query: size 0 probes the length, a too-small buffer is ERANGE. */
static void reply_xattr_bytes(fuse_req_t req, const char *data, size_t len, size_t size) {
  if (size == 0) fuse_reply_xattr(req, len);
  else if (size < len) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, data, len);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  COUNT(FS(req), 7);
  fsys_t *fs = FS(req);
  /* ENOSYS makes the kernel answer EOPNOTSUPP itself from now on, as for a filesystem without xattrs */
  if (fs->noXattrs) { fuse_reply_err(req, ENOSYS); return; }
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  size_t len = strlen(name);
  for (uint32_t i = r->xs; i < r->xs + r->xc; i++) {
    uint32_t *x = &fs->xattrs[i * 4];
    if (x[1] == len && memcmp(fs->strings + x[0], name, len) == 0) {
      reply_xattr_bytes(req, fs->strings + x[2], x[3], size);
      return;
    }
  }
  fuse_reply_err(req, ENODATA);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  COUNT(FS(req), 7);
  fsys_t *fs = FS(req);
  if (fs->noXattrs) { fuse_reply_err(req, ENOSYS); return; }
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  size_t total = 0;
  for (uint32_t i = r->xs; i < r->xs + r->xc; i++) total += fs->xattrs[i * 4 + 1] + 1;
  if (total == 0 || size == 0 || size < total) { reply_xattr_bytes(req, NULL, total, size); return; }
  char *buf = malloc(total);
  if (!buf) { fuse_reply_err(req, ENOMEM); return; }
  size_t p = 0;
  for (uint32_t i = r->xs; i < r->xs + r->xc; i++) {
    uint32_t *x = &fs->xattrs[i * 4];
    memcpy(buf + p, fs->strings + x[0], x[1]);
    p += x[1];
    buf[p++] = 0;
  }
  fuse_reply_buf(req, buf, total);
  free(buf);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  COUNT(FS(req), 7);
  fsys_t *fs = FS(req);
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = 4096;
  sv.f_frsize = 4096;
  sv.f_blocks = (fsblkcnt_t)fs->statBlocks;
  sv.f_files = (fsfilcnt_t)fs->statFiles;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  COUNT(FS(req), 7);
  if (!node_of(FS(req), ino)) { fuse_reply_err(req, ENOENT); return; }
  fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  COUNT(FS(req), 2);
  fsys_t *fs = FS(req);
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) { fuse_reply_err(req, EROFS); return; }
  if (fs->noOpen) { fuse_reply_err(req, ENOSYS); return; } /* zero-message opens from now on */
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  COUNT(FS(req), 7); fuse_reply_err(req, 0); }

/* Every write operation: read-only file system (the `ro` mount flag makes the VFS refuse most first). */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int s, struct fuse_file_info *fi) { fuse_reply_err(req, EROFS); }
static void ll_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) { fuse_reply_err(req, EROFS); }
static void ll_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { fuse_reply_err(req, EROFS); }
static void ll_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
static void ll_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
static void ll_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned int f) { fuse_reply_err(req, EROFS); }
static void ll_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n) { fuse_reply_err(req, EROFS); }
static void ll_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o, struct fuse_file_info *fi) { fuse_reply_err(req, EROFS); }
static void ll_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) { fuse_reply_err(req, EROFS); }
static void ll_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f) { fuse_reply_err(req, EROFS); }
static void ll_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { fuse_reply_err(req, EROFS); }
static void ll_fallocate(fuse_req_t req, fuse_ino_t i, int m, off_t o, off_t l, struct fuse_file_info *fi) { fuse_reply_err(req, EROFS); }

const struct fuse_lowlevel_ops soci_ops = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_unlink,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .release = ll_release,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .readdirplus = ll_readdirplus,
  .releasedir = ll_releasedir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .access = ll_access,
  .create = ll_create,
  .fallocate = ll_fallocate,
};
