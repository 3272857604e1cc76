"""The system calls a worker may make: the seccomp allow-list, one reviewed list, a comment per group.

Derived by running the test suite and ``scripts/bench.py`` with the filter in log mode
(``theater-server --sandbox-log``: every call outside this list is let through, and the fork
server logs it once: "seccomp log mode: worker N made X"), then reading what each call is for. A worker is
CPython, wasmtime (Rust), libzmq (C++) and glibc: the list is what those make while a worker
loads its component, runs calls, serves its sockets and ends, and nothing else. Names, not
numbers: libseccomp resolves them for the machine's architecture, and skips a name an
architecture does not have. Arguments are checked where a call is broad (``socket``,
``clone``, ``ioctl``, ``prctl``): see ``worker.seccomp``.

Everything not here fails with EPERM. The calls in ``FATAL`` end the worker at once: the
fork server kills it and the stop is recorded with the call's name (reason ``seccomp``).
"""

from __future__ import annotations

ALLOWED: dict[str, tuple[str, ...]] = {
    # memory: the allocators (glibc, Rust, CPython), wasmtime's linear memories (reserve, commit,
    # guard pages, copy-on-write images of a compiled component, reset between instances)
    "memory": ("brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "memfd_create",
               "membarrier", "mlock", "munlock"),
    # files: reading the compiled component and the interpreter's files, the filesystem handler
    # (openat2 beneath its root), stdout/stderr to the server's log pipe
    "files": ("read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
              "open", "openat", "openat2", "close", "close_range", "creat", "lseek", "fstat", "stat", "lstat",
              "newfstatat", "statx", "fstatfs", "statfs", "access", "faccessat", "faccessat2", "readlink",
              "readlinkat", "getdents64", "getcwd", "chdir", "fchdir", "fcntl", "dup", "dup2", "dup3", "flock",
              "fsync", "fdatasync", "ftruncate", "truncate", "fallocate", "fadvise64", "sendfile",
              "copy_file_range", "umask", "utimensat", "futimesat"),
    # the filesystem handler's writes (beneath its granted root: Landlock and openat2 say where)
    "file changes": ("mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
                     "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat"),
    # waiting: libzmq's and Python's poll loops, the watchdog's select, wakeup pipes and eventfds
    "waiting": ("poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
                "epoll_pwait", "epoll_pwait2", "pipe", "pipe2", "eventfd", "eventfd2", "futex", "futex_waitv",
                "nanosleep", "clock_nanosleep", "sched_yield", "restart_syscall"),
    # unix sockets only (ZeroMQ over ipc:// paths; the fork server's hand-over): ``socket`` and
    # ``socketpair`` are checked for AF_UNIX in worker.seccomp
    "sockets": ("bind", "listen", "connect", "accept", "accept4", "getsockname", "getpeername", "getsockopt",
                "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown"),
    # threads: the watchdog, libzmq's I/O and reaper threads, wasmtime's; ``clone`` is checked in
    # worker.seccomp (threads always, processes only for granted commands)
    "threads": ("set_tid_address", "set_robust_list", "get_robust_list", "rseq", "exit", "exit_group",
                "gettid", "sched_getaffinity", "sched_getparam", "sched_getscheduler", "arch_prctl",
                # libzmq's threads set their own (default) policy as they start: with no
                # capability a thread can only lower its priority
                "sched_setscheduler", "sched_setparam"),
    # signals: SIGTERM as a stop request, the watchdog's wakeups, PDEATHSIG; Landlock keeps
    # signals inside the worker's own domain (its own threads and programs)
    "signals": ("rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
                "sigaltstack", "kill", "tgkill", "tkill", "alarm", "setitimer", "getitimer"),
    # who and where: identities, limits and usage (resource, psutil-free reports), clocks, random
    "process": ("getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid",
                "getresgid", "getpgrp", "getpgid", "getsid", "getrlimit", "setrlimit", "prlimit64",
                "getrusage", "times", "sysinfo", "uname", "getcpu", "capget", "getpriority",
                "clock_gettime", "clock_getres", "gettimeofday", "time", "getrandom"),
}

# Only for an actor granted programs to run (``filesystem`` with ``allowed_commands``):
# starting one (a new session, its own process group), waiting for it, killing its group.
COMMANDS = ("execve", "execveat", "wait4", "waitid", "setsid", "setpgid", "vfork", "fork")

# Calls that end the worker at once (recorded as reason ``seccomp``, the call named): no worker
# ever makes them, and each is a known way out of a sandbox or into the kernel's weak spots.
FATAL: dict[str, tuple[str, ...]] = {
    # looking into or controlling another process (the fork server, a sibling worker)
    "other processes": ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp"),
    # new namespaces (a way around every other layer) and mounts
    "namespaces": ("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
                   "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"),
    # running another program (unless the grant lists programs: COMMANDS)
    "programs": ("execve", "execveat"),
    # the kernel's larger attack surfaces
    "kernel": ("bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
               "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
               "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at"),
    # the machine's own settings
    "machine": ("reboot", "swapon", "swapoff", "acct", "syslog", "iopl", "ioperm", "quotactl", "settimeofday",
                "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "vhangup"),
}
