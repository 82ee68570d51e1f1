"""Run a numpy exercise with PyTorch forbidden, whatever spelling the learner used.

The guard watches calls at run time (``sys.setprofile``): any Python function defined inside
the torch package, any builtin owned by a torch module and any method of a torch type called
while the learner's function runs is recorded. Aliases, ``importlib`` and ``sys.modules``
tricks all end in such a call, so they are all seen. The learner's result may not contain a
tensor either.
"""

from __future__ import annotations

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

    Returns what func returns. Raises TorchUsedError naming the torch call that was seen,
    GuardTamperedError if func removed the profiler, and lets func's own exceptions through.
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
    try:
        result = func(*args, **kwargs)
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
    return _without_tensors(result, label)


def _without_tensors(result, label: str):
    """``result`` itself, or TorchUsedError if it holds a torch object."""
    if _contains_tensor(result):
        raise TorchUsedError(
            f"{label} returned a torch.Tensor; return numpy arrays. No points for this check."
        )
    return result
