"""Run a learner's exercise with what it may not call forbidden.

``call_without_torch``: a numpy exercise with PyTorch forbidden, whatever spelling the learner
used. The guard watches calls at run time (``sys.setprofile``): any Python function defined
inside the torch package, any builtin owned by a torch module and any method of a torch type
called while the learner's function runs is recorded. Aliases, ``importlib`` and
``sys.modules`` tricks all end in such a call, so they are all seen. The learner's result may
not contain a tensor either.

``names_refused``: an exercise that must be written without some of the learner's own earlier
functions (lesson 06's second route, without ``channels_to_rows``; lesson 03's closed form,
without the staged backward). While it is active, those names of the learner's namespace are
stand-ins that record the call and raise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class TorchUsedError(AssertionError):
    """A numpy-only exercise called PyTorch: the check gives no points for it."""


class GuardTamperedError(AssertionError):
    """The learner's code removed or replaced the guard's profiler."""


def _torch_dir() -> str | None:
    """The torch package's folder, found without importing torch (None if not installed).

    Needed even before torch is imported: the learner's ``import torch`` runs its code there.
    """
    module = sys.modules.get("torch")
    path = getattr(module, "__file__", None)
    if path is None:
        spec = importlib.util.find_spec("torch")
        path = spec.origin if spec is not None else None
    return str(Path(path).parent) + os.sep if path else None


_PROFILER_SETTERS = tuple(
    f for f in (sys.setprofile, getattr(sys, "_setprofileallthreads", None)) if f is not None
)
"""Builtins that replace the profiler of the running thread: calling one disarms the guard."""


def _owner_module(func) -> str:
    """Name of the module that owns a builtin function or method descriptor ('' if unknown)."""
    for attr in ("__module__",):
        name = getattr(func, attr, None)
        if isinstance(name, str):
            return name
    owner = getattr(func, "__objclass__", None) or getattr(func, "__self__", None)
    if owner is None:
        return ""
    if isinstance(owner, type):
        return owner.__module__ or ""
    return getattr(owner, "__name__", None) or type(owner).__module__ or ""


@dataclass
class _Watcher:
    torch_dir: str | None
    seen: list[str] = field(default_factory=list)
    tampered: bool = False
    armed: bool = True

    def __call__(self, frame, event, arg):
        if self.seen or not self.armed:
            return
        in_torch = self.torch_dir and frame.f_code.co_filename.startswith(self.torch_dir)
        if event == "call" and in_torch:
            self.seen.append(f"{frame.f_code.co_name} (torch Python code)")
        elif event == "c_call":
            if any(arg is setter for setter in _PROFILER_SETTERS):
                # Even a profiler put back afterwards leaves a window with no guard.
                self.tampered = True
            module = _owner_module(arg)
            if module == "torch" or module.startswith(("torch.", "torch._")):
                self.seen.append(f"{module}.{getattr(arg, '__name__', arg)}")


def _contains_tensor(value, depth: int = 0) -> bool:
    if depth > 3:
        return False
    if type(value).__module__.startswith("torch"):
        return True
    if isinstance(value, (tuple, list)):
        return any(_contains_tensor(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_contains_tensor(v, depth + 1) for v in value.values())
    return False


def call_without_torch(func: Callable, *args, name: str | None = None, **kwargs):
    """Call ``func(*args, **kwargs)`` and fail if it used PyTorch in any way.

    Returns what func returns. Raises TorchUsedError naming the torch call that was seen (also
    when func then failed), GuardTamperedError if func removed the profiler, and otherwise lets
    func's own exceptions through.
    """
    label = name or getattr(func, "__name__", "your function")
    if isinstance(sys.getprofile(), _Watcher):
        # Already inside a guard (e.g. a finite difference of a guarded forward): the outer
        # watcher sees this call; installing a second one would look like tampering.
        return _without_tensors(func(*args, **kwargs), label)
    watcher = _Watcher(_torch_dir())
    previous, previous_threads = sys.getprofile(), threading.getprofile()
    sys.setprofile(watcher)
    threading.setprofile(watcher)
    error = None
    try:
        result = func(*args, **kwargs)
    except Exception as exc:  # reported below, unless PyTorch was called before it
        error = exc
    finally:
        watcher.armed = False
        tampered = watcher.tampered or sys.getprofile() is not watcher
        sys.setprofile(previous)
        threading.setprofile(previous_threads)
    if tampered:
        raise GuardTamperedError(
            f"{label} changed the profiler (sys.setprofile) while it ran; that disables the "
            "check, so this exercise gets no points."
        )
    if watcher.seen:
        raise TorchUsedError(
            f"{label} called PyTorch ({watcher.seen[0]}). This exercise is written in numpy "
            "only; PyTorch is the reference we check you against. No points for this check."
        )
    if error is not None:
        raise error
    return _without_tensors(result, label)


def _without_tensors(result, label: str):
    """``result`` itself, or TorchUsedError if it holds a torch object."""
    if _contains_tensor(result):
        raise TorchUsedError(
            f"{label} returned a torch.Tensor; return numpy arrays. No points for this check."
        )
    return result


class HelperRefusedError(AssertionError):
    """The learner's function called one of its own functions that the exercise rules out."""


@contextlib.contextmanager
def names_refused(functions: tuple[Callable, ...], names: tuple[str, ...], why: str):
    """While active, calling any of ``names`` through the namespaces ``functions`` were defined
    in records the call and raises; on leaving, the names are restored and HelperRefusedError
    (naming the first such call and ``why``) replaces whatever else happened.

    Behavioural, not a reading of the source: only a call made while the check runs counts, so
    a helper with the same body written under another name is fine. Two places hold the names:

    * in-process (JupyterLab, the tests), ``fn.__globals__``, the dict a learner's function
      looks its global names up in;
    * graded, each function is the checker's proxy of a kernel function
      (``grader.checker.Remote``); the kernel's namespace is IPython's ``user_ns``, and
      ``shell.push`` (a method call over the channel) replaces names in it. The stand-ins are
      checker functions, sent as callbacks; the originals go back as references to the
      kernel's own objects.
    """
    called: list[str] = []

    def stand_in(name: str) -> Callable:
        def refused(*args, **kwargs):
            called.append(name)
            raise HelperRefusedError(f"{name} may not be called here")

        refused.__name__ = name
        return refused

    namespaces = _learner_namespaces(functions)
    originals = [namespace.lookup(names) for namespace in namespaces]
    try:
        for namespace, found in zip(namespaces, originals, strict=True):
            namespace.bind({name: stand_in(name) for name in found})
        yield
    finally:
        for namespace, found in zip(namespaces, originals, strict=True):
            namespace.bind(found)
        if called:
            label = " or ".join(getattr(fn, "__name__", "your function") for fn in functions)
            raise HelperRefusedError(f"{label} called {called[0]}; {why} No points for this check.")


def _learner_namespaces(functions) -> list[_LearnerNamespace]:
    """One namespace per distinct place the ``functions`` look their names up in."""
    namespaces: list[_LearnerNamespace] = []
    for fn in functions:
        namespace = _LearnerNamespace(fn)
        if not any(namespace.same_as(other) for other in namespaces):
            namespaces.append(namespace)
    return namespaces


class _LearnerNamespace:
    """Where ``fn`` looks up its global names: a dict in-process, the kernel's when graded."""

    def __init__(self, fn: Callable):
        self.globals = getattr(fn, "__globals__", None) if callable(fn) else None
        self.session = self.shell = None
        if not isinstance(self.globals, dict):
            self.globals = None
            self.session = _checker_session(fn)
            if self.session is None:
                raise HelperRefusedError(
                    f"{getattr(fn, '__name__', fn)!r} is not a function defined with def; "
                    "write the exercise as the function the notebook asks for."
                )

    def same_as(self, other: _LearnerNamespace) -> bool:
        if self.globals is not None:
            return self.globals is other.globals
        return self.session is other.session

    def lookup(self, names) -> dict:
        if self.globals is not None:
            return {name: self.globals[name] for name in names if name in self.globals}
        found = {}
        for name in names:
            with contextlib.suppress(NameError):
                found[name] = self.session.resolve(name)
        return found

    def bind(self, values: dict) -> None:
        if not values:
            return
        if self.globals is not None:
            self.globals.update(values)
            return
        if self.shell is None:
            self.shell = self.session.resolve("get_ipython")()
        self.shell.push(dict(values))


def _checker_session(fn):
    """The grader checker's session behind a proxy of a kernel function, else None."""
    try:
        session = object.__getattribute__(fn, "_session")
    except AttributeError:
        return None
    return session if hasattr(session, "resolve") else None
