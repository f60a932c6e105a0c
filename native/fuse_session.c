/*
 * The life of one layer mount after js_mount: the loop thread running libfuse's multi-threaded session, the
 * table of slow reads parked for JS (`pending`, guarded by `mu`), and teardown. Teardown order matters:
 * refuse new slow reads, answer every parked one with EIO, wait for replies the JS thread has already taken
 * off the table (`replying`), stop the prefetch thread, exit the session, detach the mount, abort the fusectl
 * connection (so a process holding a file open cannot keep the loop alive), join the loop, and only then
 * destroy the session and close the content file. Loop threads never seen to end keep everything they touch
 * (session, fd, tables, the fsys itself) alive forever rather than risk a use-after-free. Mounts still live
 * at process exit are detached and aborted from an atexit hook so no dead mountpoint is left behind.
 */
#include "fuse_layer.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t liveMu = PTHREAD_MUTEX_INITIALIZER;
static fsys_t *live;
static int atexitSet;

void fs_unref(fsys_t *fs) {
  pthread_mutex_lock(&fs->mu);
  int left = --fs->refs;
  pthread_mutex_unlock(&fs->mu);
  if (left > 0) return;
  pthread_mutex_destroy(&fs->mu);
  pthread_cond_destroy(&fs->cv);
  pthread_mutex_destroy(&fs->pmu);
  pthread_cond_destroy(&fs->pcv);
  free(fs);
}

void *loop_main(void *arg) {
  fsys_t *fs = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_session_loop_mt(fs->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  pthread_mutex_lock(&fs->mu);
  fs->loopDone = 1;
  pthread_cond_broadcast(&fs->cv);
  pthread_mutex_unlock(&fs->mu);
  return NULL;
}


/* Aborts the FUSE connection (fusectl) so blocked readers and the loop threads return. */
static void abort_conn(fsys_t *fs) {
  char p[96];
  if (fs->dev == 0) return;
  snprintf(p, sizeof p, "/sys/fs/fuse/connections/%u/abort", minor(fs->dev));
  int fd = open(p, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, "1", 1) < 0) { /* connection already gone */ }
  close(fd);
}


/* Removes and returns the pending read `token`, or NULL (already answered, e.g. by unmount). The caller
 * then owes exactly one reply_done() (or put_back()), after which teardown may destroy the session. */
pend_t *take_pending(fsys_t *fs, uint32_t token) {
  pthread_mutex_lock(&fs->mu);
  pend_t *found = NULL;
  for (pend_t **q = &fs->pending; *q; q = &(*q)->next) {
    if ((*q)->token == token) { found = *q; *q = found->next; break; }
  }
  if (found) fs->replying++;
  pthread_mutex_unlock(&fs->mu);
  return found;
}

void reply_done(fsys_t *fs) {
  pthread_mutex_lock(&fs->mu);
  if (--fs->replying == 0) pthread_cond_broadcast(&fs->cv);
  pthread_mutex_unlock(&fs->mu);
}

/* Parks a taken read again (its spans went missing), or answers EIO if unmount began meanwhile. */
void put_back(fsys_t *fs, pend_t *p) {
  pthread_mutex_lock(&fs->mu);
  if (fs->closing) {
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(p->req, EIO);
    free(p);
    reply_done(fs);
    return;
  }
  p->next = fs->pending;
  fs->pending = p;
  if (--fs->replying == 0) pthread_cond_broadcast(&fs->cv);
  pthread_mutex_unlock(&fs->mu);
}

/*
 * Stops the session: pending slow reads get EIO, the mount is detached, the connection aborted (so a
 * process still holding a file open cannot keep the loop alive), the loop joined and the session destroyed.
 * Safe to call twice; `join` 0 (process exit, on the JS thread) only detaches and aborts.
 */
void stop_session(fsys_t *fs, int join) {
  pthread_mutex_lock(&fs->mu);
  if (fs->stopped) { pthread_mutex_unlock(&fs->mu); return; }
  fs->closing = 1;
  pend_t *p = fs->pending;
  fs->pending = NULL;
  pthread_mutex_unlock(&fs->mu);
  while (p) {
    pend_t *n = p->next;
    fuse_reply_err(p->req, EIO);
    free(p);
    p = n;
  }
  stop_pusher(fs, join);
  if (fs->se) fuse_session_exit(fs->se);
  if (umount2(fs->mountpoint, MNT_DETACH) != 0 && errno == EPERM && fs->se) fuse_session_unmount(fs->se);
  abort_conn(fs);
  if (!join) return;
  pthread_mutex_lock(&fs->mu);
  fs->stopped = 1;
  /* a reply the JS thread took off `pending` before `closing` is finishing on the session: wait for it */
  while (fs->replying > 0) pthread_cond_wait(&fs->cv, &fs->mu);
  int done = fs->loopDone;
  if (fs->threadStarted && !done) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (!fs->loopDone && pthread_cond_timedwait(&fs->cv, &fs->mu, &until) == 0) {}
    done = fs->loopDone;
  }
  if (fs->threadStarted && !done) fs->refs++; /* stray workers may still use fs: never free it */
  pthread_mutex_unlock(&fs->mu);
  if (fs->threadStarted) {
    if (done) pthread_join(fs->thread, NULL);
    else pthread_detach(fs->thread); /* never seen; leaks the session rather than hang the caller */
  }
  fs->joined = done || !fs->threadStarted;
  if (fs->se && fs->joined) fuse_session_destroy(fs->se);
  if (fs->joined) fs->se = NULL;
  if (fs->fd >= 0 && fs->joined) { close(fs->fd); fs->fd = -1; } /* workers never seen to end may still pread */
  pthread_mutex_lock(&liveMu);
  for (fsys_t **q = &live; *q; q = &(*q)->nextLive) if (*q == fs) { *q = fs->nextLive; break; }
  pthread_mutex_unlock(&liveMu);
}

static void at_exit(void) {
  pthread_mutex_lock(&liveMu); /* held throughout: an unmount finishing on another thread unlinks under it */
  for (fsys_t *fs = live; fs; fs = fs->nextLive) stop_session(fs, 0);
  pthread_mutex_unlock(&liveMu);
}

/* Registers a running mount for the exit hook. */
void live_add(fsys_t *fs) {
  pthread_mutex_lock(&liveMu);
  fs->nextLive = live;
  live = fs;
  if (!atexitSet) atexitSet = atexit(at_exit) == 0;
  pthread_mutex_unlock(&liveMu);
}
