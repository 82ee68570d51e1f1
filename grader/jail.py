"""Inside the grading kernel: an audit hook that fences student code in, and the fingerprint
the worker's integrity probe asks for.

``install(rules)`` runs in the kernel process before IPython starts (``grader.launcher`` does
it) and adds a ``sys.addaudithook`` hook, which Python code cannot remove. Through it:

* files: reading under a private root (the course tree with its solutions, the gradebook and
  template, every grading scratch folder, other submissions) and writing anywhere but the
  notebook's working copy raise PermissionError; paths are resolved (symlinks, ``..``) first;
* processes and signals: no ``subprocess``, ``os.system``, ``exec``, ``fork`` or ``spawn``;
  ``os.kill`` only of the kernel itself (the grader that started it is out of reach);
* escape hatches: no ``ctypes`` lookups of C functions that step around the hook
  (``ctypes.pythonapi.kill``, ``open``, ``fork``, ...), no libraries loaded from a path outside
  the Python installation and the system's library folders, no ``gc`` object walks, no
  rewriting the hook's own code (a tracer set with ``sys.settrace`` shows in the
  fingerprint).

``fingerprint`` describes, for the worker to compare with a baseline, what the tests rely on:
the identity of every public attribute of numpy, torch, ``utils`` and builtins (and of the
code and defaults of each function), the objects the locked set-up cells bind, and the
interpreter's hook points (IPython event callbacks and input transformers, tracers).

None of this stops C code: a compiled extension or a memory write through a loaded library
can undo anything here. docs/grading-safety.md has the full threat model.
"""

from __future__ import annotations

import json
import os
import sys
import types

DENIED_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
        "os.killpg",
        "signal.pthread_kill",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
    }
)
# events whose first argument (and second, for rename/link) is a path that gets written
WRITE_EVENTS = frozenset(
    {
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.rename",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.chflags",
        "os.lchflags",
        "os.lchmod",
        "os.lchown",
        "os.mkfifo",
        "os.mknod",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.move",
    }
)
LIST_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.listxattr"})
# C functions that would step around the hook if looked up through ctypes (``ctypes.pythonapi``
# reaches libc too); other symbols stay available (threadpoolctl looks up BLAS/OpenMP ones)
DENIED_SYMBOLS = frozenset(
    {
        "kill", "killpg", "tgkill", "tkill", "sigqueue", "raise", "abort",
        "fork", "vfork", "clone", "clone3", "system", "popen", "syscall", "ptrace", "prctl",
        "execl", "execle", "execlp", "execv", "execve", "execvp", "execvpe", "fexecve",
        "posix_spawn", "posix_spawnp", "dlopen", "dlmopen",
        "open", "open64", "openat", "openat64", "creat", "creat64", "fopen", "fopen64",
        "freopen", "unlink", "unlinkat", "rename", "renameat", "renameat2", "remove", "rmdir",
        "mkdir", "mkdirat", "symlink", "symlinkat", "link", "linkat", "truncate", "chmod",
        "chown", "opendir", "setrlimit", "prlimit", "prlimit64", "chdir", "chroot",
        "PySys_AddAuditHook", "PySys_SetObject", "PyObject_SetAttr", "PyObject_SetAttrString",
        "PyDict_SetItem", "PyDict_SetItemString", "PyRun_SimpleString", "Py_Exit",
    }
)  # fmt: skip
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# modules whose public attributes a test may rely on, when they are loaded
WATCHED_MODULES = (
    "builtins",
    "math",
    "numpy",
    "numpy.linalg",
    "numpy.testing",
    "numpy.random",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.autograd",
    "torch.testing",
)
WATCHED_PREFIXES = ("utils.", "grader.")
# sys functions a cheat would replace; the rest of sys (streams, displayhook) IPython swaps itself
WATCHED_SYS = (
    "audit",
    "addaudithook",
    "setprofile",
    "getprofile",
    "settrace",
    "gettrace",
    "modules",
)
# attributes their own libraries rebind: IPython's builtins around each execution,
# torch._dynamo, imported lazily by torch itself, wraps torch.manual_seed, and
# torch.set_default_dtype rebinds torch.Storage (a learner may set the default dtype)
VOLATILE = {
    "builtins": {"_", "__", "___", "get_ipython", "exit", "quit", "display"},
    "torch": {"manual_seed", "Storage"},
}


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def make_hook(writable, private, allowed, libraries):
    """The audit hook: ``writable`` roots may be written, ``private`` roots (minus ``allowed``
    and ``writable`` ones) may not be read, libraries load only from under ``libraries``.
    All state is immutable and bound as defaults, so the hook cannot be re-aimed."""

    def hook(
        event,
        args,
        _writable=tuple(writable),
        _private=tuple(private),
        _allowed=tuple(allowed) + tuple(writable),
        _libraries=tuple(libraries),
        _denied=DENIED_EVENTS,
        _symbols=DENIED_SYMBOLS,
        _writes=WRITE_EVENTS,
        _lists=LIST_EVENTS,
        _flags=WRITE_FLAGS,
        _real=os.path.realpath,
        _fspath=os.fspath,
        _getpid=os.getpid,
        _under=_under,
        _code=None,
    ):
        if event in _denied:
            raise PermissionError(f"not allowed while grading: {event}")
        if event == "object.__setattr__" and args[0] is _code:
            raise PermissionError("not allowed while grading: changing the grader's hook")
        if event == "os.kill":
            if args[0] != _getpid():
                raise PermissionError("not allowed while grading: signalling another process")
            return
        if event == "ctypes.dlopen":
            name = args[0]
            if name and "/" in _fspath(name) and not _under(_real(_fspath(name)), _libraries):
                raise PermissionError(f"not allowed while grading: loading library {name!r}")
            return  # no path: found by the system's linker in its own folders
        if event in ("ctypes.dlsym", "ctypes.dlsym/handle"):
            if args[1] in _symbols:
                raise PermissionError(f"not allowed while grading: ctypes lookup of {args[1]}")
            return
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _flags)
            paths = (path,)
        elif event == "sqlite3.connect":
            if args[0] in (":memory:", b":memory:", ""):
                return
            writing, paths = True, (args[0],)
        elif event in _writes:
            writing, paths = True, tuple(a for a in args[:2] if isinstance(a, str | bytes))
        elif event in _lists:
            if not args or not isinstance(args[0], str | bytes | os.PathLike):
                return
            writing, paths = False, (args[0],)
        else:
            return
        for raw in paths:
            try:
                real = _real(_fspath(raw))
            except (TypeError, ValueError):
                continue
            if isinstance(real, bytes):
                real = real.decode(errors="replace")
            if writing and not _under(real, _writable):
                raise PermissionError(f"not allowed while grading: writing {raw!r}")
            if _under(real, _private) and not _under(real, _allowed):
                raise PermissionError(f"not allowed while grading: reading {raw!r}")

    hook.__defaults__ = hook.__defaults__[:-1] + (hook,)
    return hook


def install(rules: dict) -> None:
    """Add the hook for ``rules`` (keys: writable, private, allowed, libraries; lists of paths)."""
    resolved = {k: [os.path.realpath(p) for p in rules.get(k, [])] for k in rules}
    sys.addaudithook(
        make_hook(
            resolved.get("writable", []),
            resolved.get("private", []),
            resolved.get("allowed", []),
            resolved.get("libraries", []) + list(SYSTEM_LIBRARIES),
        )
    )


# ---- the fingerprint -------------------------------------------------------------------------


def _token(value) -> int:
    """One number that changes when ``value`` is replaced, or its code or defaults are (for a
    function), or its attributes are (for a class of ``utils``)."""
    token = [id(value)]
    if isinstance(value, types.FunctionType):
        token += [id(value.__code__), id(value.__defaults__), id(value.__kwdefaults__)]
    elif isinstance(value, type) and value.__module__.startswith(WATCHED_PREFIXES):
        token += [id(v) for k, v in sorted(vars(value).items()) if not k.startswith("__")]
    return hash(tuple(token))


def _module_tokens(module) -> dict[str, int]:
    volatile = VOLATILE.get(module.__name__, set())
    return {
        name: _token(value)
        for name, value in list(vars(module).items())
        if not (name.startswith("__") and name.endswith("__")) and name not in volatile
    }


def watched_modules() -> dict[str, types.ModuleType]:
    names = [n for n in WATCHED_MODULES if n in sys.modules]
    names += sorted(n for n in list(sys.modules) if n.startswith(WATCHED_PREFIXES) or n == "utils")
    return {n: sys.modules[n] for n in names if isinstance(sys.modules[n], types.ModuleType)}


LIBRARY_CALLBACK_PACKAGES = ("IPython", "ipykernel", "matplotlib_inline", "matplotlib")


def _library_callback(callback) -> bool:
    """Whether an IPython event callback is the code of IPython, ipykernel or matplotlib
    (matplotlib's inline backend registers ``flush_figures`` when pyplot is imported)."""
    code = getattr(getattr(callback, "__func__", callback), "__code__", None)
    if code is None:
        return False
    folders = [
        os.path.dirname(sys.modules[name].__file__) + os.sep
        for name in LIBRARY_CALLBACK_PACKAGES
        if getattr(sys.modules.get(name), "__file__", None)
    ]
    return any(code.co_filename.startswith(folder) for folder in folders)


def _hook_points(shell) -> dict[str, list[int]]:
    points = {
        "sys.gettrace": [id(sys.gettrace())],
        "sys.getprofile": [id(sys.getprofile())],
        "sys.meta_path": [id(x) for x in sys.meta_path],
        "sys.path_hooks": [id(x) for x in sys.path_hooks],
    }
    if shell is not None:
        for event, callbacks in sorted(shell.events.callbacks.items()):
            points[f"IPython event {event}"] = [
                id(c) for c in callbacks if not _library_callback(c)
            ]
        for name in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            points[f"IPython {name}"] = [id(x) for x in getattr(shell, name, [])]
    return points


def fingerprint(imports: str = "", names: tuple[str, ...] = (), baseline: bool = False) -> str:
    """JSON: {"modules": {module: {attr: token}}, "bindings": {name: id}, "hooks": {...}}.

    ``names`` are the names the locked cells bind by ``imports`` (their import statements);
    at the baseline their ids come from running ``imports`` in a fresh namespace, later from
    the notebook's own namespace.
    """
    shell = _shell()
    if baseline:
        namespace: dict = {}
        for statement in imports.splitlines():
            try:
                exec(statement, namespace)
            except Exception:  # the test cell will fail on it too, for every student alike
                pass
    else:
        namespace = shell.user_ns if shell is not None else {}
    modules = watched_modules()
    tokens = {name: _module_tokens(module) for name, module in modules.items()}
    tokens["sys"] = {name: _token(getattr(sys, name, None)) for name in WATCHED_SYS}
    return json.dumps(
        {
            "modules": tokens,
            "identity": {name: id(module) for name, module in modules.items()},
            "bindings": {name: id(namespace.get(name)) for name in names},
            "hooks": _hook_points(shell),
        }
    )


def _shell():
    from IPython import get_ipython

    return get_ipython()
