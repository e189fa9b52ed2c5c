/*
 * The helper of a run: what tsbuild's built-in runtime executes for the run's new namespaces, as
 *   run-helper --namespaces=TSBUILD_PID[,net]
 * (executed from a read-only mount of this file, passed as fd 5, and the init's, if any, as fd 6:
 * readOnlyExecutable in helper-chain.ts). That process does what
 *   setpriv --pdeathsig KILL -- unshare --mount --uts --ipc --pid --fork --kill-child [--net]
 * does (enter_namespaces), and its child, PID 1 of the new PID namespace, goes on; a run in a
 * user namespace of its own still starts as `setpriv … unshare … -- run-helper`, since util-linux
 * maps its ids. The child reads one request on fd 3 (encodeRunRequest in
 * helper-protocol.ts says how it is written), makes the container's world in its own mount
 * namespace (the rootfs at /, /proc, /dev, /sys, the run's mounts and /etc files, masked paths),
 * takes the container's credentials, capabilities and seccomp filter, and execve's the command,
 * which thereby becomes PID 1 of the PID namespace. Before that it answers on fd 3 with one JSON
 * line: an error ({"error":{"code","message"}}, exit 125) or {"exec":true} just before execve.
 *
 * It is C, not TypeScript, for one measured reason (docs/DESIGN.md, "The RUN helper is C"): a
 * node process needs ~80 ms to boot beside tsbuild on two cores, most of a short RUN, and this
 * needs ~1. Everything it decides comes from the request: tsbuild (run.ts, security-spec.ts)
 * resolves and validates the options; what only the container's mount namespace can answer (a
 * path inside the rootfs, the network namespace's address) is looked up here.
 *
 * Every path inside the rootfs comes from an image or a Dockerfile and is walked here the way the
 * kernel would if the rootfs were `/` (inRootWalk of @tsbuild/oci: `..` stops at the root, every
 * symlink resolves inside it), through descriptors opened without following any link, and
 * mounted onto by descriptor (/proc/self/fd/N), so that no symlink of the image can lead a mount
 * or a mkdir out of the rootfs (runc CVE-2021-30465).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

/* Descriptors the chain starts with (helper-protocol.ts). */
#define CONTROL_FD 3
#define COMMAND_STDERR_FD 4
#define SELF_EXE_FD 5
#define INIT_EXE_FD 6
/* Exit status of a helper that failed before execve (HELPER_SETUP_FAILED). */
#define SETUP_FAILED 125
#define MAX_SYMLINKS 40
#define MAX_MOUNT_DATA 4095
#define MAX_REQUEST (64u << 20)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define EXEC_LINE "{\"exec\":true}\n"
#define PTY_TAKEN_LINE "{\"ptyTaken\":true}"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif

/* ---------------------------------------------------------------------------------------------
 * Failing: one JSON line on the control socket, then exit 125.
 */

static const char *ename(int e) {
  const char *n = strerrorname_np(e);
  static char buf[16];
  if (n != NULL) return n;
  snprintf(buf, sizeof buf, "E%d", e);
  return buf;
}

/* write(2) of all of `len`, on a socket without SIGPIPE (the command must get default dispositions). */
static void send_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) return;
    p += n;
    len -= (size_t)n;
  }
}

static _Noreturn void vfail(const char *code, const char *fmt, va_list ap) {
  char msg[8192];
  vsnprintf(msg, sizeof msg, fmt, ap);
  char out[8192 * 6 + 64];
  size_t o = (size_t)snprintf(out, sizeof out, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
  for (const unsigned char *p = (const unsigned char *)msg; *p != 0; p++) {
    if (*p == '"' || *p == '\\') {
      out[o++] = '\\';
      out[o++] = (char)*p;
    } else if (*p < 0x20) {
      o += (size_t)snprintf(out + o, sizeof out - o, "\\u%04x", *p);
    } else {
      out[o++] = (char)*p;
    }
  }
  o += (size_t)snprintf(out + o, sizeof out - o, "\"}}\n");
  send_all(CONTROL_FD, out, o);
  _exit(SETUP_FAILED);
}

/* A failure before the command starts; tsbuild turns the code into its error type. */
static _Noreturn __attribute__((format(printf, 2, 3))) void fail(const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(code, fmt, ap);
}

#define FAILED(...) fail("FAILED_PRECONDITION", __VA_ARGS__)

/* After EXEC_LINE: the status is the command's, so say it on its stderr, as a shell would. */
static _Noreturn __attribute__((format(printf, 2, 3))) void fail_exec(int status, const char *fmt, ...) {
  char msg[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof msg - 2) n = (int)sizeof msg - 2;
  msg[n++] = '\n';
  if (write(2, "tsbuild: ", 9) < 0 || write(2, msg, (size_t)n) < 0) _exit(status);
  _exit(status);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n == 0 ? 1 : n);
  if (p == NULL) fail("INTERNAL", "out of memory");
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n == 0 ? 1 : n);
  if (p == NULL) fail("INTERNAL", "out of memory");
  return p;
}

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (d == NULL) fail("INTERNAL", "out of memory");
  return d;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
  va_list ap;
  char *s;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) fail("INTERNAL", "out of memory");
  return s;
}

/* A growing array of strings, NULL-terminated (for execve). */
struct strv {
  char **v;
  size_t n;
};

static void strv_push(struct strv *a, char *s) {
  a->v = xrealloc(a->v, (a->n + 2) * sizeof *a->v);
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
}

#define PUSH(arr, n) ((arr) = xrealloc((arr), ((n) + 1) * sizeof *(arr)), memset(&(arr)[(n)], 0, sizeof *(arr)), &(arr)[(n)++])

/* ---------------------------------------------------------------------------------------------
 * The request (helper-protocol.ts encodeRunRequest): a little-endian u32 length, then that many
 * bytes of `key=value` records, each ended by a NUL. A list is its key repeated; an item of a
 * list of records starts with its first key (root.type, mount.destination, device.host).
 */

struct mount_entry {
  char *type, *source;
  struct strv options;
};

struct extra_mount {
  char *destination, *type, *source, *source_path;
  struct strv options;
};

struct rlimit_request {
  char *name;
  int resource;
  long long soft, hard; /* -1: unlimited */
  bool or_lower;
};

struct device {
  char *host, *path;
  char type;
  unsigned major, minor;
};

struct request {
  long chain_pid;
  char *target;
  struct mount_entry *rootfs;
  size_t nrootfs;
  struct extra_mount *mounts;
  size_t nmounts;
  struct strv args, env, masked, readonly;
  char *cwd, *hostname, *network, *init;
  unsigned uid, gid;
  gid_t *gids;
  size_t ngids;
  bool terminal, security, userns, no_new_privs;
  uint64_t caps;
  unsigned char *seccomp;
  size_t seccomp_len;
  char *etc_hosts, *etc_resolv, *etc_hostname; /* etc_hosts NULL: this network's default */
  char *selinux_mount, *selinux_process, *apparmor;
  struct rlimit_request *rlimits;
  size_t nrlimits;
  bool has_oom;
  int oom;
  struct device *devices;
  size_t ndevices;
  char *shm;
};

static void read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n == 0) _exit(SETUP_FAILED); /* tsbuild went away */
    if (n < 0) FAILED("read the request: %s", ename(errno));
    p += n;
    len -= (size_t)n;
  }
}

static long long number(const char *key, const char *v, long long min, long long max) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != 0 || n < min || n > max) fail("INTERNAL", "bad request: %s=%s", key, v);
  return n;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static unsigned char *unhex(const char *v, size_t *len) {
  size_t n = strlen(v);
  if (n % 2 != 0) fail("INTERNAL", "bad request: seccomp program of odd length");
  unsigned char *out = xmalloc(n / 2);
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
    if (hi < 0 || lo < 0) fail("INTERNAL", "bad request: seccomp program is not hex");
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  *len = n / 2;
  return out;
}

#define LAST(arr, n, key)                                                  \
  ({                                                                       \
    if ((n) == 0) fail("INTERNAL", "bad request: %s before its item", key); \
    &(arr)[(n) - 1];                                                       \
  })

static void read_request(struct request *r) {
  uint32_t len;
  read_full(CONTROL_FD, &len, sizeof len);
  if (len > MAX_REQUEST) fail("INTERNAL", "bad request: %u bytes", len);
  char *buf = xmalloc((size_t)len + 1);
  read_full(CONTROL_FD, buf, len);
  buf[len] = 0;
  memset(r, 0, sizeof *r);
  for (char *rec = buf, *next; rec < buf + len; rec = next) {
    next = rec + strlen(rec) + 1;
    char *eq = strchr(rec, '=');
    if (eq == NULL) fail("INTERNAL", "bad request record: %.80s", rec);
    *eq = 0;
    const char *k = rec;
    char *v = eq + 1;
    if (!strcmp(k, "chain_pid")) r->chain_pid = (long)number(k, v, 1, 1ll << 31);
    else if (!strcmp(k, "target")) r->target = v;
    else if (!strcmp(k, "root.type")) PUSH(r->rootfs, r->nrootfs)->type = v;
    else if (!strcmp(k, "root.source")) LAST(r->rootfs, r->nrootfs, k)->source = v;
    else if (!strcmp(k, "root.option")) strv_push(&LAST(r->rootfs, r->nrootfs, k)->options, v);
    else if (!strcmp(k, "mount.destination")) PUSH(r->mounts, r->nmounts)->destination = v;
    else if (!strcmp(k, "mount.type")) LAST(r->mounts, r->nmounts, k)->type = v;
    else if (!strcmp(k, "mount.source")) LAST(r->mounts, r->nmounts, k)->source = v;
    else if (!strcmp(k, "mount.source_path")) LAST(r->mounts, r->nmounts, k)->source_path = v;
    else if (!strcmp(k, "mount.option")) strv_push(&LAST(r->mounts, r->nmounts, k)->options, v);
    else if (!strcmp(k, "arg")) strv_push(&r->args, v);
    else if (!strcmp(k, "env")) strv_push(&r->env, v);
    else if (!strcmp(k, "cwd")) r->cwd = v;
    else if (!strcmp(k, "uid")) r->uid = (unsigned)number(k, v, 0, 0xfffffffe);
    else if (!strcmp(k, "gid")) r->gid = (unsigned)number(k, v, 0, 0xfffffffe);
    else if (!strcmp(k, "gid.extra")) *PUSH(r->gids, r->ngids) = (gid_t)number(k, v, 0, 0xfffffffe);
    else if (!strcmp(k, "hostname")) r->hostname = v;
    else if (!strcmp(k, "network")) r->network = v;
    else if (!strcmp(k, "terminal")) r->terminal = true;
    else if (!strcmp(k, "init")) r->init = v;
    else if (!strcmp(k, "security")) r->security = true;
    else if (!strcmp(k, "userns")) r->userns = true;
    else if (!strcmp(k, "caps")) r->caps = (uint64_t)strtoull(v, NULL, 16);
    else if (!strcmp(k, "seccomp")) r->seccomp = unhex(v, &r->seccomp_len);
    else if (!strcmp(k, "no_new_privs")) r->no_new_privs = true;
    else if (!strcmp(k, "masked")) strv_push(&r->masked, v);
    else if (!strcmp(k, "readonly")) strv_push(&r->readonly, v);
    else if (!strcmp(k, "etc.hosts")) r->etc_hosts = v;
    else if (!strcmp(k, "etc.resolv")) r->etc_resolv = v;
    else if (!strcmp(k, "etc.hostname")) r->etc_hostname = v;
    else if (!strcmp(k, "selinux.mount")) r->selinux_mount = v;
    else if (!strcmp(k, "selinux.process")) r->selinux_process = v;
    else if (!strcmp(k, "apparmor")) r->apparmor = v;
    else if (!strcmp(k, "rlimit.name")) PUSH(r->rlimits, r->nrlimits)->name = v;
    else if (!strcmp(k, "rlimit.resource")) LAST(r->rlimits, r->nrlimits, k)->resource = (int)number(k, v, 0, 64);
    else if (!strcmp(k, "rlimit.soft")) LAST(r->rlimits, r->nrlimits, k)->soft = number(k, v, -1, INT64_MAX);
    else if (!strcmp(k, "rlimit.hard")) LAST(r->rlimits, r->nrlimits, k)->hard = number(k, v, -1, INT64_MAX);
    else if (!strcmp(k, "rlimit.or_lower")) LAST(r->rlimits, r->nrlimits, k)->or_lower = true;
    else if (!strcmp(k, "oom_score_adj")) r->has_oom = true, r->oom = (int)number(k, v, -1000, 1000);
    else if (!strcmp(k, "device.host")) PUSH(r->devices, r->ndevices)->host = v;
    else if (!strcmp(k, "device.path")) LAST(r->devices, r->ndevices, k)->path = v;
    else if (!strcmp(k, "device.type")) LAST(r->devices, r->ndevices, k)->type = v[0];
    else if (!strcmp(k, "device.major")) LAST(r->devices, r->ndevices, k)->major = (unsigned)number(k, v, 0, 0xffffffff);
    else if (!strcmp(k, "device.minor")) LAST(r->devices, r->ndevices, k)->minor = (unsigned)number(k, v, 0, 0xffffffff);
    else if (!strcmp(k, "shm_size")) r->shm = v;
    else fail("INTERNAL", "bad request: unknown field %s (tsbuild and its helper are of different builds)", k);
  }
  if (r->target == NULL || r->cwd == NULL || r->hostname == NULL || r->network == NULL || r->args.n == 0) fail("INTERNAL", "bad request: a field is missing");
  for (size_t i = 0; i < r->nrootfs; i++)
    if (r->rootfs[i].source == NULL) fail("INTERNAL", "bad request: a rootfs mount without a source");
  for (size_t i = 0; i < r->nmounts; i++)
    if (r->mounts[i].type == NULL) fail("INTERNAL", "bad request: a mount without a type");
  for (size_t i = 0; i < r->ndevices; i++)
    if (r->devices[i].path == NULL) fail("INTERNAL", "bad request: a device without a path");
  if (r->env.v == NULL) strv_push(&r->env, NULL), r->env.n = 0;
}

/* One line from tsbuild (after the request), without its newline. */
static char *read_line(void) {
  static char line[256];
  size_t n = 0;
  for (;;) {
    char c;
    read_full(CONTROL_FD, &c, 1);
    if (c == '\n') break;
    if (n < sizeof line - 1) line[n++] = c;
  }
  line[n] = 0;
  return line;
}

/* ---------------------------------------------------------------------------------------------
 * Small things.
 */

static bool in_user_namespace(void) {
  static int known = -1;
  if (known < 0) {
    known = 0;
    FILE *f = fopen("/proc/self/uid_map", "re");
    if (f != NULL) {
      unsigned long a, b, c;
      int lines = 0;
      bool identity = false;
      while (fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3) {
        lines++;
        identity = a == 0 && b == 0 && c == 4294967295ul;
      }
      fclose(f);
      known = lines > 0 && !(lines == 1 && identity);
    }
  }
  return known == 1;
}

static char *fd_link(int fd) {
  return xprintf("/proc/self/fd/%d", fd);
}

static void write_file(const char *path, const char *text, mode_t mode, const char *what) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) FAILED("%s: open %s: %s", what, path, ename(errno));
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t n = write(fd, text, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) FAILED("%s: write %s: %s", what, path, ename(errno));
    text += n;
    len -= (size_t)n;
  }
  close(fd);
}

static void do_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
  if (mount(source, target, type, flags, data) != 0) FAILED("mount %s: %s", target, ename(errno));
}

static void do_mkdir(const char *path, mode_t mode) {
  if (mkdir(path, mode) != 0) FAILED("mkdir %s: %s", path, ename(errno));
}

static void do_symlink(const char *target, const char *path) {
  if (symlink(target, path) != 0) FAILED("symlink %s: %s", path, ename(errno));
}

static int make_directories(const char *path, mode_t mode);

/* mkdir -p of a path tsbuild chose (the scratch directory's own entries). */
static void mkdir_all(const char *path, mode_t mode) {
  if (make_directories(path, mode) != 0) FAILED("mkdir %s: %s", path, ename(errno));
}

static char *dirname_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return xstrdup(".");
  if (slash == path) return xstrdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* ---------------------------------------------------------------------------------------------
 * Paths inside the rootfs (in-root.ts of @tsbuild/linux and in-root-path.ts of @tsbuild/oci).
 */

static int openat2_retry(int dirfd, const char *path, uint64_t flags, uint64_t resolve, mode_t mode) {
  struct open_how how = {.flags = flags | O_CLOEXEC, .mode = mode, .resolve = resolve};
  for (int tries = 0;; tries++) {
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN || tries >= 32) return fd;
  }
}

static bool missing(int e) {
  return e == ENOENT || e == ENOTDIR || e == ELOOP || e == EXDEV;
}

/* How an in-root lookup names its error (inRootError): the path as given, never the host's. */
static const char *in_root_what(int e) {
  static char lower[32];
  switch (e) {
  case ENOENT:
    return "no such file or directory";
  case ELOOP:
    return "too many levels of symbolic links, or a link /proc does not allow";
  case EXDEV:
    return "the path leaves its root";
  default: {
    const char *n = ename(e);
    size_t i = 0;
    for (; n[i] != 0 && i < sizeof lower - 1; i++) lower[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i]);
    lower[i] = 0;
    return lower;
  }
  }
}

/* Resolved components of a path inside a root. */
struct parts {
  char **v;
  size_t n;
};

static char *join_parts(const struct parts *p, size_t count) {
  size_t len = 1;
  for (size_t i = 0; i < count; i++) len += strlen(p->v[i]) + 1;
  char *s = xmalloc(len + 1), *o = s;
  if (count == 0) *o++ = '/';
  for (size_t i = 0; i < count; i++) o += sprintf(o, "/%s", p->v[i]);
  *o = 0;
  return s;
}

/* The link target of the entry at `done`/`name`, or NULL (no link, or missing). */
static char *read_link_beneath(int rootfd, const struct parts *done, const char *name, int *err) {
  int parent = rootfd;
  if (done->n > 0) {
    char *dir = join_parts(done, done->n);
    parent = openat2_retry(rootfd, dir + 1, O_PATH | O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0);
    free(dir);
    if (parent < 0) {
      if (!missing(errno)) *err = errno;
      return NULL;
    }
  }
  char *target = NULL;
  struct stat st;
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (!missing(errno)) *err = errno;
  } else if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = readlinkat(parent, name, buf, sizeof buf - 1);
    if (n < 0) {
      if (!missing(errno)) *err = errno;
    } else {
      buf[n] = 0;
      target = xstrdup(buf);
    }
  }
  if (parent != rootfd) close(parent);
  return target;
}

/*
 * The in-root walk (inRootWalk): `..` never climbs above the root, every symlink met on the way
 * resolves inside the root, missing components are kept as written. Returns 0, or an errno (ELOOP
 * after MAX_SYMLINKS links, or what a lookup answered).
 */
static int resolve_parts(int rootfd, const char *path, bool follow_final, struct parts *out) {
  struct parts done = {0};
  char *pending = xstrdup(path);
  int links = 0, err = 0;
  char *cur = pending;
  for (;;) {
    while (*cur == '/') cur++;
    if (*cur == 0) break;
    char *end = strchr(cur, '/');
    char *rest = end == NULL ? cur + strlen(cur) : end;
    char *name = strndup(cur, (size_t)(rest - cur));
    cur = rest;
    while (*cur == '/') cur++;
    if (!strcmp(name, ".")) {
      free(name);
      continue;
    }
    if (!strcmp(name, "..")) {
      if (done.n > 0) free(done.v[--done.n]);
      free(name);
      continue;
    }
    char *target = NULL;
    if (*cur != 0 || follow_final) target = read_link_beneath(rootfd, &done, name, &err);
    if (err != 0) {
      free(name);
      break;
    }
    if (target != NULL) {
      free(name);
      if (++links > MAX_SYMLINKS) {
        free(target);
        err = ELOOP;
        break;
      }
      if (target[0] == '/') {
        while (done.n > 0) free(done.v[--done.n]);
      }
      char *next = xprintf("%s/%s", target, cur);
      free(target);
      free(pending);
      pending = cur = next;
      continue;
    }
    *PUSH(done.v, done.n) = name;
  }
  free(pending);
  *out = done;
  return err;
}

/* resolveInRoot: the resolved path inside the root ("/a/b"), or an error as inRootWalk throws it. */
static char *resolve_in_root(const char *root, const char *path, bool follow_final, int *err) {
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) FAILED("open %s: %s", root, ename(errno));
  struct parts p;
  *err = resolve_parts(rootfd, path, follow_final, &p);
  close(rootfd);
  char *s = join_parts(&p, p.n);
  for (size_t i = 0; i < p.n; i++) free(p.v[i]);
  free(p.v);
  return s;
}

/* resolve_in_root, failing as an uncaught lookup error would (`PATH: too many levels …`). */
static char *resolve_or_fail(const char *root, const char *path, bool follow_final, const char *prefix) {
  int err;
  char *s = resolve_in_root(root, path, follow_final, &err);
  if (err == ELOOP) FAILED("%s%s: too many levels of symbolic links", prefix, path);
  if (err != 0) FAILED("%s%s: %s", prefix, path, in_root_what(err));
  return s;
}

/*
 * mkdir -p inside the root of `path`, already resolved there (resolve_in_root): each component
 * opened, or made, through its parent's descriptor, never following a link (one that appeared
 * since the walk fails the open). Returns an O_PATH descriptor of the last directory, or -1 with
 * errno.
 */
static int mkdir_all_in_root(int rootfd, const char *path) {
  char *copy = xstrdup(path), *save = NULL;
  int fd = rootfd;
  for (char *name = strtok_r(copy, "/", &save); name != NULL; name = strtok_r(NULL, "/", &save)) {
    int next = openat2_retry(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(fd, name, 0755) != 0 && errno != EEXIST) next = -1;
      else next = openat2_retry(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0);
    }
    int saved = errno;
    if (fd != rootfd) close(fd);
    if (next < 0) {
      errno = saved;
      fd = -1;
      break;
    }
    fd = next;
  }
  free(copy);
  if (fd == rootfd) fd = openat2_retry(rootfd, ".", O_PATH | O_DIRECTORY, RESOLVE_BENEATH, 0);
  return fd;
}

/*
 * A descriptor of the mountpoint at `dest` (resolved inside the root already), made if missing: a
 * directory, or for a file an empty file. An existing entry is used as it is. -1 with errno when
 * it cannot be had (a read-only rootfs).
 */
static int open_mountpoint(const char *root, const char *dest, bool file) {
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return -1;
  int fd = -1;
  if (!file) {
    fd = mkdir_all_in_root(rootfd, dest);
  } else {
    char *dir = dirname_of(dest);
    const char *name = strrchr(dest, '/') + 1;
    int dirfd = mkdir_all_in_root(rootfd, dir);
    free(dir);
    if (dirfd >= 0) {
      fd = openat2_retry(dirfd, name, O_PATH | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0);
      if (fd < 0 && errno == ENOENT) {
        int made = openat2_retry(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0644);
        if (made >= 0) {
          close(made);
          fd = openat2_retry(dirfd, name, O_PATH | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, 0);
        }
      }
      int saved = errno;
      close(dirfd);
      errno = saved;
    }
  }
  int saved = errno;
  close(rootfd);
  errno = saved;
  return fd;
}

/* open_mountpoint, or the run fails naming the mountpoint. */
static int mountpoint_fd(const char *root, const char *dest, bool file) {
  int fd = open_mountpoint(root, dest, file);
  if (fd < 0) FAILED("cannot create mountpoint %s in the rootfs (read-only?): %s", dest, ename(errno));
  return fd;
}

/* The host path of the mountpoint of `path` inside the rootfs, made if missing. */
static char *mountpoint(const char *root, const char *path) {
  char *in_root = resolve_or_fail(root, path, true, "");
  int fd = mountpoint_fd(root, in_root, false);
  close(fd);
  char *host = !strcmp(in_root, "/") ? xstrdup(root) : xprintf("%s%s", root, in_root);
  free(in_root);
  return host;
}

/* openInRoot: `p` opened inside `root` by the kernel (RESOLVE_IN_ROOT), or -1 with errno. */
static int open_in_root(const char *root, const char *p, bool follow_final) {
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return -1;
  const char *rel = p;
  while (*rel == '/') rel++;
  if (*rel == 0) rel = ".";
  int fd = openat2_retry(rootfd, rel, O_PATH | (follow_final ? 0 : O_NOFOLLOW), RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, 0);
  int saved = errno;
  close(rootfd);
  errno = saved;
  return fd;
}

/* ---------------------------------------------------------------------------------------------
 * Mounts in the snapshotter's shape (mount-spec.ts).
 */

static const struct {
  const char *name;
  unsigned long set, clear;
} FLAG_OPTIONS[] = {
    {"ro", MS_RDONLY, 0},       {"rw", 0, MS_RDONLY},         {"nosuid", MS_NOSUID, 0},    {"suid", 0, MS_NOSUID},
    {"nodev", MS_NODEV, 0},     {"dev", 0, MS_NODEV},         {"noexec", MS_NOEXEC, 0},    {"exec", 0, MS_NOEXEC},
    {"sync", MS_SYNCHRONOUS, 0}, {"async", 0, MS_SYNCHRONOUS}, {"dirsync", MS_DIRSYNC, 0}, {"noatime", MS_NOATIME, 0},
    {"atime", 0, MS_NOATIME},   {"nodiratime", MS_NODIRATIME, 0}, {"diratime", 0, MS_NODIRATIME}, {"relatime", MS_RELATIME, 0},
    {"norelatime", 0, MS_RELATIME}, {"strictatime", MS_STRICTATIME, 0}, {"bind", MS_BIND, 0}, {"rbind", MS_BIND | MS_REC, 0},
    {"defaults", 0, 0},
};

/* mountCall: the options split into mount(2) flags and the comma-joined data. */
static char *mount_call(const char *type, const struct strv *options, unsigned long *flags) {
  *flags = 0;
  size_t len = 1;
  for (size_t i = 0; i < options->n; i++) len += strlen(options->v[i]) + 1;
  char *data = xmalloc(len), *o = data;
  *o = 0;
  for (size_t i = 0; i < options->n; i++) {
    const char *opt = options->v[i];
    bool flag = false;
    for (size_t f = 0; f < sizeof FLAG_OPTIONS / sizeof *FLAG_OPTIONS; f++) {
      if (strcmp(opt, FLAG_OPTIONS[f].name) != 0) continue;
      *flags = (*flags | FLAG_OPTIONS[f].set) & ~FLAG_OPTIONS[f].clear;
      flag = true;
      break;
    }
    if (!flag) o += sprintf(o, "%s%s", o == data ? "" : ",", opt);
  }
  if (type != NULL && !strcmp(type, "bind")) *flags |= MS_BIND;
  return data;
}

/*
 * Overlay data longer than the page mount(2) copies (shortenOverlayData): every layer path made
 * relative to the longest directory common to all of them, mounted from that directory.
 */
static int mount_overlay(const char *source, const char *target, unsigned long flags, const char *data) {
  if (strlen(data) <= MAX_MOUNT_DATA) return mount(source, target, "overlay", flags, data[0] != 0 ? data : NULL);
  /* The paths: lowerdir's (':'-separated), upperdir, workdir. */
  char *copy = xstrdup(data);
  struct strv paths = {0};
  for (char *opt = strtok(copy, ","); opt != NULL; opt = strtok(NULL, ",")) {
    if (!strncmp(opt, "lowerdir=", 9)) {
      char *list = xstrdup(opt + 9), *save = NULL;
      for (char *p = strtok_r(list, ":", &save); p != NULL; p = strtok_r(NULL, ":", &save)) strv_push(&paths, xstrdup(p));
    } else if (!strncmp(opt, "upperdir=", 9) || !strncmp(opt, "workdir=", 8)) {
      strv_push(&paths, xstrdup(strchr(opt, '=') + 1));
    }
  }
  free(copy);
  if (paths.n == 0) return mount(source, target, "overlay", flags, data);
  /* Longest common directory: the common prefix of the paths' directories, by component. */
  char *common = dirname_of(paths.v[0]);
  for (size_t i = 1; i < paths.n; i++) {
    char *dir = dirname_of(paths.v[i]);
    size_t k = 0, last = 0;
    while (common[k] != 0 && common[k] == dir[k]) {
      if (common[k] == '/') last = k;
      k++;
    }
    /* Equal up to the end of one of them, at a component's end: the shorter one is common. */
    bool boundary = (common[k] == 0 || common[k] == '/') && (dir[k] == 0 || dir[k] == '/');
    common[boundary ? k : last] = 0;
    free(dir);
  }
  if (common[0] == 0 || !strcmp(common, "/")) return mount(source, target, "overlay", flags, data);
  size_t clen = strlen(common);
  char *out = xmalloc(strlen(data) + 1), *o = out;
  copy = xstrdup(data);
  for (char *opt = strtok(copy, ","); opt != NULL; opt = strtok(NULL, ",")) {
    if (o != out) *o++ = ',';
    bool lower = !strncmp(opt, "lowerdir=", 9);
    bool single = !strncmp(opt, "upperdir=", 9) || !strncmp(opt, "workdir=", 8);
    if (!lower && !single) {
      o += sprintf(o, "%s", opt);
      continue;
    }
    char *eq = strchr(opt, '=');
    o += sprintf(o, "%.*s", (int)(eq - opt + 1), opt);
    char *list = eq + 1, *save = NULL;
    bool first = true;
    for (char *p = lower ? strtok_r(list, ":", &save) : list; p != NULL; p = lower ? strtok_r(NULL, ":", &save) : NULL) {
      bool under = !strncmp(p, common, clen) && p[clen] == '/';
      o += sprintf(o, "%s%s", first ? "" : ":", under ? p + clen + 1 : p);
      first = false;
    }
  }
  free(copy);
  int back = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (chdir(common) != 0) return -1;
  int rc = mount(source, target, "overlay", flags, out);
  int saved = errno;
  if (back >= 0) {
    if (fchdir(back) != 0) FAILED("fchdir: %s", ename(errno));
    close(back);
  }
  errno = saved;
  return rc;
}

static int mount_one(const struct mount_entry *m, const char *target) {
  unsigned long flags;
  char *data = mount_call(m->type, &m->options, &flags);
  int rc;
  if (flags & MS_BIND) {
    rc = mount(m->source, target, NULL, flags & (MS_BIND | MS_REC), NULL);
    if (rc == 0 && (flags & ~(MS_BIND | MS_REC)) != 0) rc = mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | (flags & ~(MS_BIND | MS_REC)), NULL);
  } else if (!strcmp(m->type, "overlay")) {
    rc = mount_overlay(m->source, target, flags, data);
  } else {
    rc = mount(m->source, target, m->type, flags, data[0] != 0 ? data : NULL);
  }
  free(data);
  return rc;
}

/* mountAll: every entry at `target`, in order (containerd's mount.All). */
static void mount_all(const struct mount_entry *mounts, size_t n, const char *target) {
  for (size_t i = 0; i < n; i++) {
    const struct mount_entry *m = &mounts[i];
    if (mount_one(m, target) == 0) continue;
    int e = errno;
    char opts[301] = "";
    size_t o = 0;
    for (size_t k = 0; k < m->options.n && o < 300; k++) o += (size_t)snprintf(opts + o, sizeof opts - o, "%s%s", k == 0 ? "" : ",", m->options.v[k]);
    if (o > 300) opts[300] = 0;
    FAILED("mount %s %s at %s (%s): %s%s", m->type, m->source, target, opts, ename(e),
           !strcmp(m->type, "overlay") && in_user_namespace()
               ? " (rootless: the kernel refused overlayfs in this user namespace; it needs Linux 5.11 or later and a store on a filesystem with user.* xattrs, e.g. ext4, xfs, btrfs, tmpfs since 6.6: put the store there with --root)"
               : "");
  }
}

/* ---------------------------------------------------------------------------------------------
 * The container's world.
 */

static const char *const DEVICES[] = {"null", "zero", "full", "random", "urandom", "tty"};

static const struct {
  const char *path, *name;
} ETC_FILES[] = {{"/etc/hosts", "hosts"}, {"/etc/resolv.conf", "resolv.conf"}, {"/etc/hostname", "hostname"}};

/*
 * The /etc files' mountpoints without touching the image: one more, lowest, lowerdir
 * holding empty etc/hosts, etc/resolv.conf and etc/hostname, so a file the image lacks shows
 * through from there and is never copied up. Returns the rootfs mounts to use.
 */
static struct mount_entry *prepare_etc_layer(struct mount_entry *rootfs, size_t n, const char *scratch) {
  if (n == 0 || strcmp(rootfs[0].type, "overlay") != 0) return rootfs;
  ssize_t lower = -1;
  for (size_t i = 0; i < rootfs[0].options.n; i++)
    if (!strncmp(rootfs[0].options.v[i], "lowerdir=", 9)) lower = (ssize_t)i;
  if (lower < 0) return rootfs;
  char *layer = xprintf("%s/etc-layer", scratch);
  char *etc = xprintf("%s/etc", layer);
  mkdir_all(etc, 0755);
  for (size_t i = 0; i < 3; i++) {
    char *f = xprintf("%s%s", layer, ETC_FILES[i].path);
    write_file(f, "", 0644, "prepare the /etc files");
    free(f);
  }
  struct mount_entry *out = xmalloc(n * sizeof *out);
  memcpy(out, rootfs, n * sizeof *out);
  out[0].options.v = NULL;
  out[0].options.n = 0;
  for (size_t i = 0; i < rootfs[0].options.n; i++)
    strv_push(&out[0].options, (ssize_t)i == lower ? xprintf("%s:%s", rootfs[0].options.v[i], layer) : rootfs[0].options.v[i]);
  unsigned long flags;
  char *data = mount_call(out[0].type, &out[0].options, &flags);
  bool fits = strlen(data) <= MAX_MOUNT_DATA;
  free(data);
  return fits ? out : rootfs;
}

/* The address other hosts see for this one: the first IPv4 of an interface up, not loopback. */
static char *default_hosts(const char *hostname) {
  char ip[INET_ADDRSTRLEN] = "127.0.1.1";
  struct ifaddrs *all;
  if (getifaddrs(&all) == 0) {
    for (struct ifaddrs *a = all; a != NULL; a = a->ifa_next) {
      if (a->ifa_addr == NULL || a->ifa_addr->sa_family != AF_INET) continue;
      if (!((a->ifa_flags & IFF_UP) && (a->ifa_flags & IFF_RUNNING)) || (a->ifa_flags & IFF_LOOPBACK)) continue;
      inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, ip, sizeof ip);
      break;
    }
    freeifaddrs(all);
  }
  return xprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, hostname);
}

/*
 * /etc/hosts, /etc/resolv.conf and /etc/hostname: written into the scratch dir and bound over the
 * rootfs's paths onto mountpoints opened by descriptor (etc-files.ts). A read-only rootfs without
 * the file skips it; a directory in its place is left alone.
 */
static void bind_etc_files(const char *root, const char *scratch, const struct request *r) {
  char *dir = xprintf("%s/etc-files", scratch);
  mkdir_all(dir, 0755);
  char *contents[3] = {r->etc_hosts != NULL ? r->etc_hosts : default_hosts(r->hostname), r->etc_resolv != NULL ? r->etc_resolv : "",
                       r->etc_hostname != NULL ? r->etc_hostname : xprintf("%s\n", r->hostname)};
  for (size_t i = 0; i < 3; i++) {
    char *source = xprintf("%s/%s", dir, ETC_FILES[i].name);
    write_file(source, contents[i], 0644, "write the /etc files");
    char *target = resolve_or_fail(root, ETC_FILES[i].path, true, "");
    /* A read-only rootfs without the file skips it (open_mountpoint says -1), where a mount fails. */
    int at = open_mountpoint(root, target, true);
    if (at >= 0) {
      struct stat st;
      if (fstat(at, &st) == 0 && S_ISREG(st.st_mode)) {
        char *link = fd_link(at);
        do_mount(source, link, NULL, MS_BIND, NULL);
        free(link);
      }
      close(at);
    }
    free(target);
    free(source);
  }
  free(dir);
}

/*
 * A --device: the host's node bound onto an empty file in the container's /dev (a tmpfs of this
 * run), after checking it is still the device tsbuild resolved.
 */
static void bind_device(const char *dev, const struct device *d) {
  const char *rel = d->path + strlen("/dev/");
  char *target = xprintf("%s/%s", dev, rel);
  struct stat st;
  if (stat(d->host, &st) != 0) FAILED("cannot add device %s at %s: stat %s: %s", d->host, d->path, d->host, ename(errno));
  bool kind = d->type == 'c' ? S_ISCHR(st.st_mode) : S_ISBLK(st.st_mode);
  if (!kind || major(st.st_rdev) != d->major || minor(st.st_rdev) != d->minor)
    FAILED("cannot add device %s at %s: %s is no longer device %c %u:%u", d->host, d->path, d->host, d->type, d->major, d->minor);
  char *parent = dirname_of(target);
  mkdir_all(parent, 0777);
  free(parent);
  if (access(target, F_OK) != 0) {
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) FAILED("cannot add device %s at %s: open %s: %s", d->host, d->path, d->path, ename(errno));
    close(fd);
  }
  if (mount(d->host, target, NULL, MS_BIND, NULL) != 0) FAILED("cannot add device %s at %s: mount %s: %s", d->host, d->path, target, ename(errno));
  free(target);
}

/*
 * A RUN --mount: a bind of a host file or directory, or a tmpfs, made by descriptor at both ends:
 * the source opened inside its root by the kernel when a Dockerfile names it, the
 * mountpoint made inside the rootfs through descriptors, both handed to mount(2) as
 * /proc/self/fd links.
 */
static void mount_extra(const char *root, const struct extra_mount *m, const char *context) {
  bool bind = !strcmp(m->type, "bind");
  char *what = bind ? (m->source_path != NULL ? xprintf("%s:%s", m->source, m->source_path) : xstrdup(m->source)) : xstrdup("tmpfs");
  int src = -1;
  if (bind) {
    if (m->source_path == NULL) {
      src = open(m->source, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (src < 0) FAILED("cannot mount %s at %s: open %s: %s", what, m->destination, m->source, ename(errno));
    } else {
      src = open_in_root(m->source, m->source_path, true);
      if (src < 0) FAILED("cannot mount %s at %s: %s: %s", what, m->destination, m->source_path, in_root_what(errno));
    }
  }
  bool file = false;
  if (src >= 0) {
    struct stat st;
    if (fstat(src, &st) != 0) FAILED("cannot mount %s at %s: fstat: %s", what, m->destination, ename(errno));
    if (S_ISLNK(st.st_mode)) FAILED("cannot mount %s at %s: the source is a symbolic link", what, m->destination);
    file = !S_ISDIR(st.st_mode);
  }
  char *prefix = xprintf("cannot mount %s at %s: ", what, m->destination);
  char *dest = resolve_or_fail(root, m->destination, true, prefix);
  struct strv options = m->options;
  struct strv with_context = {0};
  if (!bind && context != NULL) {
    for (size_t i = 0; i < m->options.n; i++) strv_push(&with_context, m->options.v[i]);
    strv_push(&with_context, (char *)context);
    options = with_context;
  }
  unsigned long flags;
  char *data = mount_call(m->type, &options, &flags);
  int at = mountpoint_fd(root, dest, file);
  char *at_link = fd_link(at);
  int rc;
  if (src >= 0) {
    char *src_link = fd_link(src);
    rc = mount(src_link, at_link, NULL, MS_BIND | MS_REC, NULL);
    free(src_link);
  } else {
    rc = mount("tmpfs", at_link, "tmpfs", flags, data[0] != 0 ? data : NULL);
  }
  if (rc != 0) FAILED("%smount %s: %s", prefix, at_link, ename(errno));
  close(at);
  free(at_link);
  /* A read-only (nosuid, …) bind needs a second call on the new mount, reached by a fresh lookup. */
  unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC);
  if (src >= 0 && extra != 0) {
    int again = open_in_root(root, dest, false);
    if (again < 0) FAILED("%s%s: %s", prefix, dest, in_root_what(errno));
    char *link = fd_link(again);
    if (mount(NULL, link, NULL, MS_REMOUNT | MS_BIND | extra, NULL) != 0) FAILED("%smount %s: %s", prefix, link, ename(errno));
    free(link);
    close(again);
  }
  if (src >= 0) close(src);
  free(data);
  free(dest);
  free(prefix);
  free(what);
}

/* A fresh network namespace has lo down (netdevice(7)). */
static void set_link_up(const char *name) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) FAILED("socket: %s", ename(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) FAILED("ioctl SIOCGIFFLAGS %s: %s", name, ename(errno));
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) FAILED("ioctl SIOCSIFFLAGS %s: %s", name, ename(errno));
  close(fd);
}

/*
 * After pivot_root: a masked file gets /dev/null bound over it, a masked directory an empty
 * read-only tmpfs; a read-only path is bound onto itself and remounted read-only, repeating the
 * flags the kernel locks on /proc and /sys (security-paths.ts). Paths this kernel lacks are skipped.
 */
static void mask_paths(const struct strv *masked, const struct strv *readonly) {
  for (size_t i = 0; i < masked->n; i++) {
    const char *p = masked->v[i];
    struct stat st;
    if (stat(p, &st) != 0) continue;
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=0") : mount("/dev/null", p, NULL, MS_BIND, NULL);
    if (rc != 0) FAILED("cannot mask %s: %s", p, ename(errno));
  }
  for (size_t i = 0; i < readonly->n; i++) {
    const char *p = readonly->v[i];
    struct stat st;
    if (stat(p, &st) != 0) continue;
    bool kernel = (!strncmp(p, "/proc", 5) && (p[5] == 0 || p[5] == '/')) || (!strncmp(p, "/sys", 4) && (p[4] == 0 || p[4] == '/'));
    unsigned long locked = kernel ? MS_NOSUID | MS_NODEV | MS_NOEXEC : 0;
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) != 0 || mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked, NULL) != 0)
      FAILED("cannot make %s read-only: %s", p, ename(errno));
  }
}

/*
 * The rootfs at /, its own /proc, a /dev tmpfs, a read-only /sys, the run's mounts and /etc
 * files, its hostname. Every mount made here belongs to this mount namespace and dies with it.
 */
static void enter_container(struct request *r) {
  /* Before any mount of ours: unshare(1) made propagation private already, enter_namespaces
   * leaves it to here. */
  do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  if (!strcmp(r->network, "none")) set_link_up("lo");
  /* A cgroup namespace rooted at the run's cgroup, which tsbuild moved us into. */
  if (r->security && unshare(CLONE_NEWCGROUP) != 0) FAILED("unshare: %s", ename(errno));
  in_user_namespace(); /* read while /proc is still the host's */

  const char *root = r->target;
  char *scratch = dirname_of(root);
  char *context = r->selinux_mount != NULL ? xprintf("context=\"%s\"", r->selinux_mount) : NULL;
  struct mount_entry *rootfs = r->security ? prepare_etc_layer(r->rootfs, r->nrootfs, scratch) : r->rootfs;
  if (context != NULL && r->nrootfs > 0) {
    struct mount_entry *labelled = xmalloc(r->nrootfs * sizeof *labelled);
    memcpy(labelled, rootfs, r->nrootfs * sizeof *labelled);
    labelled[0].options.v = NULL;
    labelled[0].options.n = 0;
    for (size_t i = 0; i < rootfs[0].options.n; i++) strv_push(&labelled[0].options, rootfs[0].options.v[i]);
    strv_push(&labelled[0].options, context);
    rootfs = labelled;
  }
  mount_all(rootfs, r->nrootfs, root);

  char *proc = mountpoint(root, "/proc");
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
    /* fs/namespace.c mount_too_revealing: refused in a user namespace while the visible /proc has masked paths. */
    if (errno == EPERM && in_user_namespace())
      FAILED("mount %s: EPERM (the kernel refuses a new /proc here while this container's /proc has masked paths: run tsbuild's container with --security-opt systempaths=unconfined, or procMount: Unmasked in Kubernetes)", proc);
    FAILED("mount %s: %s", proc, ename(errno));
  }

  char *dev = mountpoint(root, "/dev");
  char *data = xprintf("mode=755,size=65536k%s%s", context != NULL ? "," : "", context != NULL ? context : "");
  do_mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, data);
  free(data);
  for (size_t i = 0; i < sizeof DEVICES / sizeof *DEVICES; i++) {
    char *host = xprintf("/dev/%s", DEVICES[i]);
    if (access(host, F_OK) == 0) {
      /* A bind of the host's node: mknod would need the device cgroup's blessing in some setups. */
      char *node = xprintf("%s/%s", dev, DEVICES[i]);
      write_file(node, "", 0666, "make /dev");
      do_mount(host, node, NULL, MS_BIND, NULL);
      free(node);
    }
    free(host);
  }
  for (size_t i = 0; i < r->ndevices; i++) bind_device(dev, &r->devices[i]);
  char *p = xprintf("%s/pts", dev);
  do_mkdir(p, 0777);
  do_mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  free(p);
  p = xprintf("%s/ptmx", dev);
  do_symlink("pts/ptmx", p);
  free(p);
  p = xprintf("%s/shm", dev);
  do_mkdir(p, 0777);
  /* docker's and buildah's default 64 MiB (--shm-size): an IPC namespace's own POSIX shared memory. */
  data = xprintf("mode=1777,size=%s%s%s", r->shm != NULL ? r->shm : "67108864", context != NULL ? "," : "", context != NULL ? context : "");
  do_mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data);
  free(data);
  free(p);
  p = xprintf("%s/mqueue", dev);
  do_mkdir(p, 0777);
  do_mount("mqueue", p, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  free(p);
  static const char *const LINKS[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
  for (size_t i = 0; i < 4; i++) {
    p = xprintf("%s/%s", dev, LINKS[i][1]);
    do_symlink(LINKS[i][0], p);
    free(p);
    /* The init, executed through this link: PID 1 shows as its name in ps. */
    if (i == 0 && r->init != NULL) {
      p = xprintf("%s/init", dev);
      char *target = xprintf("/proc/self/fd/%d", INIT_EXE_FD);
      do_symlink(target, p);
      free(target);
      free(p);
    }
  }

  /* A fresh sysfs shows the container's network namespace; read-only as docker mounts it. */
  char *sys = mountpoint(root, "/sys");
  if ((r->userns || in_user_namespace()) && !strcmp(r->network, "host")) {
    /* sysfs may only be mounted by the user namespace owning the network namespace (sysfs(5)). */
    do_mount("/sys", sys, NULL, MS_BIND | MS_REC, NULL);
    do_mount(NULL, sys, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  } else {
    do_mount("sysfs", sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  }

  for (size_t i = 0; i < r->nmounts; i++) mount_extra(root, &r->mounts[i], context);
  if (r->security) bind_etc_files(root, scratch, r);

  /* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the rootfs. */
  if (chdir(root) != 0) FAILED("chdir %s: %s", root, ename(errno));
  if (syscall(SYS_pivot_root, ".", ".") != 0) FAILED("pivot_root .: %s", ename(errno));
  if (umount2(".", MNT_DETACH) != 0) FAILED("umount2 .: %s", ename(errno));
  if (chdir("/") != 0) FAILED("chdir /: %s", ename(errno));
  if (r->security) mask_paths(&r->masked, &r->readonly);
  if (sethostname(r->hostname, strlen(r->hostname)) != 0) FAILED("sethostname: %s", ename(errno));
  free(proc);
  free(dev);
  free(sys);
  free(scratch);
}

/* ---------------------------------------------------------------------------------------------
 * The command.
 */

/* `run -t`: a pty of the container's devpts; tsbuild takes a copy of the master, then ours goes. */
static int hand_over_pty(void) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) FAILED("open /dev/ptmx: %s", ename(errno));
  int unlock = 0, n = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) != 0) FAILED("ioctl TIOCSPTLCK /dev/ptmx: %s", ename(errno));
  if (ioctl(master, TIOCGPTN, &n) != 0) FAILED("ioctl TIOCGPTN /dev/ptmx: %s", ename(errno));
  char path[32];
  snprintf(path, sizeof path, "/dev/pts/%d", n);
  int slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) FAILED("open %s: %s", path, ename(errno));
  char line[32];
  int len = snprintf(line, sizeof line, "{\"pty\":%d}\n", master);
  send_all(CONTROL_FD, line, (size_t)len);
  if (strcmp(read_line(), PTY_TAKEN_LINE) != 0) fail("INTERNAL", "tsbuild did not take the terminal");
  close(master);
  return slave;
}

/* mkdir -p, each component once: a /proc path answers ENOENT, and that ends it (no retry loop). */
static int make_directories(const char *path, mode_t mode) {
  char *p = xstrdup(path);
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != 0) continue;
    char c = *s;
    *s = 0;
    if (s[-1] != '/' && mkdir(p, mode) != 0 && errno != EEXIST) {
      rc = -1;
      break;
    }
    *s = c;
    if (c == 0) break;
  }
  int saved = errno;
  free(p);
  errno = saved;
  return rc;
}

static void set_limits(const struct request *r) {
  for (size_t i = 0; i < r->nrlimits; i++) {
    const struct rlimit_request *l = &r->rlimits[i];
    rlim_t soft = l->soft == -1 ? RLIM_INFINITY : (rlim_t)l->soft, hard = l->hard == -1 ? RLIM_INFINITY : (rlim_t)l->hard;
    if (l->or_lower) {
      /* A default never fails the run: without CAP_SYS_RESOURCE (rootless) it stays within ours. */
      struct rlimit now;
      if (prlimit(0, (__rlimit_resource_t)l->resource, NULL, &now) != 0) FAILED("cannot set ulimit %s=%lld:%lld: prlimit: %s", l->name, l->soft, l->hard, ename(errno));
      if (soft > now.rlim_max) soft = now.rlim_max;
      if (hard > now.rlim_max) hard = now.rlim_max;
    }
    struct rlimit next = {.rlim_cur = soft, .rlim_max = hard};
    if (prlimit(0, (__rlimit_resource_t)l->resource, &next, NULL) != 0) FAILED("cannot set ulimit %s=%lld:%lld: prlimit: %s", l->name, l->soft, l->hard, ename(errno));
  }
  if (r->has_oom) {
    char text[16];
    snprintf(text, sizeof text, "%d", r->oom);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) FAILED("cannot set oom_score_adj %d: %s", r->oom, ename(errno));
    close(fd);
  }
}

static int last_capability(void) {
  int last = 40;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (f != NULL) {
    if (fscanf(f, "%d", &last) != 1) last = 40;
    fclose(f);
  }
  return last;
}

static int cap_set(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2] = {
      {.effective = (uint32_t)effective, .permitted = (uint32_t)permitted, .inheritable = (uint32_t)inheritable},
      {.effective = (uint32_t)(effective >> 32), .permitted = (uint32_t)(permitted >> 32), .inheritable = (uint32_t)(inheritable >> 32)},
  };
  return (int)syscall(SYS_capset, &h, d);
}

/*
 * Credentials and confinement, in the order the kernel allows them (runc's): the bounding set
 * while CAP_SETPCAP is ours; keepcaps, then groups, gid, uid; effective raised to permitted again
 * so that CAP_SYS_ADMIN is there for seccomp; no_new_privs if asked, then the seccomp filter
 * (after the uid switch, so it sees none of these calls); last the container's capabilities as
 * permitted and effective, inheritable empty, no ambient (docker's choice).
 */
static void drop_privileges(const struct request *r) {
  if (r->security) {
    int last = last_capability();
    for (int cap = 0; cap <= last; cap++) {
      if (cap < 64 && ((r->caps >> cap) & 1)) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) FAILED("cannot limit the bounding set: prctl(PR_CAPBSET_DROP) %d: %s", cap, ename(errno));
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) FAILED("cannot limit the bounding set: prctl(PR_SET_KEEPCAPS): %s", ename(errno));
  }
  /* Raw syscalls: this process has one thread, and glibc's wrappers would signal the others. */
  if (syscall(SYS_setgroups, r->ngids, r->ngids > 0 ? r->gids : NULL) != 0) FAILED("cannot switch to user %u:%u: setgroups: %s", r->uid, r->gid, ename(errno));
  if (syscall(SYS_setresgid, r->gid, r->gid, r->gid) != 0) FAILED("cannot switch to user %u:%u: setresgid: %s", r->uid, r->gid, ename(errno));
  if (syscall(SYS_setresuid, r->uid, r->uid, r->uid) != 0) FAILED("cannot switch to user %u:%u: setresuid: %s", r->uid, r->gid, ename(errno));
  if (r->security) {
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) FAILED("cannot raise effective capabilities: capget: %s", ename(errno));
    uint64_t permitted = d[0].permitted | ((uint64_t)d[1].permitted << 32);
    if (cap_set(permitted, permitted, 0) != 0) FAILED("cannot raise effective capabilities: capset: %s", ename(errno));
  }
  if (r->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) FAILED("cannot set no_new_privs: prctl(PR_SET_NO_NEW_PRIVS): %s", ename(errno));
  if (r->seccomp != NULL) {
    if (r->seccomp_len == 0 || r->seccomp_len % sizeof(struct sock_filter) != 0 || r->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
      FAILED("cannot load the seccomp filter: seccomp: a filter must hold 1 to 4096 instructions of 8 bytes, got %zu bytes", r->seccomp_len);
    struct sock_fprog prog = {.len = (unsigned short)(r->seccomp_len / sizeof(struct sock_filter)), .filter = (struct sock_filter *)r->seccomp};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) FAILED("cannot load the seccomp filter: prctl(PR_SET_SECCOMP): %s", ename(errno));
  }
  if (r->security) {
    if (cap_set(r->caps, r->caps, 0) != 0) FAILED("cannot set capabilities: capset: %s", ename(errno));
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) FAILED("cannot set capabilities: prctl(PR_SET_KEEPCAPS): %s", ename(errno));
  }
}

/* SELinux's process label and AppArmor's profile, applied at execve, set last as runc does. */
static void set_exec_labels(const struct request *r) {
  if (r->selinux_process != NULL) {
    int fd = open("/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, r->selinux_process, strlen(r->selinux_process)) < 0) FAILED("cannot set the SELinux label %s: %s", r->selinux_process, ename(errno));
    close(fd);
  }
  if (r->apparmor != NULL) {
    const char *dedicated = "/proc/thread-self/attr/apparmor/exec";
    char *text = xprintf("exec %s", r->apparmor);
    int fd = open(access(dedicated, F_OK) == 0 ? dedicated : "/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) FAILED("cannot set the AppArmor profile %s: %s", r->apparmor, ename(errno));
    close(fd);
    free(text);
  }
}

/* execvp(3)'s search, on the PATH of the command's own environment. */
static char *find_executable(const char *name, char *const *env) {
  if (strchr(name, '/') != NULL) return xstrdup(name);
  const char *path_var = DEFAULT_PATH;
  for (char *const *e = env; *e != NULL; e++)
    if (!strncmp(*e, "PATH=", 5)) path_var = *e + 5;
  char *dirs = xstrdup(path_var), *denied = NULL;
  for (char *dir = dirs, *next;; dir = next + 1) {
    next = strchr(dir, ':');
    if (next != NULL) *next = 0;
    size_t len = strlen(dir);
    char *candidate = len == 0 ? xprintf("%s", name) : xprintf("%s%s%s", dir, dir[len - 1] == '/' ? "" : "/", name);
    struct stat st;
    if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(candidate, X_OK) == 0) return candidate;
      if (denied == NULL) denied = xstrdup(candidate);
    }
    free(candidate);
    if (next == NULL) break;
  }
  if (denied != NULL) fail_exec(126, "%s: permission denied", denied);
  fail_exec(127, "%s: command not found in PATH %s", name, path_var);
}

/* Default dispositions and an empty mask for the command, whatever the chain passed on. */
static void reset_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
}

static bool peer_closed(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n >= 0) return n == 0;
  if (errno == EAGAIN) return false;
  FAILED("recv: %s", ename(errno));
}

/*
 * Inside the container: working directory, terminal, limits, credentials, then execve(2), so the
 * command replaces the helper as PID 1. A command that cannot start exits 127 (not found) or 126
 * (not executable), as shells do.
 */
static _Noreturn void exec_command(struct request *r, int terminal) {
  if (r->cwd[0] != '/') fail("INVALID_ARGUMENT", "working directory must be absolute: %s", r->cwd);
  /* After pivot_root: created as root, as docker does. A /proc/self/fd/N or /proc/self/cwd magic
   * link can lead outside the root (runc CVE-2024-21626): getcwd(3) answers ENOENT there. */
  char cwd[4096];
  if (make_directories(r->cwd, 0755) != 0 || chdir(r->cwd) != 0 || getcwd(cwd, sizeof cwd) == NULL)
    FAILED("cannot use working directory %s: %s", r->cwd, ename(errno));
  if (terminal >= 0) {
    /* A session of its own with the pty as its controlling terminal, and the pty as 0, 1 and 2. */
    if (setsid() < 0) FAILED("setsid: %s", ename(errno));
    if (ioctl(terminal, TIOCSCTTY, 0) != 0) FAILED("ioctl TIOCSCTTY: %s", ename(errno));
    for (int fd = 0; fd < 3; fd++)
      if (dup2(terminal, fd) < 0) FAILED("dup2: %s", ename(errno));
  }
  /* While CAP_SYS_RESOURCE is ours: raising a hard limit needs it, so does a lower oom_score_adj. */
  set_limits(r);
  drop_privileges(r);
  set_exec_labels(r);
  /* A credential change clears the parent-death signal unshare --kill-child set: set it again,
   * then check that tsbuild did not die (or give up) meanwhile. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) FAILED("prctl(PR_SET_PDEATHSIG): %s", ename(errno));
  if (peer_closed(CONTROL_FD)) _exit(128 + SIGKILL);
  /* From here on the exit status is the command's, or 127/126 as a shell would answer. */
  send_all(CONTROL_FD, EXEC_LINE, strlen(EXEC_LINE));

  char *path = find_executable(r->args.v[0], r->env.v);
  if (syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) fail_exec(126, "close_range: %s", ename(errno));
  for (int fd = 0; fd < 3; fd++) fcntl(fd, F_SETFD, 0);
  reset_signals();
  if (r->init != NULL) {
    /* The init in our place, as PID 1, with all of the above; it starts the command as its child. */
    struct strv argv = {0};
    strv_push(&argv, r->init);
    strv_push(&argv, "--");
    for (size_t i = 0; i < r->args.n; i++) strv_push(&argv, r->args.v[i]);
    execve("/dev/init", argv.v, r->env.v);
    fail_exec(126, "%s (the init): cannot execute: %s", r->init, ename(errno));
  }
  execve(path, r->args.v, r->env.v);
  int e = errno;
  if (e == ENOENT) fail_exec(127, "%s: not found", r->args.v[0]);
  fail_exec(126, "%s: cannot execute: %s", r->args.v[0], e == ENOEXEC ? "exec format error" : e == EACCES ? "permission denied" : ename(e));
}

/*
 * --namespaces=TSBUILD_PID[,net]: the part setpriv and unshare(1) used to play, without two more
 * programs to execute on every RUN (~6 ms of CPU here, beside tsbuild's own preparation). Dies
 * with tsbuild (PR_SET_PDEATHSIG; a tsbuild already gone is no longer our parent), unshares the
 * namespaces (enter_container makes the mounts private, on either path), forks the helper proper,
 * PID 1 of the new PID namespace, which dies with us (PR_SET_PDEATHSIG again), and ends as it
 * ends: its exit status, or the signal that killed it raised on ourselves (SIGKILL too, which
 * util-linux 2.38 turned into exit 1). SIGINT and SIGTERM wait until then, as in unshare(1): a ^C is for the command.
 * Failures before the fork go to fd 2, tsbuild's diagnostics pipe, as "run-helper: …".
 */
static void enter_namespaces(const char *spec) {
  char *end;
  errno = 0;
  long tsbuild = strtol(spec, &end, 10);
  bool net = strcmp(end, ",net") == 0;
  if (errno != 0 || end == spec || tsbuild <= 0 || (*end != 0 && !net)) {
    dprintf(2, "run-helper: bad --namespaces=%s\n", spec);
    _exit(1);
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)tsbuild) _exit(128 + SIGKILL);
  if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | (net ? CLONE_NEWNET : 0)) != 0) {
    dprintf(2, "run-helper: unshare: %s\n", strerror(errno));
    _exit(1);
  }
  sigset_t wait_for_child, before;
  sigemptyset(&wait_for_child);
  sigaddset(&wait_for_child, SIGINT);
  sigaddset(&wait_for_child, SIGTERM);
  sigprocmask(SIG_BLOCK, &wait_for_child, &before);
  pid_t child = fork();
  if (child < 0) {
    dprintf(2, "run-helper: fork: %s\n", strerror(errno));
    _exit(1);
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &before, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(128 + SIGKILL);
    return; /* main goes on, and checks that its parent is still there (chain_pid) */
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) _exit(1);
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    kill(getpid(), sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/* The parent pid as the host sees it: /proc is still the host's until we mount our own. */
static long host_parent_pid(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *paren = strrchr(buf, ')');
  if (paren == NULL) return -1;
  char state;
  long ppid;
  if (sscanf(paren + 1, " %c %ld", &state, &ppid) != 2) return -1;
  return ppid;
}

int main(int argc, char **argv) {
  if (argc == 2 && strncmp(argv[1], "--namespaces=", 13) == 0) enter_namespaces(argv[1] + 13);
  /* Our own executable's descriptor must not be there for the command to reach through
   * /proc/self/fd while we execve it (the init's goes below, unless we execute the init). */
  close(SELF_EXE_FD);
  struct request r;
  read_request(&r);
  /* Our parent-death signal is set after the fork (enter_namespaces, or unshare's); had the parent
   * died before that we would be orphaned without knowing it. Our parent must still be the process
   * tsbuild started. */
  if (host_parent_pid() != r.chain_pid) _exit(128 + SIGKILL);
  if (r.init == NULL) close(INIT_EXE_FD);
  /* The command's stderr arrives as fd 4; our fd 2 is tsbuild's diagnostics pipe. */
  if (dup2(COMMAND_STDERR_FD, 2) < 0) FAILED("dup2: %s", ename(errno));
  enter_container(&r);
  exec_command(&r, r.terminal ? hand_over_pty() : -1);
}
