"""grader.confine: every refusal observed from inside a real grading kernel, beside an honest one.

Kernels start as grading starts them: ``SandboxKernelManager`` (the launcher, a lesson's policy,
the worker's private roots), in a working copy under ``grading_root()``. Attacks step around the
audit hook on purpose (``dir_fd`` opens, libc aliases the hook does not list, ``_posixsubprocess``,
pidfds, sqlite, /proc), so what stops them is the operating system.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from grader import confine
from grader.policy import LESSONS
from grader.sandbox import SandboxKernelManager
from grader.worker import grading_root

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
LANDLOCK = confine.landlock_abi()
needs_landlock = pytest.mark.skipif(
    not LANDLOCK or "seccomp" not in confine.describe(),
    reason=f"confinement is weaker here: {confine.describe()}",
)
EACCES, EPERM = 13, 1
HOOK = -1
"""What ``errno_of`` returns for a refusal by the audit hook (a PermissionError without errno)."""


class Kernel:
    """A grading kernel of ``lesson`` in its own working copy; ``run(code)`` executes a cell."""

    def __init__(
        self, lesson: str, memory_limit: int = GIB, env: dict | None = None, warm: bool = True
    ):
        self.workdir = Path(tempfile.mkdtemp(prefix="confine-", dir=grading_root()))
        # The loop lives in a thread of its own: a test that ran before this one (Playwright's
        # sync API) may leave a loop marked as running in the main thread.
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kernel-loop")
        self.loop = asyncio.new_event_loop()
        rules = {
            "private": [str(ROOT), str(grading_root())],
            "assignment": lesson,
            "policy": LESSONS[lesson].as_dict(),
            # warm: as grading starts it (no inline figures, forked by grader.zygote); cold: a
            # new process with inline figures, as the launcher starts any other kernel
            "figures": not warm,
        }
        self.warm = warm
        self.km = SandboxKernelManager(
            memory_limit=memory_limit, jail_rules=json.dumps(rules), warm=warm
        )
        self._run(self._start(env))

    def _run(self, coro):
        return self.thread.submit(self.loop.run_until_complete, coro).result()

    async def _start(self, env):
        kw = {"env": {**os.environ, **env}} if env is not None else {}
        await self.km.start_kernel(cwd=str(self.workdir), **kw)
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> dict:
        """{"status", "ename", "evalue", "stdout", "mime"} of one cell."""
        out = {"stdout": "", "mime": set()}

        def hook(msg):
            content = msg["content"]
            if msg["msg_type"] == "stream" and content["name"] == "stdout":
                out["stdout"] += content["text"]
            elif msg["msg_type"] in ("display_data", "execute_result"):
                out["mime"] |= set(content["data"])

        reply = self._run(
            self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
        )
        content = reply["content"]
        return {**out, **{k: content.get(k) for k in ("status", "ename", "evalue")}}

    def alive(self) -> bool:
        return self._run(self.km.is_alive())

    def close(self) -> None:
        self.kc.stop_channels()
        self._run(self.km.shutdown_kernel(now=True))
        self.thread.submit(self.loop.close).result()
        self.thread.shutdown()


KINDS = ["warm", "cold"]
"""Every refusal is observed in a kernel forked from a warm zygote (how grading starts them)
and in one started as a new process (``warm=False``, ``NORMLAB_WARM_KERNELS=0``)."""


@pytest.fixture(scope="module", params=KINDS)
def numpy_kernel(request):
    """Lesson 02: no torch, test cells in the checker (``utils/checks`` unreadable)."""
    kernel = Kernel("02_batchnorm_forward", warm=request.param == "warm")
    yield kernel
    kernel.close()


@pytest.fixture(scope="module", params=KINDS)
def torch_kernel(request):
    """Lesson 09: torch allowed, every course module."""
    kernel = Kernel("09_batchnorm_in_pytorch", warm=request.param == "warm")
    yield kernel
    kernel.close()


def errno_of(kernel: Kernel, code: str) -> int | None:
    """The errno of the OSError that ``code`` raised in ``kernel`` (``HOOK``: the audit hook's
    PermissionError), or None when it raised nothing."""
    wrapped = "try:\n" + textwrap.indent(textwrap.dedent(code), "    ")
    wrapped += "\n    print('no error')\nexcept OSError as e:\n    print('errno', e.errno or -1)\n"
    printed = kernel.run(wrapped)["stdout"].split()
    assert printed[:1] in (["errno"], ["no"]), printed
    return int(printed[1]) if printed[0] == "errno" else None


def libc_errno(kernel: Kernel, call: str) -> tuple[int, int]:
    """(return value, errno) of ``call`` on ``libc`` (ctypes, aliases the audit hook misses)."""
    cell = f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        result = {call}
        print(result, ctypes.get_errno())
    """
    result, err = kernel.run(cell)["stdout"].split()[-2:]
    return int(result), int(err)


# ---- the honest kernel ---------------------------------------------------------------------


@needs_landlock
@pytest.mark.slow
def test_an_honest_kernel_runs_numpy_torch_figures_and_thread_pools(torch_kernel):
    cell = """
        import concurrent.futures, os
        import numpy as np, torch
        import matplotlib.pyplot as plt
        def work(i):
            a = torch.randn(64, 64, dtype=torch.float64)
            b = np.random.default_rng(i).normal(size=(128, 128))
            return float((a @ a).sum() * 0) + float((b @ b.T).trace() > 0)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            print(sum(pool.map(work, range(8))))
        plt.plot([1, 2, 3]); plt.show()
    """
    out = torch_kernel.run(cell)
    assert out["status"] == "ok", out
    assert out["stdout"].split() == ["8.0"]
    # grading draws on no canvas (matplotlib's agg backend); the cold kernel draws inline
    assert ("image/png" in out["mime"]) is not torch_kernel.warm


@needs_landlock
@pytest.mark.slow
def test_a_grading_kernel_has_one_thread_per_pool(torch_kernel):
    cell = """
        import os, torch, threadpoolctl, numpy as np
        np.ones((50, 50)) @ np.ones((50, 50))
        pools = {p["internal_api"]: p["num_threads"] for p in threadpoolctl.threadpool_info()}
        print(torch.get_num_threads(), os.environ["OMP_WAIT_POLICY"], sorted(set(pools.values())))
    """
    assert torch_kernel.run(cell)["stdout"].split() == ["1", "PASSIVE", "[1]"]


@needs_landlock
@pytest.mark.slow
def test_the_kernel_has_its_own_home_and_config_folders_in_its_working_copy(numpy_kernel):
    cell = """
        import os, IPython
        names = ["HOME", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "TMPDIR",
                 "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"]
        print(all(os.environ[n].startswith(os.getcwd() + "/") for n in names),
              os.path.isdir(os.path.join(IPython.paths.get_ipython_dir(), "profile_default")))
    """
    assert numpy_kernel.run(cell)["stdout"].split() == ["True", "True"]


@needs_landlock
@pytest.mark.slow
def test_a_kernel_starts_from_an_empty_home_without_xdg_folders(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "", "XDG_CACHE_HOME": "", "IPYTHONDIR": ""}
    kernel = Kernel("00_gradient_checking", env=env)
    try:
        assert kernel.run("print(1 + 1)")["stdout"] == "2\n"
    finally:
        kernel.close()
    assert list(tmp_path.iterdir()) == []  # nothing written in the grader's home


# ---- no new processes, nothing aimed at another process ------------------------------------


@needs_landlock
@pytest.mark.slow
def test_os_fork_is_refused(numpy_kernel):
    out = numpy_kernel.run("import os; os.fork()")
    assert out["ename"] == "PermissionError"


@needs_landlock
@pytest.mark.slow
def test_the_private_fork_exec_primitive_is_refused(numpy_kernel):
    cell = """
        import _posixsubprocess, os
        r, w = os.pipe()
        _posixsubprocess.fork_exec([b"/bin/true"], [b"/bin/true"], True, (w,), None, None,
            -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)
    """
    assert errno_of(numpy_kernel, cell) == EPERM
    assert numpy_kernel.alive()


@needs_landlock
@pytest.mark.slow
@pytest.mark.parametrize("call", ["libc['_Fork']()", "libc['__vfork']()"])
def test_forks_through_libc_are_refused(numpy_kernel, call):
    assert libc_errno(numpy_kernel, call) == (-1, EPERM)


@needs_landlock
@pytest.mark.slow
def test_execveat_through_libc_is_refused(numpy_kernel):
    call = (
        "libc['execveat'](-100, b'/bin/true', (ctypes.c_char_p * 2)(b'true', None), "
        "(ctypes.c_char_p * 1)(None), 0)"
    )
    assert libc_errno(numpy_kernel, call) == (-1, EPERM)


@needs_landlock
@pytest.mark.slow
def test_signals_to_the_grader_are_refused(numpy_kernel):
    ppid = os.getpid()
    assert numpy_kernel.run(f"import os; os.kill({ppid}, 9)")["ename"] == "PermissionError"
    pidfd = f"import os, signal; signal.pidfd_send_signal(os.pidfd_open({ppid}), 9)"
    assert errno_of(numpy_kernel, pidfd) == EPERM
    assert libc_errno(numpy_kernel, f"libc['pidfd_open']({ppid}, 0)") == (-1, EPERM)
    assert errno_of(numpy_kernel, f"import signal; signal.pthread_kill({ppid}, 0)") == HOOK


@needs_landlock
@pytest.mark.slow
def test_limits_and_priority_of_the_grader_cannot_be_changed(numpy_kernel):
    ppid = os.getpid()
    before = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    prlimit = f"import resource; resource.prlimit({ppid}, resource.RLIMIT_NOFILE, (1, 1))"
    assert errno_of(numpy_kernel, prlimit) == EPERM
    renice = f"import os; os.setpriority(os.PRIO_PROCESS, {ppid}, 19)"
    assert errno_of(numpy_kernel, renice) == EPERM
    assert errno_of(numpy_kernel, "import os; os.setpriority(os.PRIO_USER, 0, 19)") == EPERM
    numpy_kernel.run(f"import os; os.sched_setaffinity({ppid}, {{0}})")
    assert (os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)) == before
    assert errno_of(numpy_kernel, "import os; os.setpriority(os.PRIO_PROCESS, 0, 1)") is None


@needs_landlock
@pytest.mark.slow
def test_the_graders_proc_entries_are_unreadable(numpy_kernel):
    ppid = os.getpid()
    assert errno_of(numpy_kernel, f"open('/proc/{ppid}/cmdline').read()") == EACCES
    assert errno_of(numpy_kernel, f"open('/proc/{ppid}/environ').read()") == EACCES
    assert errno_of(numpy_kernel, "open('/proc/self/status').read()") is None


# ---- files -----------------------------------------------------------------------------------


@needs_landlock
@pytest.mark.slow
def test_solutions_are_unreadable_through_a_dir_fd_and_through_libc(numpy_kernel):
    target = next((ROOT / "solutions").glob("*/*.ipynb"))
    relative = target.relative_to(ROOT)
    dir_fd = f"""
        import os
        above = os.open({str(ROOT.parent)!r}, os.O_PATH)
        os.open({str(Path(ROOT.name) / relative)!r}, os.O_RDONLY, dir_fd=above)
    """
    assert errno_of(numpy_kernel, dir_fd) == EACCES
    assert libc_errno(numpy_kernel, f"libc['__open']({bytes(target)!r}, 0)") == (-1, EACCES)
    listing = f"import os; os.listdir({str(ROOT / 'solutions')!r})"
    assert errno_of(numpy_kernel, listing) == HOOK
    by_fd = f"import os; os.listdir(os.open({str(ROOT / 'solutions')!r}, os.O_RDONLY))"
    assert errno_of(numpy_kernel, by_fd) == HOOK  # the open; Landlock refuses it too, below
    assert libc_errno(numpy_kernel, f"libc['__open']({bytes(ROOT)!r}, 0)") == (-1, EACCES)


@needs_landlock
@pytest.mark.slow
def test_hidden_cases_in_utils_checks_are_unreadable_in_a_checker_lesson(numpy_kernel):
    checks = ROOT / "utils" / "checks" / "batchnorm.py"
    assert errno_of(numpy_kernel, f"open({str(checks)!r}).read()") == EACCES
    utils_init = ROOT / "utils" / "__init__.py"
    assert errno_of(numpy_kernel, f"open({str(utils_init)!r}).read()") is None


@needs_landlock
@pytest.mark.slow
def test_another_students_scratch_folder_is_unreadable(numpy_kernel, tmp_path):
    other = Path(tempfile.mkdtemp(prefix="grade-", dir=grading_root()))
    (other / "notebook.ipynb").write_text("{}")
    cell = f"""
        import os
        fd = os.open({str(grading_root().parent)!r}, os.O_PATH)
        os.open({str(other.relative_to(grading_root().parent) / "notebook.ipynb")!r}, 0, dir_fd=fd)
    """
    assert errno_of(numpy_kernel, cell) == EACCES


@needs_landlock
@pytest.mark.slow
@pytest.mark.parametrize(
    "folder",
    ["site-packages", "utils", "home", "dev/shm", "tmp"],
)
def test_nothing_outside_the_working_copy_is_writable(numpy_kernel, folder):
    import sysconfig

    where = {
        "site-packages": sysconfig.get_paths()["purelib"],
        "utils": str(ROOT / "utils"),
        "home": os.path.expanduser("~"),
        "dev/shm": "/dev/shm",
        "tmp": tempfile.gettempdir(),
    }[folder]
    name = "normlab-evil.pth" if folder == "site-packages" else "normlab_evil.py"
    cell = f"""
        import os
        fd = os.open({where!r}, os.O_PATH)
        os.open({name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    """
    assert errno_of(numpy_kernel, cell) == EACCES
    assert not os.path.exists(os.path.join(where, name))


@needs_landlock
@pytest.mark.slow
def test_an_ipython_startup_file_reaches_no_other_kernel(numpy_kernel):
    plant = """
        import os, IPython
        startup = os.path.join(IPython.paths.get_ipython_dir(), "profile_default", "startup")
        os.makedirs(startup, exist_ok=True)
        open(os.path.join(startup, "00-evil.py"), "w").write("EVIL = 1")
        home_startup = os.path.expanduser("~/.ipython/profile_default/startup")
        os.makedirs(home_startup, exist_ok=True)
        open(os.path.join(home_startup, "00-evil.py"), "w").write("EVIL = 1")
    """
    assert numpy_kernel.run(plant)["status"] == "ok"  # its own home: allowed, and private
    real_home = Path(os.path.expanduser("~")) / ".ipython" / "profile_default" / "startup"
    escape = f"open({str(real_home / '00-evil.py')!r}, 'w')"
    assert errno_of(numpy_kernel, escape) in (HOOK, 2)  # 2: the folder does not exist
    through_fd = f"""
        import os
        fd = os.open("/", os.O_PATH)
        os.open({str(real_home.relative_to("/") / "00-evil.py")!r}, os.O_CREAT | os.O_WRONLY,
                dir_fd=fd)
    """
    assert errno_of(numpy_kernel, through_fd) in (EACCES, 2)
    assert not (real_home / "00-evil.py").exists()
    other = Kernel("02_batchnorm_forward")
    try:
        assert other.run("print('EVIL' in dir())")["stdout"] == "False\n"
    finally:
        other.close()


@needs_landlock
@pytest.mark.slow
def test_sqlite_cannot_attach_a_gradebook_outside_the_working_copy(numpy_kernel):
    gradebook = Path(tempfile.mkdtemp(dir=grading_root())) / "gradebook.db"
    import sqlite3

    sqlite3.connect(gradebook).execute("create table grade (score real)")
    cell = f"""
        import sqlite3
        db = sqlite3.connect(":memory:")
        db.execute("ATTACH DATABASE ? AS gb", ({str(gradebook)!r},))
        db.execute("insert into gb.grade values (100)")
    """
    out = numpy_kernel.run(cell)
    assert out["ename"] == "OperationalError" and "unable to open" in out["evalue"]
    assert sqlite3.connect(gradebook).execute("select count(*) from grade").fetchone() == (0,)


@needs_landlock
@pytest.mark.slow
def test_other_kernels_connection_files_are_unreadable(numpy_kernel, torch_kernel):
    their_file = torch_kernel.km.connection_file
    assert errno_of(numpy_kernel, f"open({their_file!r}).read()") == EACCES


@needs_landlock
@pytest.mark.slow
def test_torch_is_neither_importable_nor_readable_in_a_numpy_lesson(numpy_kernel):
    out = numpy_kernel.run("import torch")
    assert out["ename"] == "ModuleNotFoundError" and "numpy only" in out["evalue"]
    import torch

    source = os.path.join(os.path.dirname(torch.__file__), "__init__.py")
    assert errno_of(numpy_kernel, f"open({source!r}).read()") == EACCES
    assert libc_errno(numpy_kernel, f"libc['__open']({source.encode()!r}, 0)") == (-1, EACCES)


# ---- network ---------------------------------------------------------------------------------


@needs_landlock
@pytest.mark.slow
def test_no_tcp_connection_to_another_local_server(numpy_kernel):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        cell = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        assert errno_of(numpy_kernel, cell) == EACCES
    finally:
        server.close()


@needs_landlock
@pytest.mark.slow
def test_no_unix_or_udp_sockets_but_socketpairs_work(numpy_kernel):
    name = f"\0normlab-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(name)
    server.listen()
    try:
        cell = f"import socket; socket.socket(socket.AF_UNIX).connect({name!r})"
        assert errno_of(numpy_kernel, cell) == EACCES
        udp = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        assert errno_of(numpy_kernel, udp) == EACCES
        assert errno_of(numpy_kernel, "import socket; socket.socketpair()") is None
    finally:
        server.close()


# ---- memory and disk -------------------------------------------------------------------------


@needs_landlock
@pytest.mark.slow
def test_a_large_shared_memory_mapping_counts_against_the_memory_limit(numpy_kernel):
    cell = f"import mmap; m = mmap.mmap(-1, {int(2.5 * GIB)}); m[-1:] = b'x'"
    assert errno_of(numpy_kernel, cell) == 12  # ENOMEM: a 1 GiB kernel
    assert numpy_kernel.alive()
    assert libc_errno(numpy_kernel, "libc['memfd_create'](b'x', 0)") == (-1, EPERM)


@needs_landlock
@pytest.mark.slow
def test_a_2_gib_file_cannot_be_written(numpy_kernel):
    cell = """
        import os
        fd = os.open("big.bin", os.O_WRONLY | os.O_CREAT)
        os.pwrite(fd, b"x", 2 * 2**30)
    """
    assert errno_of(numpy_kernel, cell) == 27  # EFBIG
    assert errno_of(numpy_kernel, "open('big.bin', 'r+b').truncate(2 * 2**30)") == 27
    assert numpy_kernel.alive()


# ---- the module's own pieces -----------------------------------------------------------------


def test_describe_names_what_is_in_force_or_says_weaker():
    text = confine.describe()
    if LANDLOCK and "seccomp" in text:
        assert text == f"Landlock ABI {LANDLOCK}, seccomp, rlimits"
    else:
        assert text.startswith("WEAKER: ")


def test_watch_size_calls_back_once_when_the_copy_grows_past_its_limit(tmp_path):
    seen = []
    done = threading.Event()
    stop = confine.watch_size(
        tmp_path, 64 * 1024, lambda size: (seen.append(size), done.set()), 0.05
    )
    (tmp_path / "small").write_bytes(b"x" * 1000)
    time.sleep(0.2)
    assert seen == []
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big").write_bytes(os.urandom(200 * 1024))
    assert done.wait(5)
    time.sleep(0.2)
    stop.set()
    assert len(seen) == 1 and seen[0] > 64 * 1024  # seen over the limit, perhaps mid-write


def test_the_address_space_limit_leaves_room_for_the_libraries():
    assert confine.address_space_limit(0) == 0
    assert confine.address_space_limit(GIB) == GIB + confine.LIBRARY_ADDRESS_SPACE


def test_utils_checks_is_left_out_of_a_checker_lessons_files():
    utils_dir = str(ROOT / "utils")
    files = confine.course_module_files(utils_dir, ("utils.data",), checker=True)
    names = {os.path.basename(f) for f in files}
    assert {"__init__.py", "guard.py", "data.py"} <= names and "checks" not in names
    assert "nn.py" not in names
    every = confine.course_module_files(utils_dir, ("*",), checker=True)
    assert "checks" not in {os.path.basename(f) for f in every}
    unchecked = confine.course_module_files(utils_dir, ("*",), checker=False)
    assert "checks" in {os.path.basename(f) for f in unchecked}


SECCOMP_ONLY = """
import ctypes, os, platform, sys
from grader import confine, seccomp
confine.apply_seccomp(platform.machine(), os.getpid())
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
nr = {name: seccomp.NR[name][0 if platform.machine() == "x86_64" else 1] for name in seccomp.NR}
def call(name, *args):
    r = libc.syscall(ctypes.c_long(nr[name]), *[ctypes.c_long(a) for a in args])
    return r, ctypes.get_errno() if r < 0 else 0
SIGCHLD = 17
print(call("clone", SIGCHLD, 0, 0, 0, 0))
print(call("clone3", 0, 0))
print(call("kill", os.getppid(), 0))
print(call("kill", -1, 0))
print(call("kill", os.getpid(), 0))
print(call("tgkill", os.getppid(), os.getppid(), 0))
print(call("ptrace", 16, os.getppid(), 0, 0))
print(call("process_vm_readv", os.getppid(), 0, 0, 0, 0, 0))
import threading; t = threading.Thread(target=print, args=("thread",)); t.start(); t.join()
"""


@pytest.mark.skipif("seccomp" not in confine.describe(), reason=confine.describe())
def test_the_seccomp_filter_refuses_raw_syscalls_and_keeps_threads():
    out = subprocess.run(
        [sys.executable, "-I", "-c", SECCOMP_ONLY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out == [
        "(-1, 1)",
        "(-1, 38)",
        "(-1, 1)",
        "(-1, 1)",
        "(0, 0)",
        "(-1, 1)",
        "(-1, 1)",
        "(-1, 1)",
        "thread",
    ]
