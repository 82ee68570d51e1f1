"""The seccomp filter of a grading kernel, as a classic BPF program: which system calls a
confined kernel may not make, and which only when aimed at itself. ``grader.confine`` installs
it (``apply_seccomp``); this module only builds it, so it can be read and tested alone."""

from __future__ import annotations

import errno

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
CLONE_THREAD = 0x00010000
AF_INET, AF_INET6, AF_NETLINK, NETLINK_ROUTE = 2, 10, 16, 0
SOCK_STREAM, SOCK_TYPE_MASK = 1, 0xF
PRIO_PROCESS = 0

# syscall numbers: (x86_64, aarch64); None where the architecture has no such call
NR = {
    "fork": (57, None), "vfork": (58, None), "clone": (56, 220), "clone3": (435, 435),
    "execve": (59, 221), "execveat": (322, 281), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438),
    "prlimit64": (302, 261), "setpriority": (141, 140), "socket": (41, 198),
    "sched_setaffinity": (203, 122), "sched_setscheduler": (144, 119),
    "sched_setparam": (142, 118), "ioprio_set": (251, 30), "process_madvise": (440, 440),
    "kcmp": (312, 272), "migrate_pages": (256, 238), "move_pages": (279, 239),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "memfd_create": (319, 279), "memfd_secret": (447, 447), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "unshare": (272, 97),
    "setns": (308, 268), "personality": (135, 92), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "mount": (165, 40),
    "open_tree": (428, 428), "fsopen": (430, 430), "process_mrelease": (448, 448),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
}  # fmt: skip
REFUSED = (
    "fork", "vfork", "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_getfd", "process_madvise", "ioprio_set", "kcmp", "migrate_pages", "move_pages",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "memfd_create", "memfd_secret", "bpf",
    "perf_event_open", "userfaultfd", "unshare", "setns", "personality", "keyctl", "add_key",
    "request_key", "mount", "open_tree", "fsopen", "process_mrelease", "open_by_handle_at",
    "name_to_handle_at",
)  # fmt: skip
"""Refused outright (EPERM): new processes, other processes' memory, kernel interfaces that
step around seccomp (io_uring) or the memory limit (memfd), namespaces, keyrings."""
OWN_PID_FIRST = (
    "kill", "tkill", "rt_sigqueueinfo", "tgkill", "rt_tgsigqueueinfo", "pidfd_open", "prlimit64",
)  # fmt: skip
"""Allowed only when their first argument (a pid) is 0 or the kernel's own pid (EPERM)."""
OWN_PID_OR_NOTHING = ("sched_setaffinity", "sched_setscheduler", "sched_setparam")
"""Done only when their first argument is 0 or the kernel's pid; aimed at any other task they
return 0 and do nothing: libraries set their own threads' scheduling by thread id (libzmq
aborts on a refusal), and a thread id cannot be told from another process's pid in BPF."""

BPF_LD_W_ABS, BPF_JEQ_K, BPF_JSET_K, BPF_RET_K, BPF_JGE_K = 0x20, 0x15, 0x45, 0x06, 0x35
BPF_ALU_AND_K = 0x54
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1


def _stmt(code: int, k: int) -> tuple:
    return (code, 0, 0, k & 0xFFFFFFFF)


def _jump(code: int, k: int, jt: int, jf: int) -> tuple:
    return (code, jt, jf, k & 0xFFFFFFFF)


def _load_nr() -> tuple:
    return _stmt(BPF_LD_W_ABS, 0)


def _load_arg(index: int, high: bool = False) -> tuple:
    return _stmt(BPF_LD_W_ABS, 16 + 8 * index + (4 if high else 0))


def _errno(code: int) -> tuple:
    return _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | code)


def _allow() -> tuple:
    return _stmt(BPF_RET_K, SECCOMP_RET_ALLOW)


def _pid_is_self_or_zero(pid: int, arg: int = 0, refusal: int = errno.EPERM) -> list[tuple]:
    """Allow when 32-bit argument ``arg`` is 0 or ``pid``, else return ``-refusal``."""
    return [
        _load_arg(arg),
        _jump(BPF_JEQ_K, 0, 2, 0),
        _jump(BPF_JEQ_K, pid, 1, 0),
        _errno(refusal),
        _allow(),
    ]


def _guarded(nr: int, body: list[tuple]) -> list[tuple]:
    """``body`` runs when the syscall number is ``nr`` (the accumulator holds it on entry)."""
    return [_jump(BPF_JEQ_K, nr, 0, len(body)), *body, _load_nr()]


def seccomp_program(arch: str, pid: int) -> list[tuple]:
    """The BPF program (a list of (code, jt, jf, k)) of a grading kernel with pid ``pid``."""
    index = 0 if arch == "x86_64" else 1

    def nr(name: str):
        return NR[name][index]

    prog = [
        _stmt(BPF_LD_W_ABS, 4),
        _jump(BPF_JEQ_K, AUDIT_ARCH[arch], 1, 0),
        _stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        _load_nr(),
    ]
    if arch == "x86_64":  # the x32 ABI would reach the same calls under other numbers
        prog += [_jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1), _errno(errno.ENOSYS)]
    for name in REFUSED:
        if nr(name) is not None:
            prog += [_jump(BPF_JEQ_K, nr(name), 0, 1), _errno(errno.EPERM)]
    prog += [_jump(BPF_JEQ_K, nr("clone3"), 0, 1), _errno(errno.ENOSYS)]
    prog += _guarded(
        nr("clone"),
        [_load_arg(0), _jump(BPF_JSET_K, CLONE_THREAD, 0, 1), _allow(), _errno(errno.EPERM)],
    )
    for name in OWN_PID_FIRST:
        prog += _guarded(nr(name), _pid_is_self_or_zero(pid))
    for name in OWN_PID_OR_NOTHING:
        prog += _guarded(nr(name), _pid_is_self_or_zero(pid, refusal=0))
    prog += _guarded(
        nr("setpriority"),
        [_load_arg(0), _jump(BPF_JEQ_K, PRIO_PROCESS, 1, 0), _errno(errno.EPERM)]
        + _pid_is_self_or_zero(pid, arg=1),
    )
    prog += _guarded(nr("socket"), _socket_rules())
    prog += [_allow()]
    return prog


def _socket_rules() -> list[tuple]:
    """socket(): TCP over IPv4/IPv6 (ZMQ; Landlock picks the ports) and route netlink (the
    list of local addresses jupyter_client reads). No UDP, no raw sockets, no other netlink,
    no unix sockets (Landlock ABI 7 cannot fence a socket file's connect); socketpair, which
    is not socket(), still works."""
    return [
        _load_arg(0),
        _jump(BPF_JEQ_K, AF_NETLINK, 0, 2),
        _load_arg(2),
        _jump(BPF_JEQ_K, NETLINK_ROUTE, 6, 5),
        _jump(BPF_JEQ_K, AF_INET, 1, 0),
        _jump(BPF_JEQ_K, AF_INET6, 0, 3),
        _load_arg(1),
        _stmt(BPF_ALU_AND_K, SOCK_TYPE_MASK),
        _jump(BPF_JEQ_K, SOCK_STREAM, 1, 0),
        _errno(errno.EACCES),
        _allow(),
    ]
