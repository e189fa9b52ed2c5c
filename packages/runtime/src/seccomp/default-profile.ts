import type { SeccompProfile, SeccompRule } from './profile.js';

/**
 * The default filter: what docker's default seccomp profile allows (moby profiles/seccomp), in
 * our own shape. Everything not allowed fails with EPERM. Namespaces, mounts, kexec and modules,
 * clock setting, reboot, keyctl/add_key/request_key, bpf, perf_event_open, userfaultfd, ptrace
 * before 4.8 ... are denied unless the container holds the capability that guards them anyway.
 */

/** Allowed for every container, grouped by what they do (whitespace-separated names). */
const ALWAYS = `
  read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 lseek _llseek sendfile sendfile64
  splice tee vmsplice copy_file_range readahead
  open openat openat2 creat close close_range dup dup2 dup3 pipe pipe2 fcntl fcntl64 flock ioctl
  stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64 fstatfs fstatfs64
  access faccessat faccessat2 readlink readlinkat getcwd chdir fchdir getdents getdents64
  mkdir mkdirat rmdir link linkat symlink symlinkat unlink unlinkat rename renameat renameat2 mknod mknodat
  chmod fchmod fchmodat chown chown32 fchown fchown32 fchownat lchown lchown32 umask
  truncate truncate64 ftruncate ftruncate64 fallocate fadvise64 fadvise64_64 fsync fdatasync sync syncfs sync_file_range
  utime utimes utimensat utimensat_time64 futimesat name_to_handle_at
  getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr
  inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
  brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 mlockall munlock munlockall remap_file_pages
  membarrier memfd_create memfd_secret pkey_alloc pkey_free pkey_mprotect
  execve execveat exit exit_group fork vfork wait4 waitid waitpid kill tkill tgkill
  pidfd_open pidfd_send_signal process_mrelease
  rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
  rt_tgsigqueueinfo sigaltstack sigprocmask sigreturn signalfd signalfd4 pause restart_syscall
  getpid getppid gettid getpgid getpgrp setpgid getsid setsid
  getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32 getresgid getresgid32
  getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32 setresuid setresuid32
  setresgid setresgid32 setgroups setgroups32 setfsuid setfsuid32 setfsgid setfsgid32 capget capset prctl seccomp
  landlock_add_rule landlock_create_ruleset landlock_restrict_self
  getrlimit setrlimit ugetrlimit prlimit64 getrusage getpriority setpriority ioprio_get ioprio_set
  sched_getaffinity sched_setaffinity sched_getattr sched_setattr sched_getparam sched_setparam sched_getscheduler
  sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64 sched_yield
  getcpu getrandom sysinfo uname times time gettimeofday adjtimex clock_adjtime clock_adjtime64
  clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 nanosleep alarm
  getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
  timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
  futex futex_time64 futex_waitv set_robust_list get_robust_list set_tid_address rseq get_thread_area set_thread_area
  poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
  epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
  io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64 io_uring_enter io_uring_register io_uring_setup
  socketpair socketcall bind connect listen accept accept4 getsockname getpeername getsockopt setsockopt shutdown
  send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
  ipc msgget msgsnd msgrcv msgctl semget semop semctl semtimedop semtimedop_time64 shmget shmat shmdt shmctl
  mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
`;

/** Allowed only when the container holds the capability, which guards them in the kernel too. */
const WITH_CAPABILITY: [string, string][] = [
  ['CAP_SYS_ADMIN', 'bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare'],
  ['CAP_DAC_READ_SEARCH', 'open_by_handle_at'],
  ['CAP_SYS_BOOT', 'reboot'],
  ['CAP_SYS_CHROOT', 'chroot'],
  ['CAP_SYS_MODULE', 'delete_module init_module finit_module'],
  ['CAP_SYS_PACCT', 'acct'],
  ['CAP_SYS_PTRACE', 'kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace'],
  ['CAP_SYS_RAWIO', 'iopl ioperm'],
  ['CAP_SYS_TIME', 'settimeofday stime clock_settime clock_settime64'],
  ['CAP_SYS_TTY_CONFIG', 'vhangup'],
  ['CAP_SYS_NICE', 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node'],
  ['CAP_SYSLOG', 'syslog'],
  ['CAP_BPF', 'bpf'],
  ['CAP_PERFMON', 'perf_event_open'],
];

const names = (s: string): string[] => s.split(/\s+/).filter((n) => n.length > 0);

// clone(2) flags that create namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET):
// without CAP_SYS_ADMIN a clone must have none of them set. 0x7e020000.
const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
const AF_VSOCK = 40;
// personality(2) values docker lets through: PER_LINUX, PER_LINUX32, UNAME26 variants, and the query 0xffffffff.
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];
const ENOSYS = 38;

const rules: SeccompRule[] = [
  { names: names(ALWAYS), action: 'SCMP_ACT_ALLOW' },
  // ptrace became safe to allow in 4.8, where it can no longer be used to bypass seccomp.
  { names: ['process_vm_readv', 'process_vm_writev', 'ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
  { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, op: 'SCMP_CMP_NE', value: AF_VSOCK }] },
  ...PERSONALITIES.map((p): SeccompRule => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, op: 'SCMP_CMP_EQ', value: p }] })),
  { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
  { names: ['modify_ldt'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32', 'x86'] } },
  { names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm', 'arm64'] } },
  ...WITH_CAPABILITY.map(([cap, list]): SeccompRule => ({ names: names(list), action: 'SCMP_ACT_ALLOW', includes: { caps: [cap] } })),
  {
    names: ['clone'],
    action: 'SCMP_ACT_ALLOW',
    args: [{ index: 0, op: 'SCMP_CMP_MASKED_EQ', value: CLONE_NAMESPACE_FLAGS, valueTwo: 0 }],
    excludes: { caps: ['CAP_SYS_ADMIN'] },
  },
  // clone3 passes its flags in memory, out of a filter's reach: answer ENOSYS so libcs fall back to clone.
  { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
];

export const DEFAULT_SECCOMP_PROFILE: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  archMap: [
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
  ],
  syscalls: rules,
};
