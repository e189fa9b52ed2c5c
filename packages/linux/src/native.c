// The libc and system calls node:fs lacks, as a Node-API addon (dist/linux.node, built by
// scripts/build-addon.mjs). Each function does one call and returns what the kernel returned, or
// -errno: no function here throws, allocates what outlives the call or decides anything. Errors,
// retries and every policy are the TypeScript's (ffi.ts and its callers). docs/DESIGN.md, "libc
// through tsbuild's own addon", says why this is not koffi any more.
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define MAX_ARGS 8

// A call's arguments; a bad one (wrong type) ends the call with a JS TypeError.
typedef struct {
  napi_env env;
  size_t argc;
  napi_value argv[MAX_ARGS];
  int bad;
  // Strings copied for the call, freed by done().
  char *owned[MAX_ARGS];
  int nowned;
} call_t;

static void begin(call_t *c, napi_env env, napi_callback_info info) {
  memset(c, 0, sizeof *c);
  c->env = env;
  c->argc = MAX_ARGS;
  napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL);
}

static napi_value fail(call_t *c, const char *what) {
  if (!c->bad) napi_throw_type_error(c->env, NULL, what);
  c->bad = 1;
  return NULL;
}

static napi_value arg(call_t *c, size_t i) {
  if (i < c->argc) return c->argv[i];
  napi_value u;
  napi_get_undefined(c->env, &u);
  return u;
}

static int is_nullish(call_t *c, size_t i) {
  napi_valuetype t;
  if (napi_typeof(c->env, arg(c, i), &t) != napi_ok) return 1;
  return t == napi_null || t == napi_undefined;
}

static int32_t i32(call_t *c, size_t i) {
  int32_t v = 0;
  if (napi_get_value_int32(c->env, arg(c, i), &v) != napi_ok) fail(c, "expected a number");
  return v;
}

static uint32_t u32(call_t *c, size_t i) {
  uint32_t v = 0;
  if (napi_get_value_uint32(c->env, arg(c, i), &v) != napi_ok) fail(c, "expected a number");
  return v;
}

static int64_t i64(call_t *c, size_t i) {
  int64_t v = 0;
  if (napi_get_value_int64(c->env, arg(c, i), &v) != napi_ok) fail(c, "expected a number");
  return v;
}

static uint64_t u64_big(call_t *c, size_t i) {
  uint64_t v = 0;
  bool lossless;
  if (napi_get_value_bigint_uint64(c->env, arg(c, i), &v, &lossless) != napi_ok) fail(c, "expected a bigint");
  return v;
}

// A string argument, NUL-terminated, copied for the call; NULL for null or undefined when `nullable`.
static char *str(call_t *c, size_t i, int nullable) {
  if (nullable && is_nullish(c, i)) return NULL;
  size_t len = 0;
  if (napi_get_value_string_utf8(c->env, arg(c, i), NULL, 0, &len) != napi_ok) return fail(c, "expected a string"), NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return fail(c, "out of memory"), NULL;
  napi_get_value_string_utf8(c->env, arg(c, i), s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    return fail(c, "a string with a NUL byte"), NULL;
  }
  c->owned[c->nowned++] = s;
  return s;
}

// The bytes of a Buffer or typed array argument; NULL and 0 for null or undefined when `nullable`.
static void *bytes(call_t *c, size_t i, size_t *len, int nullable) {
  *len = 0;
  if (nullable && is_nullish(c, i)) return NULL;
  bool typed = false;
  napi_is_typedarray(c->env, arg(c, i), &typed);
  if (!typed) return fail(c, "expected a Buffer or typed array"), NULL;
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value ab;
  if (napi_get_typedarray_info(c->env, arg(c, i), &type, &length, &data, &ab, &offset) != napi_ok) return fail(c, "expected a Buffer or typed array"), NULL;
  size_t unit = 1;
  switch (type) {
  case napi_int16_array:
  case napi_uint16_array:
    unit = 2;
    break;
  case napi_int32_array:
  case napi_uint32_array:
  case napi_float32_array:
    unit = 4;
    break;
  case napi_float64_array:
  case napi_bigint64_array:
  case napi_biguint64_array:
    unit = 8;
    break;
  default:
    unit = 1;
  }
  *len = length * unit;
  return data;
}

static napi_value done(call_t *c, int64_t result) {
  for (int k = 0; k < c->nowned; k++) free(c->owned[k]);
  if (c->bad) return NULL;
  napi_value out;
  napi_create_int64(c->env, result, &out);
  return out;
}

// r, or -errno where r is -1.
static int64_t ret(int64_t r) { return r < 0 ? -(int64_t)errno : r; }

#define FN(name) static napi_value name(napi_env env, napi_callback_info info)
#define BEGIN                                                                                      \
  call_t c_;                                                                                       \
  call_t *c = &c_;                                                                                 \
  begin(c, env, info)
#define GUARD                                                                                      \
  if (c->bad) return done(c, 0)

FN(Flock) {
  BEGIN;
  int fd = i32(c, 0), op = i32(c, 1);
  GUARD;
  return done(c, ret(flock(fd, op)));
}

// flock(2) on libuv's pool, so that waiting for another process's lock never blocks the event
// loop; the callback gets (null, result).
typedef struct {
  napi_async_work work;
  napi_ref callback;
  int fd, op;
  int64_t result;
} flock_work_t;

static void flock_execute(napi_env env, void *data) {
  (void)env;
  flock_work_t *w = data;
  w->result = ret(flock(w->fd, w->op));
}

static void flock_complete(napi_env env, napi_status status, void *data) {
  flock_work_t *w = data;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &global);
  napi_get_null(env, &argv[0]);
  napi_create_int64(env, status == napi_ok ? w->result : -ECANCELED, &argv[1]);
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, w->callback);
  napi_delete_async_work(env, w->work);
  free(w);
}

FN(FlockAsync) {
  BEGIN;
  int fd = i32(c, 0), op = i32(c, 1);
  napi_valuetype t;
  napi_typeof(env, arg(c, 2), &t);
  if (t != napi_function) fail(c, "expected a callback");
  GUARD;
  flock_work_t *w = calloc(1, sizeof *w);
  if (w == NULL) return fail(c, "out of memory"), done(c, 0);
  w->fd = fd;
  w->op = op;
  napi_value name;
  napi_create_string_utf8(env, "flock", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, arg(c, 2), 1, &w->callback);
  napi_create_async_work(env, NULL, name, flock_execute, flock_complete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return done(c, 0);
}

FN(Mount) {
  BEGIN;
  const char *source = str(c, 0, 1), *target = str(c, 1, 0), *fstype = str(c, 2, 1);
  int64_t flags = i64(c, 3);
  const char *data = str(c, 4, 1);
  GUARD;
  return done(c, ret(mount(source, target, fstype, (unsigned long)flags, data)));
}

FN(Umount2) {
  BEGIN;
  const char *target = str(c, 0, 0);
  int flags = i32(c, 1);
  GUARD;
  return done(c, ret(umount2(target, flags)));
}

FN(Chroot) {
  BEGIN;
  const char *path = str(c, 0, 0);
  GUARD;
  return done(c, ret(chroot(path)));
}

FN(Mknod) {
  BEGIN;
  const char *path = str(c, 0, 0);
  uint32_t mode = u32(c, 1);
  uint64_t dev = u64_big(c, 2);
  GUARD;
  return done(c, ret(mknod(path, mode, (dev_t)dev)));
}

FN(Lchown) {
  BEGIN;
  const char *path = str(c, 0, 0);
  uint32_t uid = u32(c, 1), gid = u32(c, 2);
  GUARD;
  return done(c, ret(lchown(path, uid, gid)));
}

FN(Lgetxattr) {
  BEGIN;
  const char *path = str(c, 0, 0), *name = str(c, 1, 0);
  size_t len;
  void *buf = bytes(c, 2, &len, 1);
  GUARD;
  return done(c, ret(lgetxattr(path, name, buf, len)));
}

FN(Lsetxattr) {
  BEGIN;
  const char *path = str(c, 0, 0), *name = str(c, 1, 0);
  size_t len;
  void *buf = bytes(c, 2, &len, 0);
  int flags = i32(c, 3);
  GUARD;
  return done(c, ret(lsetxattr(path, name, buf, len, flags)));
}

FN(Llistxattr) {
  BEGIN;
  const char *path = str(c, 0, 0);
  size_t len;
  void *buf = bytes(c, 1, &len, 1);
  GUARD;
  return done(c, ret(llistxattr(path, buf, len)));
}

FN(Lremovexattr) {
  BEGIN;
  const char *path = str(c, 0, 0), *name = str(c, 1, 0);
  GUARD;
  return done(c, ret(lremovexattr(path, name)));
}

// openat2(dirfd, path, how): `how` is struct open_how, given whole.
FN(Openat2) {
  BEGIN;
  int dirfd = i32(c, 0);
  const char *path = str(c, 1, 0);
  size_t len;
  void *how = bytes(c, 2, &len, 0);
  GUARD;
  return done(c, ret(syscall(SYS_openat2, dirfd, path, how, len)));
}

FN(OpenTree) {
  BEGIN;
  int dirfd = i32(c, 0);
  const char *path = str(c, 1, 0);
  uint32_t flags = u32(c, 2);
  GUARD;
  return done(c, ret(syscall(SYS_open_tree, dirfd, path, flags)));
}

// mount_setattr(fd, path, flags, attr): `attr` is struct mount_attr, given whole.
FN(MountSetattr) {
  BEGIN;
  int fd = i32(c, 0);
  const char *path = str(c, 1, 0);
  uint32_t flags = u32(c, 2);
  size_t len;
  void *attr = bytes(c, 3, &len, 0);
  GUARD;
  return done(c, ret(syscall(SYS_mount_setattr, fd, path, flags, attr, len)));
}

FN(PidfdOpen) {
  BEGIN;
  int pid = i32(c, 0);
  uint32_t flags = u32(c, 1);
  GUARD;
  return done(c, ret(syscall(SYS_pidfd_open, pid, flags)));
}

FN(PidfdGetfd) {
  BEGIN;
  int pidfd = i32(c, 0), fd = i32(c, 1);
  uint32_t flags = u32(c, 2);
  GUARD;
  return done(c, ret(syscall(SYS_pidfd_getfd, pidfd, fd, flags)));
}

// bpf(BPF_PROG_LOAD): (type, instructions, license, log buffer or null, log level) → program fd.
FN(BpfProgLoad) {
  BEGIN;
  uint32_t type = u32(c, 0);
  size_t insns_len, license_len, log_len;
  void *insns = bytes(c, 1, &insns_len, 0);
  void *license = bytes(c, 2, &license_len, 0);
  void *log = bytes(c, 3, &log_len, 1);
  uint32_t level = u32(c, 4);
  GUARD;
  if (license_len == 0 || ((char *)license)[license_len - 1] != 0) return fail(c, "the license must end with a NUL byte"), done(c, 0);
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = type;
  attr.insn_cnt = (uint32_t)(insns_len / sizeof(struct bpf_insn));
  attr.insns = (uint64_t)(uintptr_t)insns;
  attr.license = (uint64_t)(uintptr_t)license;
  if (log != NULL && level != 0) {
    attr.log_level = level;
    attr.log_size = (uint32_t)log_len;
    attr.log_buf = (uint64_t)(uintptr_t)log;
  }
  return done(c, ret(syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr)));
}

// bpf(BPF_PROG_ATTACH): (target fd, program fd, attach type, flags).
FN(BpfProgAttach) {
  BEGIN;
  uint32_t target = u32(c, 0), prog = u32(c, 1), type = u32(c, 2), flags = u32(c, 3);
  GUARD;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_fd = target;
  attr.attach_bpf_fd = prog;
  attr.attach_type = type;
  attr.attach_flags = flags;
  return done(c, ret(syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr)));
}

FN(Ioctl) {
  BEGIN;
  int fd = i32(c, 0);
  int64_t request = i64(c, 1);
  size_t len;
  void *buf = bytes(c, 2, &len, 0);
  GUARD;
  return done(c, ret(ioctl(fd, (unsigned long)request, buf)));
}

// capget(header, data): the version-3 header and two data words, as the caller laid them out.
FN(Capget) {
  BEGIN;
  size_t hlen, dlen;
  void *header = bytes(c, 0, &hlen, 0);
  void *data = bytes(c, 1, &dlen, 0);
  GUARD;
  if (hlen < sizeof(struct __user_cap_header_struct) || dlen < 2 * sizeof(struct __user_cap_data_struct)) return fail(c, "capget: buffers too small"), done(c, 0);
  return done(c, ret(syscall(SYS_capget, header, data)));
}

// utimensat(dirfd, path, [atime sec, nsec, mtime sec, nsec], flags).
FN(Utimensat) {
  BEGIN;
  int dirfd = i32(c, 0);
  const char *path = str(c, 1, 0);
  struct timespec times[2];
  times[0].tv_sec = (time_t)i64(c, 2);
  times[0].tv_nsec = (long)i64(c, 3);
  times[1].tv_sec = (time_t)i64(c, 4);
  times[1].tv_nsec = (long)i64(c, 5);
  int flags = i32(c, 6);
  GUARD;
  return done(c, ret(utimensat(dirfd, path, times, flags)));
}

// [fd, fd] of socketpair(2), or -errno.
FN(Socketpair) {
  BEGIN;
  int domain = i32(c, 0), type = i32(c, 1), protocol = i32(c, 2);
  GUARD;
  int sv[2];
  if (socketpair(domain, type, protocol, sv) < 0) return done(c, -(int64_t)errno);
  done(c, 0);
  napi_value out, a, b;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int32(env, sv[0], &a);
  napi_create_int32(env, sv[1], &b);
  napi_set_element(env, out, 0, a);
  napi_set_element(env, out, 1, b);
  return out;
}

// [waitpid's result or -errno, the status].
FN(Waitpid) {
  BEGIN;
  int pid = i32(c, 0), options = i32(c, 1);
  GUARD;
  int status = 0;
  int64_t r = ret(waitpid(pid, &status, options));
  done(c, 0);
  napi_value out, a, b;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int64(env, r, &a);
  napi_create_int32(env, status, &b);
  napi_set_element(env, out, 0, a);
  napi_set_element(env, out, 1, b);
  return out;
}

// An array of strings as a NULL-terminated vector, each copied for the call.
static char **vector(call_t *c, size_t i) {
  napi_value a = arg(c, i);
  bool is_array = false;
  napi_is_array(c->env, a, &is_array);
  if (!is_array) return fail(c, "expected an array of strings"), NULL;
  uint32_t n = 0;
  napi_get_array_length(c->env, a, &n);
  char **v = calloc((size_t)n + 1, sizeof *v);
  if (v == NULL) return fail(c, "out of memory"), NULL;
  for (uint32_t k = 0; k < n; k++) {
    napi_value e;
    size_t len = 0;
    napi_get_element(c->env, a, k, &e);
    if (napi_get_value_string_utf8(c->env, e, NULL, 0, &len) != napi_ok) {
      fail(c, "expected an array of strings");
      break;
    }
    v[k] = malloc(len + 1);
    if (v[k] == NULL) {
      fail(c, "out of memory");
      break;
    }
    napi_get_value_string_utf8(c->env, e, v[k], len + 1, &len);
    if (strlen(v[k]) != len) {
      fail(c, "a string with a NUL byte");
      break;
    }
  }
  return v;
}

static void free_vector(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

// spawn(path, argv, envp, fds, setsid) → pid, or -errno: posix_spawn(3) with fds[k] as the
// child's descriptor k (each through a close-on-exec copy numbered above every slot, so that
// setting one slot never overwrites the source of another), every signal at its default
// disposition (glibc's two internal ones too: ignored would survive execve) and none blocked.
FN(Spawn) {
  BEGIN;
  const char *path = str(c, 0, 0);
  char **argv = vector(c, 1);
  char **envp = vector(c, 2);
  napi_value fds = arg(c, 3);
  bool is_array = false;
  napi_is_array(env, fds, &is_array);
  if (!is_array) fail(c, "expected an array of descriptors");
  bool setsid_ = false;
  napi_get_value_bool(env, arg(c, 4), &setsid_);
  uint32_t n = 0;
  if (!c->bad) napi_get_array_length(env, fds, &n);
  int *copies = NULL;
  int64_t result = 0;
  if (!c->bad) {
    copies = calloc(n > 0 ? n : 1, sizeof *copies);
    if (copies == NULL) fail(c, "out of memory");
  }
  uint32_t made = 0;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  int have_actions = 0, have_attr = 0;
  if (!c->bad) {
    for (; made < n; made++) {
      napi_value e;
      int32_t fd;
      napi_get_element(env, fds, made, &e);
      if (napi_get_value_int32(env, e, &fd) != napi_ok) {
        fail(c, "expected an array of descriptors");
        break;
      }
      copies[made] = fcntl(fd, F_DUPFD_CLOEXEC, (int)n);
      if (copies[made] < 0) {
        result = -(int64_t)errno;
        break;
      }
    }
  }
  if (!c->bad && result == 0) {
    posix_spawn_file_actions_init(&actions);
    have_actions = 1;
    for (uint32_t k = 0; k < n; k++) posix_spawn_file_actions_adddup2(&actions, copies[k], (int)k);
    posix_spawnattr_init(&attr);
    have_attr = 1;
    sigset_t all, none;
    sigfillset(&all);
    // SIGCANCEL (32) and SIGSETXID (33), which sigfillset leaves out: bits 31 and 32.
    ((unsigned long *)&all)[0] |= (1UL << 31) | (1UL << 32);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (setsid_ ? POSIX_SPAWN_SETSID : 0));
    pid_t pid;
    int err = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    result = err != 0 ? -(int64_t)err : pid;
  }
  if (have_actions) posix_spawn_file_actions_destroy(&actions);
  if (have_attr) posix_spawnattr_destroy(&attr);
  for (uint32_t k = 0; k < made; k++) close(copies[k]);
  free(copies);
  free_vector(argv);
  free_vector(envp);
  return done(c, result);
}

FN(Exit) {
  BEGIN;
  int code = i32(c, 0);
  _exit(c->bad ? 1 : code);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"flock", Flock},
      {"flockAsync", FlockAsync},
      {"mount", Mount},
      {"umount2", Umount2},
      {"chroot", Chroot},
      {"mknod", Mknod},
      {"lchown", Lchown},
      {"lgetxattr", Lgetxattr},
      {"lsetxattr", Lsetxattr},
      {"llistxattr", Llistxattr},
      {"lremovexattr", Lremovexattr},
      {"openat2", Openat2},
      {"openTree", OpenTree},
      {"mountSetattr", MountSetattr},
      {"pidfdOpen", PidfdOpen},
      {"pidfdGetfd", PidfdGetfd},
      {"bpfProgLoad", BpfProgLoad},
      {"bpfProgAttach", BpfProgAttach},
      {"ioctl", Ioctl},
      {"capget", Capget},
      {"utimensat", Utimensat},
      {"socketpair", Socketpair},
      {"waitpid", Waitpid},
      {"spawn", Spawn},
      {"exit", Exit},
  };
  napi_property_descriptor props[sizeof fns / sizeof fns[0]];
  memset(props, 0, sizeof props);
  for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
    props[k].utf8name = fns[k].name;
    props[k].method = fns[k].fn;
    props[k].attributes = napi_enumerable;
  }
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], props);
  return exports;
}
