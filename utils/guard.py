"""Run a learner's exercise with what it may not call forbidden.

``call_without_torch``: a numpy exercise with PyTorch forbidden, whatever spelling the learner
used. The guard watches calls at run time (``sys.setprofile``): any Python function defined
inside the torch package, any builtin owned by a torch module and any method of a torch type
called while the learner's function runs is recorded. Aliases, ``importlib`` and
``sys.modules`` tricks all end in such a call, so they are all seen. The learner's result may
not contain a tensor either.

``Watcher``: that profiler, told by its user what to record; utils.autograd_call's ``watched``
(lessons 09 and 11) uses it to refuse only PyTorch's normalization and the autograd engine.
Either way a learner's call that replaces the profiler is caught as tampering.

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
from pathlib import Path
from types import FrameType


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


class Watcher:
    """A profiler (``sys.setprofile``) that records the first forbidden call, as a context
    manager: inside ``with watcher:`` it profiles this thread and the threads started meanwhile.

    What counts as forbidden is the caller's: ``python_call(frame)`` is asked about each call of
    a Python function defined in the torch package, ``builtin_call(func)`` about each call of a
    builtin; each returns a message naming what it saw, or None. ``seen``: the first message
    (None if none). ``tampered``: the code called a profiler setter (``_PROFILER_SETTERS``)
    while watched, or left another profiler in place; known once the ``with`` block is left,
    which disarms the watcher and puts the previous profilers back.
    """

    def __init__(
        self,
        python_call: Callable[[FrameType], str | None],
        builtin_call: Callable[[Callable], str | None],
    ):
        self.python_call, self.builtin_call = python_call, builtin_call
        self.torch_dir = _torch_dir()
        self.seen: str | None = None
        self.tampered = False
        self.armed = False
        self._previous = None, None

    def __call__(self, frame, event, arg):
        if self.seen is not None or not self.armed:
            return
        if event == "call":
            if self.torch_dir and frame.f_code.co_filename.startswith(self.torch_dir):
                self._note(self.python_call(frame))
        elif event == "c_call":
            if any(arg is setter for setter in _PROFILER_SETTERS):
                # Even a profiler put back afterwards leaves a window with no guard.
                self.tampered = True
            self._note(self.builtin_call(arg))

    def _note(self, message: str | None) -> None:
        # Another thread may have seen something since __call__ looked: keep the first.
        if message is not None and self.seen is None:
            self.seen = message

    def __enter__(self) -> Watcher:
        self._previous = sys.getprofile(), threading.getprofile()
        self.armed = True
        sys.setprofile(self)
        threading.setprofile(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self.armed = False
        self.tampered = self.tampered or sys.getprofile() is not self
        sys.setprofile(self._previous[0])
        threading.setprofile(self._previous[1])


def _owner_module(func) -> str:
    """Name of the module that owns a builtin function or method descriptor ('' if unknown)."""
    name = getattr(func, "__module__", None)
    if isinstance(name, str):
        return name
    owner = getattr(func, "__objclass__", None) or getattr(func, "__self__", None)
    if owner is None:
        return ""
    if isinstance(owner, type):
        return owner.__module__ or ""
    return getattr(owner, "__name__", None) or type(owner).__module__ or ""


def _torch_python_call(frame: FrameType) -> str:
    """Any Python function of the torch package is PyTorch used."""
    return f"{frame.f_code.co_name} (torch Python code)"


def _torch_builtin_call(func) -> str | None:
    """A builtin owned by a torch module (functions, tensor methods) is PyTorch used."""
    module = _owner_module(func)
    if module == "torch" or module.startswith("torch."):
        return f"{module}.{getattr(func, '__name__', func)}"
    return None


def _inside_torch_guard() -> bool:
    """Whether ``call_without_torch`` is already watching this thread (another Watcher, such as
    utils.autograd_call's, does not count: it forbids less)."""
    profiler = sys.getprofile()
    return isinstance(profiler, Watcher) and profiler.builtin_call is _torch_builtin_call


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
    if _inside_torch_guard():
        # Already inside a guard (e.g. a finite difference of a guarded forward): the outer
        # watcher sees this call; installing a second one would look like tampering.
        return _without_tensors(func(*args, **kwargs), label)
    watcher = Watcher(_torch_python_call, _torch_builtin_call)
    error = None
    try:
        with watcher:
            result = func(*args, **kwargs)
    except Exception as exc:  # reported below, unless PyTorch was called before it
        error = exc
    if watcher.tampered:
        raise GuardTamperedError(
            f"{label} changed the profiler (sys.setprofile) while it ran; that disables the "
            "check, so this exercise gets no points."
        )
    if watcher.seen is not None:
        raise TorchUsedError(
            f"{label} called PyTorch ({watcher.seen}). This exercise is written in numpy "
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
