/*
 * The native layer of @mdev/vhost-user: the Linux system calls a vhost-user backend needs and
 * Node does not offer. Unix stream sockets with SCM_RIGHTS fd passing (unix(7)), mmap(2) of a
 * received fd into an external ArrayBuffer, eventfd(2), poll(2), memfd_create(2) and
 * SO_PEERCRED (socket(7)).
 *
 * Conventions:
 * - Every argument is checked here: a wrong type throws TypeError (code ERR_INVALID_ARG_TYPE), a
 *   value out of range throws RangeError (code ERR_OUT_OF_RANGE). Those are programming errors.
 * - A failing system call throws an Error shaped like Node's system errors: `code` ('EAGAIN'),
 *   `errno` (negative), `syscall`. Where "would block" is a normal outcome of a non-blocking
 *   call (accept, sendmsg, recvmsg, eventfd read/write), it returns null/0/false instead.
 * - Every fd is created O_NONBLOCK and O_CLOEXEC; received fds are O_CLOEXEC too.
 * - The module is context-aware (NAPI_MODULE_INIT) and keeps no global state, so worker threads
 *   load it as well. fds are process-wide: a worker may mmap an fd the main thread received.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

/* fds one message may carry; the kernel's own bound (SCM_MAX_FD) is 253. */
#define MAX_FDS 64
/* fds one poll() call may watch. */
#define MAX_POLL_FDS 1024
/* Number.MAX_SAFE_INTEGER: larger sizes and offsets cannot be represented exactly in JS. */
#define MAX_SAFE_INTEGER 9007199254740991LL
/* The largest value eventfd(2) accepts in a write. */
#define EVENTFD_MAX 0xfffffffffffffffeULL

/* ---- errors ----------------------------------------------------------------------------- */

static const char *errno_name(int err) {
  switch (err) {
#define NAME(e) \
  case e:       \
    return #e;
    NAME(EPERM) NAME(ENOENT) NAME(EINTR) NAME(EIO) NAME(ENXIO) NAME(EBADF) NAME(EAGAIN)
    NAME(ENOMEM) NAME(EACCES) NAME(EFAULT) NAME(EBUSY) NAME(EEXIST) NAME(ENODEV) NAME(ENOTDIR)
    NAME(EISDIR) NAME(EINVAL) NAME(ENFILE) NAME(EMFILE) NAME(ETXTBSY) NAME(EFBIG) NAME(ENOSPC)
    NAME(ESPIPE) NAME(EROFS) NAME(EPIPE) NAME(ENAMETOOLONG) NAME(ENOSYS) NAME(ELOOP)
    NAME(EOVERFLOW) NAME(ENOTSOCK) NAME(EMSGSIZE) NAME(EPROTOTYPE) NAME(EOPNOTSUPP)
    NAME(EADDRINUSE) NAME(EADDRNOTAVAIL) NAME(ENOBUFS) NAME(EISCONN) NAME(ENOTCONN)
    NAME(ETIMEDOUT) NAME(ECONNREFUSED) NAME(ECONNRESET) NAME(EINPROGRESS) NAME(EDQUOT)
#undef NAME
    default:
      return "UNKNOWN";
  }
}

/* Throws `Error('<CODE>: <text>, <syscall>')` with code, errno (negative) and syscall set. */
static void throw_errno(napi_env env, const char *syscall, int err) {
  char text[128], msg[256];
  /* The GNU strerror_r: thread-safe, returns a pointer that may or may not be `text`. */
  const char *desc = strerror_r(err, text, sizeof text);
  snprintf(msg, sizeof msg, "%s: %s, %s", errno_name(err), desc, syscall);
  napi_value code, message, error, errnum, sys;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok ||
      napi_create_int32(env, -err, &errnum) != napi_ok ||
      napi_set_named_property(env, error, "errno", errnum) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys) != napi_ok ||
      napi_set_named_property(env, error, "syscall", sys) != napi_ok) {
    napi_throw_error(env, NULL, msg);
    return;
  }
  napi_throw(env, error);
}

/* An N-API call failed: throw its error unless one is already pending. */
static void throw_napi(napi_env env) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *msg = info && info->error_message ? info->error_message : "N-API call failed";
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, msg);
}

#define NAPI_CALL(call)      \
  do {                       \
    if ((call) != napi_ok) { \
      throw_napi(env);       \
      return NULL;           \
    }                        \
  } while (0)

static void throw_type(napi_env env, const char *name, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be %s", name, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

static void throw_range(napi_env env, const char *name, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be %s", name, what);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
}

/* ---- argument checks -------------------------------------------------------------------- */

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi(env);
    return false;
  }
  if (argc < want) {
    char msg[64];
    snprintf(msg, sizeof msg, "%zu arguments expected, got %zu", want, argc);
    napi_throw_type_error(env, "ERR_MISSING_ARGS", msg);
    return false;
  }
  return true;
}

/* An integer number in [min, max]; `range` describes the range for the error message. */
static bool get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max,
                    const char *range, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    throw_type(env, name, "of type number");
    return false;
  }
  napi_get_value_double(env, v, &d);
  /* The comparison is false for NaN; the cast is safe once d is within int64 range. */
  if (!(d >= (double)min && d <= (double)max) || (double)(int64_t)d != d) {
    throw_range(env, name, range);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_fd(napi_env env, napi_value v, const char *name, int *fd) {
  int64_t x;
  if (!get_int(env, v, name, 0, INT_MAX, "an integer >= 0 and <= 2147483647", &x)) return false;
  *fd = (int)x;
  return true;
}

static bool get_bool(napi_env env, napi_value v, const char *name, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) {
    throw_type(env, name, "of type boolean");
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

/* A string without NUL bytes, shorter than `size` bytes in UTF-8 (the NUL must fit). */
static bool get_string(napi_env env, napi_value v, const char *name, char *buf, size_t size) {
  napi_valuetype t;
  size_t len;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    throw_type(env, name, "of type string");
    return false;
  }
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len == 0 || len >= size) {
    char what[64];
    snprintf(what, sizeof what, "between 1 and %zu bytes long", size - 1);
    throw_range(env, name, what);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, size, &len);
  if (strlen(buf) != len) {
    throw_range(env, name, "a string without NUL bytes");
    return false;
  }
  return true;
}

static bool get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len) {
  bool is;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, len, (void **)data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    throw_type(env, name, "an instance of Uint8Array");
    return false;
  }
  return true;
}

/* An array of at most `max` fds, copied into `fds`. */
static bool get_fd_array(napi_env env, napi_value v, const char *name, size_t max, int *fds,
                         uint32_t *count) {
  bool is;
  char range[64];
  if (napi_is_array(env, v, &is) != napi_ok || !is) {
    throw_type(env, name, "an array of fds");
    return false;
  }
  napi_get_array_length(env, v, count);
  if (*count > max) {
    snprintf(range, sizeof range, "an array of at most %zu fds", max);
    throw_range(env, name, range);
    return false;
  }
  for (uint32_t i = 0; i < *count; i++) {
    napi_value e;
    if (napi_get_element(env, v, i, &e) != napi_ok || !get_fd(env, e, name, &fds[i])) {
      return false;
    }
  }
  return true;
}

static bool get_sockaddr(napi_env env, napi_value v, struct sockaddr_un *addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  return get_string(env, v, "path", addr->sun_path, sizeof addr->sun_path);
}

static napi_value make_int(napi_env env, int64_t x) {
  napi_value v;
  NAPI_CALL(napi_create_int64(env, x, &v));
  return v;
}

static napi_value make_null(napi_env env) {
  napi_value v;
  NAPI_CALL(napi_get_null(env, &v));
  return v;
}

/* ---- sockets ---------------------------------------------------------------------------- */

#define SOCK_FLAGS (SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC)

/* listen(path, backlog, mode): a listening socket whose file has `mode` from its creation on. */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  struct sockaddr_un addr;
  int64_t backlog, mode;
  if (!get_args(env, info, 3, argv) || !get_sockaddr(env, argv[0], &addr) ||
      !get_int(env, argv[1], "backlog", 0, 65535, "an integer >= 0 and <= 65535", &backlog) ||
      !get_int(env, argv[2], "mode", 0, 0777, "an integer >= 0 and <= 0o777", &mode)) {
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_FLAGS, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  /* unix(7): bind() creates the file with the socket inode's mode minus the umask, so setting
   * the mode before bind() leaves no window in which another user could connect. */
  const char *syscall = "fchmod";
  if (fchmod(fd, (mode_t)mode) == 0) {
    syscall = "bind";
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
      syscall = "listen";
      if (listen(fd, (int)backlog) == 0) return make_int(env, fd);
    }
  }
  int err = errno;
  close(fd);
  throw_errno(env, syscall, err);
  return NULL;
}

/* connect(path): a connected non-blocking socket; EAGAIN when the listener's backlog is full. */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un addr;
  if (!get_args(env, info, 1, argv) || !get_sockaddr(env, argv[0], &addr)) return NULL;
  int fd = socket(AF_UNIX, SOCK_FLAGS, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  int r;
  do r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "connect", err);
    return NULL;
  }
  return make_int(env, fd);
}

/* accept(fd): the new connection's fd, or null when none is pending. */
static napi_value js_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, conn;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  do conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (conn < 0 && errno == EINTR);
  if (conn >= 0) return make_int(env, conn);
  if (errno == EAGAIN) return make_null(env);
  throw_errno(env, "accept", errno);
  return NULL;
}

/* socketpair(): two connected non-blocking unix stream sockets. */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  napi_value arr;
  if (socketpair(AF_UNIX, SOCK_FLAGS, 0, sv) < 0) {
    throw_errno(env, "socketpair", errno);
    return NULL;
  }
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_set_element(env, arr, 0, make_int(env, sv[0])) != napi_ok ||
      napi_set_element(env, arr, 1, make_int(env, sv[1])) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    throw_napi(env);
    return NULL;
  }
  return arr;
}

typedef union {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
} control_buffer;

/* sendmsg(fd, data, fds): bytes sent (fds go with the first byte), or null when it would block. */
static napi_value js_sendmsg(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd, fds[MAX_FDS];
  uint32_t nfds;
  uint8_t *data;
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_bytes(env, argv[1], "data", &data, &len) ||
      !get_fd_array(env, argv[2], "fds", MAX_FDS, fds, &nfds)) {
    return NULL;
  }
  if (len == 0) {
    /* A stream socket carries ancillary data only together with at least one byte. */
    throw_range(env, "data", "at least 1 byte long");
    return NULL;
  }
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  control_buffer ctl;
  if (nfds > 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n >= 0) return make_int(env, n);
  if (errno == EAGAIN) return make_null(env);
  throw_errno(env, "sendmsg", errno);
  return NULL;
}

/*
 * recvmsg(fd, data, maxFds): { bytes, fds, ctrunc }, or null when nothing is there. bytes 0 is
 * the end of the stream. At most maxFds fds are kept: any beyond are closed at once and ctrunc
 * is true, as it is when the kernel reports MSG_CTRUNC. Nothing received is ever left open
 * without being returned.
 */
static napi_value js_recvmsg(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t max_fds;
  uint8_t *data;
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_bytes(env, argv[1], "data", &data, &len) ||
      !get_int(env, argv[2], "maxFds", 0, MAX_FDS, "an integer >= 0 and <= 64", &max_fds)) {
    return NULL;
  }
  if (len == 0) {
    throw_range(env, "data", "at least 1 byte long");
    return NULL;
  }
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  control_buffer ctl;
  if (max_fds > 0) {
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
  }
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return make_null(env);
    throw_errno(env, "recvmsg", errno);
    return NULL;
  }

  int kept[MAX_FDS];
  uint32_t nkept = 0;
  bool ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = msg.msg_controllen ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int rfd;
      memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof rfd);
      /* CMSG_SPACE rounds up, so the kernel may deliver more fds than asked for. */
      if (nkept < (uint32_t)max_fds) {
        kept[nkept++] = rfd;
      } else {
        close(rfd);
        ctrunc = true;
      }
    }
  }

  napi_value result, fds, v;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_array_with_length(env, nkept, &fds) != napi_ok) {
    for (uint32_t i = 0; i < nkept; i++) close(kept[i]);
    throw_napi(env);
    return NULL;
  }
  for (uint32_t i = 0; i < nkept; i++) {
    if (napi_create_int32(env, kept[i], &v) != napi_ok ||
        napi_set_element(env, fds, i, v) != napi_ok) {
      for (uint32_t j = i; j < nkept; j++) close(kept[j]);
      throw_napi(env);
      return NULL;
    }
  }
  napi_value bytes, trunc;
  NAPI_CALL(napi_create_int64(env, n, &bytes));
  NAPI_CALL(napi_get_boolean(env, ctrunc, &trunc));
  NAPI_CALL(napi_set_named_property(env, result, "bytes", bytes));
  NAPI_CALL(napi_set_named_property(env, result, "fds", fds));
  NAPI_CALL(napi_set_named_property(env, result, "ctrunc", trunc));
  return result;
}

/* peerCred(fd): { pid, uid, gid } of the process that connected (or listened). */
static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    throw_errno(env, "getsockopt", errno);
    return NULL;
  }
  NAPI_CALL(napi_create_object(env, &result));
  NAPI_CALL(napi_set_named_property(env, result, "pid", make_int(env, cred.pid)));
  NAPI_CALL(napi_set_named_property(env, result, "uid", make_int(env, cred.uid)));
  NAPI_CALL(napi_set_named_property(env, result, "gid", make_int(env, cred.gid)));
  return result;
}

/* ---- shared memory ---------------------------------------------------------------------- */

/* Tags the ArrayBuffers mmap() returns, so unmap() never touches anyone else's memory. */
static const napi_type_tag MAPPING_TAG = {0x6d6465762d766875ULL, 0x6d6170706564ULL};

struct mapping {
  void *addr; /* NULL once unmapped */
  size_t len;
};

/* The buffer was collected: unmap it unless unmap() did already. */
static void finalize_mapping(napi_env env, void *data, void *hint) {
  struct mapping *m = hint;
  if (m->addr != NULL) munmap(m->addr, m->len);
  free(m);
}

/* mmap(fd, offset, length, writable): a MAP_SHARED mapping as an external ArrayBuffer. */
static napi_value js_mmap(napi_env env, napi_callback_info info) {
  napi_value argv[4], ab;
  int fd;
  int64_t offset, length;
  bool writable;
  if (!get_args(env, info, 4, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_int(env, argv[1], "offset", 0, MAX_SAFE_INTEGER, "a safe integer >= 0", &offset) ||
      !get_int(env, argv[2], "length", 1, MAX_SAFE_INTEGER, "a safe integer >= 1", &length) ||
      !get_bool(env, argv[3], "writable", &writable)) {
    return NULL;
  }
  struct mapping *m = malloc(sizeof *m);
  if (m == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  m->len = (size_t)length;
  m->addr = mmap(NULL, m->len, prot, MAP_SHARED, fd, (off_t)offset);
  if (m->addr == MAP_FAILED) {
    int err = errno;
    free(m);
    throw_errno(env, "mmap", err);
    return NULL;
  }
  if (napi_create_external_arraybuffer(env, m->addr, m->len, finalize_mapping, m, &ab) !=
      napi_ok) {
    munmap(m->addr, m->len);
    free(m);
    throw_napi(env);
    return NULL;
  }
  /* From here the finalizer owns m: a failure below leaves the mapping to the collector. */
  NAPI_CALL(napi_type_tag_object(env, ab, &MAPPING_TAG));
  NAPI_CALL(napi_wrap(env, ab, m, NULL, NULL, NULL));
  return ab;
}

/*
 * unmap(buffer): detaches the buffer (its views read as length 0 and cannot reach the freed
 * pages), then unmaps it. Returns false when it was unmapped already.
 */
static napi_value js_unmap(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  bool is = false, tagged = false;
  void *ptr;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_is_arraybuffer(env, argv[0], &is) != napi_ok || !is ||
      napi_check_object_type_tag(env, argv[0], &MAPPING_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, argv[0], &ptr) != napi_ok) {
    throw_type(env, "buffer", "an ArrayBuffer returned by mmap()");
    return NULL;
  }
  struct mapping *m = ptr;
  bool was_mapped = m->addr != NULL;
  if (was_mapped) {
    NAPI_CALL(napi_detach_arraybuffer(env, argv[0]));
    if (munmap(m->addr, m->len) < 0) {
      throw_errno(env, "munmap", errno);
      return NULL;
    }
    m->addr = NULL;
  }
  NAPI_CALL(napi_get_boolean(env, was_mapped, &result));
  return result;
}

/* memfdCreate(name): an anonymous file of size 0 (grow it with ftruncate). */
static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[250]; /* memfd_create(2): at most 249 bytes */
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], "name", name, sizeof name)) {
    return NULL;
  }
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    throw_errno(env, "memfd_create", errno);
    return NULL;
  }
  return make_int(env, fd);
}

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  int64_t length;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_int(env, argv[1], "length", 0, MAX_SAFE_INTEGER, "a safe integer >= 0", &length)) {
    return NULL;
  }
  if (ftruncate(fd, (off_t)length) < 0) throw_errno(env, "ftruncate", errno);
  return NULL;
}

/* fileSize(fd) -> { size, regular }: fstat(2)'s size, and whether the fd is a regular file (a
   memfd, a tmpfs or hugetlbfs file): only those have pages that mmap can map and the size says
   how many. */
static napi_value js_file_size(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  int fd;
  struct stat st;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (fstat(fd, &st) < 0) {
    throw_errno(env, "fstat", errno);
    return NULL;
  }
  NAPI_CALL(napi_create_object(env, &out));
  NAPI_CALL(napi_create_double(env, (double)st.st_size, &v));
  NAPI_CALL(napi_set_named_property(env, out, "size", v));
  NAPI_CALL(napi_get_boolean(env, S_ISREG(st.st_mode), &v));
  NAPI_CALL(napi_set_named_property(env, out, "regular", v));
  return out;
}

/* sealShrink(fd) -> bool: makes the file unable to shrink (F_SEAL_SHRINK, fcntl(2)), or finds
   it sealed so already. Touching a mapped page past the end of a file raises SIGBUS, so a
   mapping of another process's file is safe only while that file cannot shrink. False where
   the file takes no seals (not a memfd, or created without MFD_ALLOW_SEALING). */
static napi_value js_seal_shrink(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int fd;
  bool sealed = false;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
    sealed = true;
  } else if (errno == EPERM) {
    /* F_SEAL_SEAL is set: no seal can be added, but SHRINK may be among those already there. */
    int seals = fcntl(fd, F_GET_SEALS);
    sealed = seals >= 0 && (seals & F_SEAL_SHRINK) != 0;
  } else if (errno != EINVAL) {
    throw_errno(env, "fcntl", errno);
    return NULL;
  }
  NAPI_CALL(napi_get_boolean(env, sealed, &out));
  return out;
}

/* ---- notification ----------------------------------------------------------------------- */

static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t initval;
  if (!get_args(env, info, 1, argv) ||
      !get_int(env, argv[0], "initval", 0, UINT32_MAX, "an integer >= 0 and <= 4294967295",
               &initval)) {
    return NULL;
  }
  int fd = eventfd((unsigned int)initval, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, "eventfd", errno);
    return NULL;
  }
  return make_int(env, fd);
}

/* eventfdWrite(fd, value): adds value to the counter; false when it would overflow (EAGAIN). */
static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  int fd;
  int64_t value;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_int(env, argv[1], "value", 1, MAX_SAFE_INTEGER, "a safe integer >= 1", &value)) {
    return NULL;
  }
  uint64_t v = (uint64_t)value;
  ssize_t n;
  do n = write(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) {
    throw_errno(env, "write", errno);
    return NULL;
  }
  NAPI_CALL(napi_get_boolean(env, n == sizeof v, &result));
  return result;
}

/* eventfdRead(fd): the counter, reset to 0; 0 when nothing was signalled. */
static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  uint64_t v = 0;
  ssize_t n;
  do n = read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) {
    throw_errno(env, "read", errno);
    return NULL;
  }
  if (n < 0) v = 0;
  /* A counter above 2^53 loses precision as a number; it is still > 0, which is what counts. */
  NAPI_CALL(napi_create_double(env, (double)v, &result));
  return result;
}

/*
 * poll(fds, events, timeoutMs): revents per fd (0 for none). Blocks the calling thread up to
 * timeoutMs (-1: no limit), so it belongs in a worker. An interrupted poll returns all zeros,
 * like a timeout: the caller looks again.
 */
static napi_value js_poll(napi_env env, napi_callback_info info) {
  napi_value argv[3], result, v;
  static const char *events_range = "an integer >= 0 and <= 65535";
  int64_t timeout;
  uint32_t count, nevents;
  bool is;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (napi_is_array(env, argv[1], &is) != napi_ok || !is) {
    throw_type(env, "events", "an array of numbers");
    return NULL;
  }
  if (!get_int(env, argv[2], "timeoutMs", -1, INT_MAX, "an integer >= -1 and <= 2147483647",
               &timeout)) {
    return NULL;
  }
  int *fds = malloc(sizeof(int) * MAX_POLL_FDS);
  struct pollfd *pfds = malloc(sizeof(struct pollfd) * MAX_POLL_FDS);
  if (fds == NULL || pfds == NULL) {
    free(fds);
    free(pfds);
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  napi_value out = NULL;
  if (!get_fd_array(env, argv[0], "fds", MAX_POLL_FDS, fds, &count)) goto done;
  napi_get_array_length(env, argv[1], &nevents);
  if (nevents != count) {
    throw_range(env, "events", "an array as long as fds");
    goto done;
  }
  for (uint32_t i = 0; i < count; i++) {
    int64_t ev;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok ||
        !get_int(env, v, "events", 0, 0xffff, events_range, &ev)) {
      goto done;
    }
    pfds[i] = (struct pollfd){.fd = fds[i], .events = (short)ev, .revents = 0};
  }
  if (poll(pfds, count, (int)timeout) < 0) {
    if (errno != EINTR) {
      throw_errno(env, "poll", errno);
      goto done;
    }
    for (uint32_t i = 0; i < count; i++) pfds[i].revents = 0;
  }
  if (napi_create_array_with_length(env, count, &result) != napi_ok) goto napi_failed;
  for (uint32_t i = 0; i < count; i++) {
    if (napi_create_int32(env, pfds[i].revents, &v) != napi_ok ||
        napi_set_element(env, result, i, v) != napi_ok) {
      goto napi_failed;
    }
  }
  out = result;
  goto done;
napi_failed:
  throw_napi(env);
done:
  free(fds);
  free(pfds);
  return out;
}

/* close(fd). EINTR is not an error: Linux has released the fd either way (close(2)). */
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) throw_errno(env, "close", errno);
  return NULL;
}

/* ---- fd watchers on the event loop ------------------------------------------------------ */

/*
 * A watcher calls a JS function from the thread's event loop (libuv's uv_poll) whenever an fd is
 * ready, so the thread that runs a device's datapath in its event loop learns of a kick without
 * blocking in poll(2) and without a timer. One watcher per fd; it keeps the loop alive until
 * stopped. Stopping is idempotent, and a thread that ends (a worker) stops its watchers first.
 */
typedef struct watcher {
  uv_poll_t poll; /* first member: a uv_handle_t* is a watcher* */
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  bool stopped;
  /* Freed when both are true: libuv has closed the handle and no JS handle points here. */
  bool closed;
  bool unowned;
} watcher;

static void watcher_closed(uv_handle_t *handle) {
  watcher *w = (watcher *)handle;
  w->closed = true;
  if (w->unowned) free(w);
}

/* Ends a watcher: no callback runs after this. The memory goes when libuv is done with it. */
static void watcher_stop(watcher *w) {
  if (w->stopped) return;
  w->stopped = true;
  uv_poll_stop(&w->poll);
  napi_remove_env_cleanup_hook(w->env, (void (*)(void *))watcher_stop, w);
  if (w->callback) napi_delete_reference(w->env, w->callback);
  if (w->context) napi_async_destroy(w->env, w->context);
  w->callback = NULL;
  w->context = NULL;
  uv_close((uv_handle_t *)&w->poll, watcher_closed);
}

static void watcher_ready(uv_poll_t *handle, int status, int events) {
  watcher *w = (watcher *)handle;
  if (w->stopped) return;
  int revents = 0;
  if (status < 0) revents |= POLLERR;
  if (events & UV_READABLE) revents |= POLLIN;
  if (events & UV_WRITABLE) revents |= POLLOUT;
  if (events & UV_DISCONNECT) revents |= POLLHUP;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  /* napi_make_callback runs the microtask queue afterwards, as for any I/O callback of Node's
     own; its receiver must be an object (it refuses undefined): the global one. */
  if (napi_get_reference_value(env, w->callback, &fn) == napi_ok && fn != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, revents, &arg) == napi_ok) {
    if (napi_make_callback(env, w->context, recv, fn, 1, &arg, &result) == napi_pending_exception) {
      /* Nobody up the stack can catch it: report it as Node reports a throw in an I/O callback. */
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void watcher_finalize(napi_env env, void *data, void *hint) {
  /* The JS handle is gone: nobody can stop the watcher any more, so it stops here. */
  watcher *w = data;
  watcher_stop(w);
  w->unowned = true;
  if (w->closed) free(w);
}

/* watch(fd, events, callback(revents)) -> handle: calls back while `fd` is ready for `events`. */
static napi_value js_watch(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t events;
  napi_valuetype type;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], "fd", &fd) ||
      !get_int(env, argv[1], "events", 0, 0xffff, "an integer >= 0 and <= 65535", &events))
    return NULL;
  NAPI_CALL(napi_typeof(env, argv[2], &type));
  if (type != napi_function) {
    throw_type(env, "callback", "a function");
    return NULL;
  }
  int uv_events = 0;
  if (events & POLLIN) uv_events |= UV_READABLE;
  if (events & POLLOUT) uv_events |= UV_WRITABLE;
  if (events & POLLHUP) uv_events |= UV_DISCONNECT;
  if (uv_events == 0) {
    throw_range(env, "events", "POLLIN, POLLOUT or POLLHUP");
    return NULL;
  }
  struct uv_loop_s *loop;
  NAPI_CALL(napi_get_uv_event_loop(env, &loop));
  watcher *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, "watch", ENOMEM);
    return NULL;
  }
  w->env = env;
  w->unowned = true; /* until a JS handle wraps it */
  int err = uv_poll_init(loop, &w->poll, fd);
  if (err < 0) {
    free(w);
    throw_errno(env, "uv_poll_init", -err);
    return NULL;
  }
  napi_value handle, name;
  if (napi_create_reference(env, argv[2], 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, "vhost_user.watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &w->context) != napi_ok ||
      napi_add_env_cleanup_hook(env, (void (*)(void *))watcher_stop, w) != napi_ok) {
    w->stopped = true; /* nothing to remove: stop by hand */
    if (w->callback) napi_delete_reference(env, w->callback);
    if (w->context) napi_async_destroy(env, w->context);
    uv_close((uv_handle_t *)&w->poll, watcher_closed);
    throw_napi(env);
    return NULL;
  }
  err = uv_poll_start(&w->poll, uv_events, watcher_ready);
  if (err < 0) {
    watcher_stop(w);
    throw_errno(env, "uv_poll_start", -err);
    return NULL;
  }
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_wrap(env, handle, w, watcher_finalize, NULL, NULL) != napi_ok) {
    watcher_stop(w);
    throw_napi(env);
    return NULL;
  }
  w->unowned = false;
  return handle;
}

/* unwatch(handle) -> false when it was stopped already. */
static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  void *data = NULL;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_unwrap(env, argv[0], &data) != napi_ok || data == NULL) {
    throw_type(env, "handle", "a handle from watch()");
    return NULL;
  }
  watcher *w = data;
  bool was_running = !w->stopped;
  watcher_stop(w);
  NAPI_CALL(napi_get_boolean(env, was_running, &out));
  return out;
}

/* ---- module ----------------------------------------------------------------------------- */

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"listen", js_listen},         {"connect", js_connect},
      {"accept", js_accept},         {"socketpair", js_socketpair},
      {"sendmsg", js_sendmsg},       {"recvmsg", js_recvmsg},
      {"peerCred", js_peer_cred},    {"mmap", js_mmap},
      {"unmap", js_unmap},           {"memfdCreate", js_memfd_create},
      {"ftruncate", js_ftruncate},   {"eventfd", js_eventfd},
      {"eventfdWrite", js_eventfd_write}, {"eventfdRead", js_eventfd_read},
      {"poll", js_poll},             {"close", js_close},
      {"watch", js_watch},           {"unwatch", js_unwatch},
      {"fileSize", js_file_size},    {"sealShrink", js_seal_shrink},
  };
  static const struct {
    const char *name;
    int value;
  } consts[] = {
      {"POLLIN", POLLIN},   {"POLLOUT", POLLOUT},   {"POLLERR", POLLERR},
      {"POLLHUP", POLLHUP}, {"POLLNVAL", POLLNVAL}, {"MAX_FDS", MAX_FDS},
      {"MAX_POLL_FDS", MAX_POLL_FDS},
  };
  napi_value v;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    NAPI_CALL(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &v));
    NAPI_CALL(napi_set_named_property(env, exports, fns[i].name, v));
  }
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    NAPI_CALL(napi_create_int32(env, consts[i].value, &v));
    NAPI_CALL(napi_set_named_property(env, exports, consts[i].name, v));
  }
  return exports;
}
