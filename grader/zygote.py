"""Warm kernels: a zygote per grading worker forks a fresh, confined kernel for each notebook.

A grading kernel used to be a new Python process that imported numpy, matplotlib, IPython,
ipykernel and, for most lessons, torch: about 2-4 CPU-seconds before the notebook's first
cell, paid again by every notebook. A zygote pays it once per worker process:

* ``Zygote`` starts ``python -I -m grader.zygote`` with one end of a socket pair. The zygote
  sets the grading thread pools (one thread each: ``grader.confine.GRADING_THREADS``), the
  non-drawing matplotlib backend and its own scratch folders, imports ``PRELOAD`` (and
  ``TORCH_PRELOAD`` in the flavour for lessons whose kernel may import torch; the other
  flavour never maps torch, so a numpy lesson's kernel cannot reach it), checks that it still
  has a single thread (forking a process with thread pools leaves them dead in the child),
  and waits. It never runs submitted code.
* For each kernel, the worker sends the launcher's command line, environment and working
  folder over the socket, with the checker channel's file descriptor. The zygote forks; the
  child drops every inherited descriptor but stdio and the channel (so it cannot reach the
  zygote), dies with the zygote (``PR_SET_PDEATHSIG``), starts its own session, reseeds the
  random generators and then runs ``grader.launcher.main``: the same confinement as a
  kernel started from scratch (own home and config folders, rlimits, Landlock, seccomp,
  import policy, audit hook) before any submitted code, then ipykernel.
* The zygote answers with the child's pid and a pidfd (signals reach exactly that process,
  never a recycled pid) and, when the child exits, writes its exit status to a socket that
  came with the request.

``ZygoteProvisioner`` is a jupyter_client kernel provisioner (entry point ``normlab-zygote``)
that launches through the zygote: nbclient and nbgrader drive its kernels as any other.
Every child starts from the zygote's state, which no notebook has touched, so nothing one
notebook does is seen by the next (``tests/test_grader_zygote.py``). Where fork, pidfds or
the zygote are unavailable (not Linux, figures drawn inline, the zygote failed to start), the
provisioner starts the kernel as ``LocalProvisioner`` does.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from grader import confine

PROVISIONER = "normlab-zygote"
"""The entry point name (group ``jupyter_client.kernel_provisioners``) of ``ZygoteProvisioner``."""
LAUNCHER = ["-I", "-m", "grader.launcher"]
"""What follows the interpreter in a kernel command that the zygote can start."""
PRELOAD = (
    "numpy",
    "scipy.linalg",
    "sklearn.datasets",
    "matplotlib",
    "matplotlib.pyplot",
    "IPython",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "grader.launcher",
    "grader.confine",
    "grader.jail",
    "grader.kernel_side",
)
"""Imported by every zygote: what nearly every kernel imports. Nothing here may look at the
IPython that is running when it is imported (``tqdm.auto`` does: it stays out) or start a
thread; ``utils`` stays out too (each lesson may import a different part of it)."""
TORCH_PRELOAD = ("torch", "torch.nn", "torch.nn.functional")
"""Imported only by the zygote of lessons whose kernels may import torch."""
MAX_MESSAGE = 1 << 20
_PR_SET_PDEATHSIG = 1


# ---- the zygote process -----------------------------------------------------------------------


def _warm(torch: bool) -> None:
    """Set what the kernels read at import time, then import what they would import."""
    import importlib

    scratch = tempfile.mkdtemp(prefix="normlab-zygote-")
    os.environ.update(confine.GRADING_THREADS)
    os.environ.update(confine.NO_PROCESS_POOLS)
    os.environ.update({"MPLBACKEND": "agg", "MPLCONFIGDIR": scratch, "HOME": scratch})
    # ipykernel reads its parent's pid when kernelapp is imported: the worker's, as a kernel
    # started by jupyter_client would read it (it prints start-up chatter without one)
    os.environ["JPY_PARENT_PID"] = str(os.getppid())
    for name in PRELOAD + (TORCH_PRELOAD if torch else ()):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if torch and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    confine._fewer_malloc_arenas()


class _Server:
    """The zygote's loop: one request, one fork, one answer."""

    def __init__(self, control: socket.socket):
        self.control = control
        self.status: dict[int, int] = {}  # child pid -> the fd its exit status is written to

    def reap(self, *_) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.status.pop(pid, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, str(os.waitstatus_to_exitcode(status)).encode())
                os.close(fd)

    def serve(self) -> None:
        threads = confine._thread_count()
        signal.signal(signal.SIGCHLD, self.reap)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker closes us; its children die
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 2)
            except OSError:
                break
            if not message:
                break
            try:
                request = json.loads(message)
            except ValueError:
                for fd in fds:
                    os.close(fd)
                continue
            self.fork(request, fds, threads)
        for pid in list(self.status):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def fork(self, request: dict, fds: list[int], threads: int) -> None:
        status_fd, *channel = fds
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            now = confine._thread_count()
            if threads != 1 or now != 1:
                raise RuntimeError(f"the zygote has {now} threads; it forks only with one")
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                self.control.close()
                _become_kernel(request, parent, channel[0] if channel else None)
            pidfd = os.pidfd_open(pid)
            self.status[pid] = status_fd
        except Exception as exc:  # answer, so the worker can start the kernel the plain way
            os.close(status_fd)
            for fd in channel:
                os.close(fd)
            answer = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            socket.send_fds(self.control, [answer], [])
            return
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in channel:
            os.close(fd)
        answer = json.dumps({"pid": pid, "threads": threads}).encode()
        socket.send_fds(self.control, [answer], [pidfd])
        os.close(pidfd)


def _become_kernel(request: dict, parent: int, channel_fd: int | None) -> None:
    """In the forked child: cut every tie to the zygote, then become a confined kernel."""
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _die_with(parent)
        os.setsid()
        keep = {0, 1, 2} | ({channel_fd} if channel_fd is not None else set())
        _close_all_but(keep)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if channel_fd is not None:
            from grader.kernel_side import CHANNEL_ENV

            os.environ[CHANNEL_ENV] = str(channel_fd)
        tempfile.tempdir = None  # the zygote's, cached; the kernel's TMPDIR is in its copy
        _reseed()
        from grader import launcher

        launcher.main(list(request["argv"]))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _die_with(parent: int) -> None:
    """Be killed when the zygote ends (it ends when its worker does)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _reseed() -> None:
    """Fresh seeds, as a new process would draw (the zygote's state is shared by its children)."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def main(argv: list[str]) -> None:
    control_fd, flavour = int(argv[0]), argv[1]
    control = socket.socket(fileno=control_fd)
    _warm(torch=flavour == "torch")
    _Server(control).serve()


# ---- the worker's side ------------------------------------------------------------------------


class ZygoteError(RuntimeError):
    """The zygote could not start a kernel (the caller starts one the plain way)."""


class Zygote:
    """One zygote process of this worker process, of one flavour ("torch" or "numpy")."""

    def __init__(self, flavour: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.flavour = flavour
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "grader.zygote", str(theirs.fileno()), flavour],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=_zygote_environment(),
        )
        theirs.close()
        self.control = ours

    def spawn(self, request: dict, channel_fd: int | None) -> ForkedKernel:
        status_ours, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [status_theirs.fileno()] + ([channel_fd] if channel_fd is not None else [])
        try:
            with self.lock:
                socket.send_fds(self.control, [json.dumps(request).encode()], fds)
                answer, pidfds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 1)
        except OSError as exc:
            status_ours.close()
            raise ZygoteError(f"the zygote is gone: {exc}") from exc
        finally:
            status_theirs.close()
        reply = json.loads(answer or b'{"error": "the zygote closed its socket"}')
        if "error" in reply or not pidfds:
            status_ours.close()
            for fd in pidfds:
                os.close(fd)
            raise ZygoteError(reply.get("error", "no pidfd"))
        return ForkedKernel(int(reply["pid"]), pidfds[0], status_ours, int(reply["threads"]))

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()


def _zygote_environment() -> dict[str, str]:
    from grader.launcher import GRADER_ENV_VARS

    return {k: v for k, v in os.environ.items() if k not in GRADER_ENV_VARS}


class ForkedKernel:
    """What ``LocalProvisioner`` expects of ``subprocess.Popen``, for a kernel the zygote forked
    (not our child: it is watched and signalled through its pidfd)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, status: socket.socket, zygote_threads: int):
        self.pid, self.pidfd, self.status = pid, pidfd, status
        self.zygote_threads = zygote_threads
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self.pidfd >= 0:
            readable, _, _ = select.select([self.pidfd], [], [], 0)
            if readable:
                self._exited()
        return self.returncode

    def _exited(self) -> None:
        self.status.settimeout(2)
        try:
            text = self.status.recv(64)
            self.returncode = int(text) if text else -signal.SIGKILL
        except (OSError, ValueError):
            self.returncode = -signal.SIGKILL
        self.status.close()
        os.close(self.pidfd)
        self.pidfd = -1

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            select.select([self.pidfd], [], [], 0.1)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


_zygotes: dict[tuple[int, str], Zygote] = {}
_zygotes_lock = threading.Lock()


def zygote(flavour: str) -> Zygote:
    """This process's zygote of ``flavour`` (started on first use; a process forked from this
    one starts its own: a zygote answers only the process that started it)."""
    key = (os.getpid(), flavour)
    with _zygotes_lock:
        found = _zygotes.get(key)
        if found is None or not found.alive():
            found = _zygotes[key] = Zygote(flavour)
        return found


@atexit.register
def close_all() -> None:
    """Close this process's zygotes (their kernels die with them)."""
    with _zygotes_lock:
        for key in [k for k in _zygotes if k[0] == os.getpid()]:
            _zygotes.pop(key).close()


def supported() -> bool:
    """Whether this system can fork warm kernels (Linux with pidfds, Python 3.10+)."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


WARM_VARIABLE = "NORMLAB_WARM_KERNELS"
"""Set to ``0`` to start every grading kernel as a new process (to compare, or to debug)."""


def wanted() -> bool:
    """Whether grading kernels start warm: supported here, not turned off, and the provisioner
    registered (``pip install -e .`` registers its entry point)."""
    if not supported() or os.environ.get(WARM_VARIABLE, "1") == "0":
        return False
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    return KernelProvisionerFactory.instance()._check_availability(PROVISIONER)


def launch_request(cmd: list[str], kwargs: dict[str, Any]) -> tuple[dict, str] | None:
    """The zygote's request and flavour for the kernel command ``cmd`` (from
    ``grader.sandbox``), or None where the zygote cannot start it."""
    if not supported() or cmd[1:4] != LAUNCHER or len(cmd) < 6:
        return None
    argv = cmd[4:]
    try:
        rules = json.loads(argv[1])
    except ValueError:
        return None
    if rules.get("figures", True) or not isinstance(rules.get("policy", {}), dict):
        return None  # inline figures: matplotlib must not be imported before ipykernel
    torch = bool(rules.get("policy", {}).get("torch", True))
    env = dict(kwargs.get("env") or os.environ)
    env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launch_kernel sets it
    cwd = str(kwargs.get("cwd") or os.getcwd())
    return {"argv": argv, "env": env, "cwd": cwd}, ("torch" if torch else "numpy")


class ZygoteProvisioner(LocalProvisioner):
    """Starts the sandbox's kernels by forking them from this worker's warm zygote."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        found = launch_request(cmd, kwargs)
        if found is None:
            return await super().launch_kernel(cmd, **kwargs)
        request, flavour = found
        pass_fds = tuple(kwargs.get("pass_fds") or ())
        try:
            self.process = zygote(flavour).spawn(request, pass_fds[0] if pass_fds else None)
        except (ZygoteError, OSError) as exc:
            self.log.warning("warm kernel unavailable (%s); starting a new process", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.pid, self.pgid = self.process.pid, None  # signals go through the pidfd only
        self.cwd = request["cwd"]
        return self.connection_info


if __name__ == "__main__":
    main(sys.argv[1:])
