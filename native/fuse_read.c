/*
 * The read path of a layer mount. A READ of bytes whose spans are all present in the layer's sparse content
 * file is one pread on the worker thread (the fast path); any other READ is parked in `pending` under a token
 * and handed to JS through the threadsafe function, and answered later from the JS thread (fuse_layer.c's
 * replyData/replyPread/replyError) or with EIO at unmount: the worker never waits for JS. Also here: the list
 * prefetch, which pushes a listed directory's small present files into the kernel page cache.
 */
#include "fuse_layer.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t span_at(fsys_t *fs, double off) {
  uint32_t lo = 0, hi = fs->nspans; /* largest i with spanStarts[i] <= off */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (fs->spanStarts[mid] <= off) lo = mid; else hi = mid;
  }
  return lo;
}

static int spans_present(fsys_t *fs, uint32_t first, uint32_t last) {
  for (uint32_t i = first; i <= last; i++)
    if (!__atomic_load_n(&fs->present[i], __ATOMIC_ACQUIRE)) return 0;
  return 1;
}

/* Reads [off, off+len) of the content file into buf if every span it touches stays present. */
int read_present(fsys_t *fs, double off, size_t len, char *buf) {
  if (fs->fd < 0 || fs->nspans == 0 || len == 0) return len == 0;
  if (off < fs->spanStarts[0] || off + (double)len > fs->spanStarts[fs->nspans]) return 0;
  uint32_t first = span_at(fs, off), last = span_at(fs, off + (double)len - 1);
  if (!spans_present(fs, first, last)) return 0;
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fs->fd, buf + got, len - got, (off_t)off + (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    got += (size_t)n;
  }
  return spans_present(fs, first, last); /* eviction clears the byte before punching the hole */
}

/*
 * Per-thread scratch buffers. libfuse retires idle worker threads and starts new ones under load, so the
 * buffer is owned by a thread-specific key whose destructor frees it when its thread exits (a bare __thread
 * pointer leaked up to 1 MiB per retired worker).
 */
static pthread_key_t bufKey;
static pthread_once_t bufOnce = PTHREAD_ONCE_INIT;

typedef struct { size_t cap; char data[]; } tbuf_t;

static void buf_free(void *p) { free(p); }
static void buf_key_init(void) { pthread_key_create(&bufKey, buf_free); }

/* This thread's scratch buffer of at least `len` bytes (at least 1 MiB), or NULL. */
char *thread_buf(size_t len) {
  pthread_once(&bufOnce, buf_key_init);
  tbuf_t *b = pthread_getspecific(bufKey);
  if (b && b->cap >= len) return b->data;
  size_t cap = len < MAX_REPLY ? MAX_REPLY : len;
  free(b);
  b = malloc(sizeof *b + cap);
  if (b) b->cap = cap;
  pthread_setspecific(bufKey, b);
  return b ? b->data : NULL;
}

static void dispatch_slow(fsys_t *fs, fuse_req_t req, fuse_ino_t ino, double tarOff, size_t len) {
  pend_t *p = malloc(sizeof *p);
  call_t *c = malloc(sizeof *c);
  if (!p || !c) { free(p); free(c); fuse_reply_err(req, ENOMEM); return; }
  pthread_mutex_lock(&fs->mu);
  if (fs->closing) {
    pthread_mutex_unlock(&fs->mu);
    free(p); free(c);
    fuse_reply_err(req, EIO);
    return;
  }
  p->token = ++fs->nextToken;
  if (p->token == 0) p->token = ++fs->nextToken;
  p->req = req;
  p->tarOff = tarOff;
  p->len = len;
  p->next = fs->pending;
  fs->pending = p;
  fs->slowReads++;
  c->token = p->token;
  c->ino = (uint32_t)ino;
  c->tarOff = tarOff;
  c->len = (double)len;
  napi_status st = napi_call_threadsafe_function(fs->tsfn, c, napi_tsfn_nonblocking);
  if (st != napi_ok) {
    fs->pending = p->next; /* still at the head: we hold the lock */
    pthread_mutex_unlock(&fs->mu);
    free(p); free(c);
    fuse_reply_err(req, EIO);
    return;
  }
  pthread_mutex_unlock(&fs->mu);
}

void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  COUNT(FS(req), 3);
  fsys_t *fs = FS(req);
  rec_t *r = node_of(fs, ino);
  if (!r) { fuse_reply_err(req, ENOENT); return; }
  if ((r->mode & S_IFMT) != S_IFREG) { fuse_reply_err(req, EINVAL); return; }
  double avail = r->size - (double)off;
  size_t len = avail <= 0 ? 0 : (avail < (double)size ? (size_t)avail : size);
  if (len == 0) { fuse_reply_buf(req, NULL, 0); return; }
  double tarOff = r->offset + (double)off;
  if (fs->fd >= 0) {
    char *buf = thread_buf(len);
    if (!buf) { fuse_reply_err(req, ENOMEM); return; }
    if (read_present(fs, tarOff, len, buf)) {
      __atomic_add_fetch(&fs->fastReads, 1, __ATOMIC_RELAXED);
      fuse_reply_buf(req, buf, len);
      return;
    }
  }
  dispatch_slow(fs, req, ino, tarOff, len);
}

/*
 * List prefetch. Every file needs at least one READ round trip (two context switches) on a first pass, which
 * dominates reading many small files. When a readdirplus listing of a directory reaches its end (the empty
 * READDIR that ends getdents), the kernel holds every entry's inode and the caller has read none of them: the
 * worker then pushes each regular file of at most `pushMax` bytes whose spans are present into the kernel
 * page cache (FUSE_NOTIFY_STORE, whole file at offset 0 so its last page is up to date) before replying, up
 * to 256 files; a background thread pushes the rest. The first readdirplus chunk is also handed to that
 * thread at once, for callers that read files while still listing. A later read of such a file is a
 * page-cache hit. Only present spans are pushed (nothing is fetched for it) and each inode at most once.
 */
uint32_t push_dir(fsys_t *fs, rec_t *d, uint32_t from, uint32_t limit, char *buf) {
  uint32_t k = from, done = 0;
  for (; k < d->b && done < limit && !__atomic_load_n(&fs->pusherStop, __ATOMIC_RELAXED); k++) {
    uint32_t c = fs->dirents[(d->a + k) * 3];
    rec_t *r = node_of(fs, c);
    if (!r || (r->mode & S_IFMT) != S_IFREG || r->size <= 0 || r->size > fs->pushMax) continue;
    if (__atomic_exchange_n(&r->pushedFlag, 1, __ATOMIC_ACQ_REL)) continue;
    size_t len = (size_t)r->size;
    done++;
    if (!read_present(fs, r->offset, len, buf)) { __atomic_store_n(&r->pushedFlag, 0, __ATOMIC_RELEASE); continue; }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].mem = buf;
    int rc = fuse_lowlevel_notify_store(fs->se, c, 0, &bv, 0);
    if (rc == 0) __atomic_add_fetch(&fs->pushed, 1, __ATOMIC_RELAXED);
    else if (rc == -ENOENT) __atomic_store_n(&r->pushedFlag, 0, __ATOMIC_RELEASE); /* no kernel inode yet */
  }
  return k;
}

#define PQ_CAP (sizeof ((fsys_t *)0)->pq / sizeof ((fsys_t *)0)->pq[0])

void enqueue_push(fsys_t *fs, fuse_ino_t ino, uint32_t from) {
  pthread_mutex_lock(&fs->pmu);
  if (fs->pqLen < PQ_CAP / 2) { /* (ino, from) pairs; a full queue drops the work: it is only a prefetch */
    fs->pq[(fs->pqHead + fs->pqLen) % PQ_CAP] = (uint32_t)ino;
    fs->pq[(fs->pqHead + fs->pqLen + 1) % PQ_CAP] = from;
    fs->pqLen += 2;
    pthread_cond_signal(&fs->pcv);
  }
  pthread_mutex_unlock(&fs->pmu);
}

void *pusher_main(void *arg) {
  fsys_t *fs = arg;
  char *buf = malloc(fs->pushMax);
  for (;;) {
    pthread_mutex_lock(&fs->pmu);
    while (!fs->pusherStop && fs->pqLen == 0) pthread_cond_wait(&fs->pcv, &fs->pmu);
    if (fs->pusherStop) { pthread_mutex_unlock(&fs->pmu); break; }
    uint32_t ino = fs->pq[fs->pqHead], from = fs->pq[(fs->pqHead + 1) % PQ_CAP];
    fs->pqHead = (fs->pqHead + 2) % PQ_CAP;
    fs->pqLen -= 2;
    pthread_mutex_unlock(&fs->pmu);
    rec_t *d = node_of(fs, ino);
    if (d && buf) push_dir(fs, d, from, UINT32_MAX, buf);
  }
  free(buf);
  return NULL;
}

void stop_pusher(fsys_t *fs, int join) {
  if (!fs->pusherStarted) return;
  pthread_mutex_lock(&fs->pmu);
  __atomic_store_n(&fs->pusherStop, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&fs->pcv);
  pthread_mutex_unlock(&fs->pmu);
  if (!join) return;
  pthread_join(fs->pusher, NULL);
  fs->pusherStarted = 0;
}
