"""Confine a grading kernel with the operating system, before any submitted code runs.

``grader.launcher`` calls ``confine(...)`` in the kernel process itself, single-threaded, after
it has imported what it needs and before IPython starts. What it applies, strongest last:

* **per-kernel folders** (``kernel_folders``): HOME, IPython, Jupyter, matplotlib, XDG caches
  and TMPDIR inside the working copy, created here, so IPython can always make its profile (an
  empty or unwritable home killed every kernel once) and nothing one notebook writes is seen by
  the next;
* **thread pools for grading** (``GRADING_THREADS``): one OpenMP/MKL/OpenBLAS/torch intra-op
  thread, passive waiting, so kernels graded side by side do not spin on each other's cores
  (JupyterLab's kernels never come through here and keep their defaults);
* **rlimits** (``apply_rlimits``): the address space (every mapping counts: heap, shared
  memory, memfd, thread stacks) capped at ``memory_limit`` plus what the libraries themselves
  map (``LIBRARY_ADDRESS_SPACE``, measured), the data segment at ``memory_limit``, written files
  at ``FILE_SIZE_LIMIT``, no core dumps;
* **Landlock** (``apply_landlock``, Linux >= 5.13): read only the Python installation, the
  packages and course modules the lesson's policy allows and a few system files; read and write
  only the working copy; execute nothing; bind only the kernel's own TCP ports and connect to
  none (ABI >= 4); signals and abstract unix sockets scoped to the kernel (ABI >= 6);
* **seccomp** (``apply_seccomp``): no new processes (fork, vfork, clone without CLONE_THREAD,
  clone3 answered ENOSYS so glibc falls back to clone, execve, execveat), no ptrace or
  process_vm_*, no io_uring, memfd, bpf, perf or namespaces, sockets only TCP or socketpairs,
  and kill/tgkill/prlimit64/setpriority/pidfd_open/... only aimed at the kernel itself (its pid
  is baked into the filter).

Open descriptors (the checker's channel, ZMQ's sockets) keep working: Landlock checks opens,
not descriptors, and seccomp leaves read/write/send/recv/poll/close alone.

Where Linux lacks Landlock or seccomp (macOS, an old kernel) grading still runs; ``describe()``
then starts with ``WEAKER:`` and says what is missing, for the grade summary.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from grader.seccomp import (
    AUDIT_ARCH,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_SET_MODE_FILTER,
    seccomp_program,
)

GIB = 2**30
LIBRARY_ADDRESS_SPACE = 3 * GIB // 2
"""Address space added to the memory limit for what the libraries map themselves. Measured
(Linux x86_64, Python 3.11, torch 2.13 CPU, two malloc arenas): a grading kernel that imported
numpy, torch, matplotlib and scikit-learn, ran autograd, gradcheck, an inline figure and a
four-thread pool doing torch and BLAS work peaked at 1.13 GiB (13 threads, 8 MiB of stack
each); numpy alone about 0.6 GiB. The rest, 0.37 GiB, is headroom for lazily loaded modules."""
FILE_SIZE_LIMIT = GIB
"""The largest file a kernel may write (RLIMIT_FSIZE): a write past it fails with EFBIG."""
WEAKER = "WEAKER: "
"""How ``describe()`` starts where Landlock or seccomp is missing."""
KERNEL_DIR = ".normlab-kernel"
"""The folder inside the working copy that holds the kernel's home and config folders."""

GRADING_THREADS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "KMP_BLOCKTIME": "0",
}
"""Thread-pool settings of a grading kernel, read by OpenMP, MKL, OpenBLAS and torch (whose
intra-op pool follows OMP_NUM_THREADS) when they first load."""
NO_PROCESS_POOLS = {"JOBLIB_MULTIPROCESSING": "0"}
"""joblib (scikit-learn) probes for process pools by making a semaphore in /dev/shm; refused,
it warns on stderr, which would score a test cell 0. Told not to, it runs serially, silently."""
TRITON_INTERPRETER = {"TRITON_INTERPRET": "1"}
"""Triton (lesson 11) runs kernels in its interpreter, on the CPU: grading is the same on every
machine. It must be set before triton is first imported, and the integrity probe's baseline
imports the locked cells' modules before the notebook's first cell could set it."""

# ---- per-kernel folders and thread pools -------------------------------------------------


def kernel_folders(workdir: str) -> dict[str, str]:
    """Environment variable -> folder for this kernel's home, config, cache and temp folders,
    all under ``workdir/.normlab-kernel``."""
    base = Path(workdir) / KERNEL_DIR
    return {
        "HOME": str(base / "home"),
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTER_CONFIG_DIR": str(base / "jupyter" / "config"),
        "JUPYTER_DATA_DIR": str(base / "jupyter" / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "jupyter" / "runtime"),
        "MPLCONFIGDIR": str(base / "matplotlib"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_RUNTIME_DIR": str(base / "runtime"),
        "TMPDIR": str(base / "tmp"),
        "TRITON_CACHE_DIR": str(base / "triton"),
    }


def prepare_environment(workdir: str) -> dict[str, str]:
    """Create the kernel's folders, point the environment at them and size the thread pools;
    returns the folders. Runs before IPython, numpy or torch are imported."""
    folders = kernel_folders(workdir)
    for folder in folders.values():
        os.makedirs(folder, mode=0o700, exist_ok=True)
    os.environ.update(folders)
    os.environ.update(GRADING_THREADS)
    os.environ.update(NO_PROCESS_POOLS)
    os.environ.update(TRITON_INTERPRETER)
    os.environ.pop("JUPYTER_PATH", None)  # the grader's extra kernel folders are not the kernel's
    return folders


def private_connection_file(path: str, runtime_dir: str) -> str:
    """A copy of the connection file ``path`` in the kernel's runtime folder (the grader's
    runtime folder, with other kernels' keys, becomes unreadable)."""
    copy = Path(runtime_dir) / Path(path).name
    copy.write_bytes(Path(path).read_bytes())
    copy.chmod(0o600)
    return str(copy)


def kernel_ports(connection_file: str) -> tuple[int, ...]:
    """The five TCP ports in a Jupyter connection file."""
    info = json.loads(Path(connection_file).read_text(encoding="utf-8"))
    names = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    return tuple(int(info[n]) for n in names if int(info.get(n, 0)) > 0)


# ---- rlimits -----------------------------------------------------------------------------


def address_space_limit(memory_limit: int) -> int:
    """RLIMIT_AS for a kernel allowed ``memory_limit`` bytes (0: none, returns 0)."""
    return memory_limit + LIBRARY_ADDRESS_SPACE if memory_limit > 0 else 0


def apply_rlimits(memory_limit: int) -> list[str]:
    """Cap address space, data segment, file size and core dumps; returns what was set."""
    import resource  # POSIX only; the grading process imports this module on any system

    limits = [(resource.RLIMIT_CORE, 0, "core 0"), (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT, "")]
    if memory_limit > 0:
        limits += [
            (resource.RLIMIT_DATA, memory_limit, ""),
            (resource.RLIMIT_AS, address_space_limit(memory_limit), ""),
        ]
    for which, value, _ in limits:
        resource.setrlimit(which, (value, value))
    _fewer_malloc_arenas()
    return ["rlimits"]


def _fewer_malloc_arenas() -> None:
    """Two malloc arenas instead of eight per core: each reserves 64 MiB of address space."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def watch_size(path, limit_bytes: int, on_exceed, interval: float = 0.5) -> threading.Event:
    """Watch the total size of the files under ``path`` in a daemon thread; call
    ``on_exceed(size)`` once when it goes over ``limit_bytes``. Returns an Event: set it to
    stop watching. Symbolic links are not followed (a link's target is not the copy's size)."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            size = tree_size(path)
            if size > limit_bytes:
                on_exceed(size)
                return

    threading.Thread(target=watch, name="normlab-size-watch", daemon=True).start()
    return stop


def tree_size(path) -> int:
    """Bytes allocated to the files under ``path`` (links not followed; vanishing files skipped)."""
    total = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


# ---- Landlock ----------------------------------------------------------------------------

SYSCALLS = {
    "x86_64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445,
               "landlock_restrict_self": 446, "seccomp": 317},
    "aarch64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445,
                "landlock_restrict_self": 446, "seccomp": 277},
}  # fmt: skip
PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
# the working copy: read, write, make files and folders; no symlinks (the grader later writes
# the notebook there and must not be sent elsewhere), sockets, fifos or devices
READ_WRITE = (
    READ
    | FS_WRITE_FILE
    | FS_TRUNCATE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_REFER
)
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2

SYSTEM_READ = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/fonts",
    "/usr/share/zoneinfo", "/usr/share/matplotlib", "/etc/fonts", "/etc/ld.so.cache",
    "/etc/localtime", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/hosts", "/dev/urandom",
    "/dev/random", "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
    "/sys/devices/system/cpu", "/sys/fs/cgroup/cpu.max",
)  # fmt: skip
"""System files and folders the kernel reads (libraries, fonts, CPU counts); /proc/self is
the kernel's own /proc/<pid> once opened, never another process's."""
SYSTEM_READ_WRITE = ("/dev/null",)
REFUSED_WITHOUT_TORCH = ("torch", "functorch", "torchgen", "nvidia", "triton")
"""Prefixes of site-packages entries a kernel without torch may not read."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _syscall_numbers() -> dict[str, int] | None:
    return SYSCALLS.get(platform.machine()) if sys.platform == "linux" else None


def _syscall(name: str, *args) -> int:
    """``syscall(name, args...)`` with integer arguments widened to longs; raises OSError."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(ctypes.c_long(_syscall_numbers()[name]), *wide)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel; 0 when there is none (or it is off)."""
    if _syscall_numbers() is None:
        return 0
    try:
        return _syscall("landlock_create_ruleset", None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError:  # ENOSYS: not built in; EOPNOTSUPP: disabled at boot
        return 0


@dataclass
class Rules:
    """What a kernel may touch: path -> Landlock access, and TCP ports it may bind."""

    paths: dict[str, int] = field(default_factory=dict)
    ports: tuple[int, ...] = ()

    def allow(self, path, access: int) -> None:
        path = os.path.realpath(path)
        if os.path.exists(path):
            self.paths[path] = self.paths.get(path, 0) | access


def site_packages_rules(rules: Rules, site: str, torch: bool) -> None:
    """Read access to ``site`` (listing only) and every entry in it but the refused ones."""
    rules.allow(site, FS_READ_DIR)
    for entry in sorted(os.listdir(site)):
        lowered = entry.lower()
        if not torch and lowered.startswith(REFUSED_WITHOUT_TORCH):
            continue
        rules.allow(os.path.join(site, entry), READ)


def course_module_files(utils_dir: str, modules, checker: bool) -> list[str]:
    """Files and folders of ``utils`` a kernel may read: its package files, the ``modules``
    the policy lists (``("*",)``: all) and never ``utils/checks`` when ``checker`` is True
    (its files hold hidden cases). Cached bytecode of each allowed module comes with it."""
    every = "*" in tuple(modules or ())
    names = {"__init__", "guard"} | {m.split(".")[1] for m in modules or () if m.count(".") >= 1}
    found = []
    for entry in sorted(os.listdir(utils_dir)):
        stem = entry.split(".")[0]
        if entry == "__pycache__":
            continue
        if entry == "checks" and checker:
            continue
        if every or stem in names:
            found.append(os.path.join(utils_dir, entry))
    cache = os.path.join(utils_dir, "__pycache__")
    if os.path.isdir(cache):
        allowed = {os.path.basename(p).split(".")[0] for p in found}
        found += [os.path.join(cache, f) for f in os.listdir(cache) if f.split(".")[0] in allowed]
    return found


def kernel_rules(workdir: str, policy: dict, ports: tuple[int, ...]) -> Rules:
    """The Landlock rules of a grading kernel under ``policy`` (``LessonPolicy.as_dict()``)."""
    import sysconfig

    import grader
    import utils

    rules = Rules(ports=(*ports, 0))  # 0: an ephemeral port (ipykernel's IOPub pipe listens)
    rules.allow(workdir, READ_WRITE)
    for path in SYSTEM_READ:
        rules.allow(path, READ)
    for path in SYSTEM_READ_WRITE:
        rules.allow(path, READ | FS_WRITE_FILE | FS_TRUNCATE)
    paths = sysconfig.get_paths()
    rules.allow(paths["stdlib"], READ)  # not platstdlib: in a venv it holds site-packages
    rules.allow(os.path.join(sys.base_prefix, "lib"), READ)  # libpython, lib-dynload
    rules.allow(os.path.join(sys.prefix, "pyvenv.cfg"), READ)
    site_packages_rules(rules, paths["purelib"], bool(policy.get("torch", True)))
    rules.allow(os.path.dirname(grader.__file__), READ)
    utils_dir = os.path.dirname(utils.__file__)
    rules.allow(utils_dir, FS_READ_DIR)
    modules = policy.get("modules", ("*",))
    for path in course_module_files(utils_dir, modules, bool(policy.get("checker"))):
        rules.allow(path, READ)
    return rules


def _ruleset_attr(abi: int) -> bytes:
    fs = FS_BY_ABI[max(k for k in FS_BY_ABI if k <= abi)]
    attr = struct.pack("=Q", fs)
    if abi >= 4:
        attr += struct.pack("=Q", NET_BIND_TCP | NET_CONNECT_TCP)
    if abi >= 6:
        attr += struct.pack("=Q", SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    return attr


def apply_landlock(rules: Rules, abi: int) -> None:
    """Restrict this process (it must have one thread) to ``rules`` under Landlock ``abi``."""
    attr = _ruleset_attr(abi)
    handled_fs = struct.unpack_from("=Q", attr)[0]
    ruleset = _syscall("landlock_create_ruleset", ctypes.c_char_p(attr), len(attr), 0)
    try:
        for path, access in rules.paths.items():
            _add_path_rule(ruleset, path, access & handled_fs)
        if abi >= 4:
            for port in rules.ports:
                rule = struct.pack("=QQ", NET_BIND_TCP, port)
                _syscall("landlock_add_rule", ruleset, RULE_NET_PORT, ctypes.c_char_p(rule), 0)
        _no_new_privileges()
        _syscall("landlock_restrict_self", ruleset, 0)
    finally:
        os.close(ruleset)


def _add_path_rule(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            access &= FILE_ONLY  # Landlock refuses directory rights on a file
        rule = struct.pack("=Qi", access, fd)
        _syscall("landlock_add_rule", ruleset, RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0)
    finally:
        os.close(fd)


def _no_new_privileges() -> None:
    libc = _libc()
    one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
    if libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), one, zero, zero, zero) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


# ---- seccomp (the program is built in grader.seccomp) ---------------------------------------


def apply_seccomp(arch: str, pid: int) -> None:
    """Install the filter on every thread of this process."""
    prog = seccomp_program(arch, pid)
    if len(prog) > 4096:
        raise ValueError("seccomp program too long")
    filters = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buffer = ctypes.create_string_buffer(filters, len(filters))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buffer))
    _no_new_privileges()
    _syscall("seccomp", SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.c_char_p(fprog))


# ---- the whole ---------------------------------------------------------------------------

_in_force: list[str] = []


def confine(workdir: str, policy: dict, ports: tuple[int, ...], memory_limit: int) -> str:
    """Apply every layer this system has to this process; returns ``describe()``.

    Must run with a single thread (Landlock restricts the calling thread and what it starts).
    A layer the system lacks is skipped and named in the description; a layer that exists but
    fails to apply raises, so the kernel never starts less confined than reported.
    """
    if threading.active_count() != 1 or _thread_count() not in (None, 1):
        raise RuntimeError("grader.confine must run before any thread starts")
    _in_force.clear()
    _in_force.extend(apply_rlimits(memory_limit))
    abi = landlock_abi()
    if abi:
        apply_landlock(kernel_rules(workdir, policy, ports), abi)
        _in_force.insert(0, f"Landlock ABI {abi}")
    arch = platform.machine()
    if sys.platform == "linux" and arch in AUDIT_ARCH:
        apply_seccomp(arch, os.getpid())
        _in_force.insert(1 if abi else 0, "seccomp")
    return describe()


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def missing_layers() -> list[str]:
    """The layers this system cannot apply, each with why ("no Landlock (...)")."""
    missing = []
    if os.name != "posix":
        return [f"no confinement at all ({sys.platform}: kernels start unconfined)"]
    if sys.platform != "linux":
        return [f"no Landlock and no seccomp ({sys.platform} is not Linux)"]
    if not landlock_abi():
        missing.append(f"no Landlock (Linux {platform.release()} has none or it is disabled)")
    if platform.machine() not in AUDIT_ARCH:
        missing.append(f"no seccomp ({platform.machine()} is not supported)")
    return missing


def describe() -> str:
    """One line: what confinement grading kernels get on this system, e.g. ``Landlock ABI 7,
    seccomp, rlimits`` or ``WEAKER: no Landlock (...); rlimits`` (for the grade summary)."""
    missing = missing_layers()
    if os.name != "posix":
        return WEAKER + missing[0]
    layers = []
    if not any(m.startswith("no Landlock") for m in missing):
        layers.append(f"Landlock ABI {landlock_abi()}")
    if not any("seccomp" in m for m in missing):
        layers.append("seccomp")
    layers.append("rlimits")
    text = ", ".join(layers)
    return f"{WEAKER}{'; '.join(missing)}; in force: {text}" if missing else text
