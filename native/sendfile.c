/*
 * File → socket transfer for the proxy's blob cache (src/proxy/native-sendfile.ts), off the JS thread.
 *
 * Serving a cached 100 MB layer from Node means reading it into JS buffers and writing them through the
 * stream machinery, which on the bench machine tops out near 800 MB/s while docker-registry (Go) sends the
 * same file at 1.1-2 GB/s (bench/results/proxy.md). This addon sends a byte range of an open file to a
 * connected, non-blocking TCP socket from its own thread: pread a 1 MiB chunk, write it until EAGAIN, poll
 * for POLLOUT (bounded by a stall timeout), repeat (see CHUNK for why not sendfile). It works on a dup of the
 * socket descriptor and a dup of the file descriptor, so Node closing either mid-transfer can never redirect
 * the bytes to (or take them from) a reused descriptor; `abort` shuts the socket dup down, which ends the
 * transfer with EPIPE at once. The thread blocks every signal (they stay with Node's threads), and offset and
 * length must be integers with offset + length below 2^53, or start throws. A process that exits
 * mid-transfer just ends it: the kernel closes the dups and the peer sees a short body.
 *
 * JS API (N-API 8):
 *   start(socketFd, fileFd, offset, length, stallTimeoutMs, done(errno, sent)) -> id
 *   abort(id)        ends a running transfer (done still fires once)
 * `done` runs on the JS thread exactly once: errno 0 when all `length` bytes were sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

/*
 * Bytes per pread/write. Not sendfile(2): on loopback (a proxy next to containerd on the same host, and the
 * bench) sendfile's page-sized socket fragments measured 1.3-1.5 GB/s against 2.0-3.1 GB/s for a user-space
 * copy through a 512 KiB-4 MiB buffer (curl as the client, 277 MB file; 64 KiB buffers: 1.0 GB/s).
 */
#define CHUNK (1 << 20)

typedef struct job {
  int id;
  int sock; /* our dup of the socket */
  int file; /* our dup of the file */
  int64_t offset, length, sent;
  int timeout_ms;
  int err;
  int aborted; /* atomic: set by abort on the JS thread */
  napi_threadsafe_function tsfn;
  pthread_t thread;
  struct job *next;
} job_t;

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static job_t *jobs = NULL;
static int next_id = 1;

/* Waits until the socket takes more bytes; 0, or the errno that ends the transfer. */
static int wait_writable(job_t *j) {
  struct pollfd p = {.fd = j->sock, .events = POLLOUT, .revents = 0};
  int r = poll(&p, 1, j->timeout_ms);
  if (r == 0) return ETIMEDOUT;
  if (r < 0) return errno == EINTR ? 0 : errno;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return EPIPE;
  return 0;
}

static void *run(void *arg) {
  job_t *j = (job_t *)arg;
  unsigned char *buf = malloc(CHUNK);
  if (!buf) j->err = ENOMEM;
  while (buf && j->err == 0 && j->sent < j->length && !__atomic_load_n(&j->aborted, __ATOMIC_ACQUIRE)) {
    int64_t left = j->length - j->sent;
    size_t want = left > CHUNK ? CHUNK : (size_t)left;
    ssize_t n = pread(j->file, buf, want, (off_t)(j->offset + j->sent));
    if (n == 0) { /* the file is shorter than promised */
      j->err = EIO;
      break;
    }
    if (n < 0) {
      if (errno != EINTR) j->err = errno;
      continue;
    }
    for (ssize_t done = 0; done < n && j->err == 0 && !__atomic_load_n(&j->aborted, __ATOMIC_ACQUIRE);) {
      ssize_t w = write(j->sock, buf + done, (size_t)(n - done));
      if (w > 0) {
        done += w;
        j->sent += w;
      } else if (w < 0 && errno == EAGAIN) {
        j->err = wait_writable(j);
      } else if (w < 0 && errno != EINTR) {
        j->err = errno;
      }
    }
  }
  free(buf);
  if (__atomic_load_n(&j->aborted, __ATOMIC_ACQUIRE) && j->err == 0 && j->sent < j->length) j->err = ECANCELED;
  if (napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_blocking) != napi_ok) {
    /* the environment is shutting down: finish will never run, so drop the descriptors here */
    close(j->sock);
    close(j->file);
    pthread_detach(pthread_self());
  }
  return NULL;
}

static void unlink_job(job_t *j) {
  pthread_mutex_lock(&jobs_lock);
  for (job_t **p = &jobs; *p; p = &(*p)->next) {
    if (*p == j) {
      *p = j->next;
      break;
    }
  }
  pthread_mutex_unlock(&jobs_lock);
}

static void finish(napi_env env, napi_value cb, void *context, void *data) {
  job_t *j = (job_t *)data;
  pthread_join(j->thread, NULL);
  unlink_job(j);
  close(j->sock);
  close(j->file);
  if (env != NULL && cb != NULL) {
    napi_value argv[2], undef;
    napi_create_int32(env, j->err, &argv[0]);
    napi_create_double(env, (double)j->sent, &argv[1]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 2, argv, NULL);
  }
  napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
  free(j);
}

static napi_value throw_err(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) return throw_err(env, "start(socketFd, fileFd, offset, length, stallTimeoutMs, done)");
  int32_t sock, file, timeout;
  double offset, length;
  if (napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_value_int32(env, argv[1], &file) != napi_ok ||
      napi_get_value_double(env, argv[2], &offset) != napi_ok || napi_get_value_double(env, argv[3], &length) != napi_ok ||
      napi_get_value_int32(env, argv[4], &timeout) != napi_ok)
    return throw_err(env, "bad arguments");
  /* NaN and infinities fail these comparisons too; 2^53 keeps the int64 and off_t arithmetic exact */
  if (sock < 0 || file < 0 || !(offset >= 0) || !(length >= 0) || offset != floor(offset) || length != floor(length) ||
      !(offset + length < 9007199254740992.0))
    return throw_err(env, "bad arguments");
  int dupfd = fcntl(sock, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0) return throw_err(env, strerror(errno));
  int dupfile = fcntl(file, F_DUPFD_CLOEXEC, 3);
  if (dupfile < 0) {
    int e = errno;
    close(dupfd);
    return throw_err(env, strerror(e));
  }
  job_t *j = calloc(1, sizeof(job_t));
  if (j == NULL) {
    close(dupfd);
    close(dupfile);
    return throw_err(env, "out of memory");
  }
  j->sock = dupfd;
  j->file = dupfile;
  j->offset = (int64_t)offset;
  j->length = (int64_t)length;
  j->timeout_ms = timeout > 0 ? timeout : 60000;
  napi_value name;
  napi_create_string_utf8(env, "soci_sendfile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, finish, &j->tsfn) != napi_ok) {
    close(dupfd);
    close(dupfile);
    free(j);
    return throw_err(env, "threadsafe function");
  }
  pthread_mutex_lock(&jobs_lock);
  j->id = next_id;
  next_id = next_id == INT32_MAX ? 1 : next_id + 1;
  j->next = jobs;
  jobs = j;
  pthread_mutex_unlock(&jobs_lock);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&j->thread, NULL, run, j);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    unlink_job(j);
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_abort);
    close(dupfd);
    close(dupfile);
    free(j);
    return throw_err(env, "pthread_create failed");
  }
  napi_value id;
  napi_create_int32(env, j->id, &id);
  return id;
}

static napi_value js_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t id = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &id) != napi_ok) return throw_err(env, "abort(id)");
  pthread_mutex_lock(&jobs_lock);
  for (job_t *j = jobs; j; j = j->next) {
    if (j->id == id) {
      __atomic_store_n(&j->aborted, 1, __ATOMIC_RELEASE);
      shutdown(j->sock, SHUT_RDWR); /* wakes poll and fails the write; the job thread closes the dup */
      break;
    }
  }
  pthread_mutex_unlock(&jobs_lock);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"abort", NULL, js_abort, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
