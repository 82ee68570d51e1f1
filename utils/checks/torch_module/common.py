"""What the lesson 09 checks share: the float32 tolerance, the profiler that forbids PyTorch's
normalization and autograd inside the learner's code, and the float64 references."""

from __future__ import annotations

import re
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from utils import reference
from utils.diagnose import CheckFailure

FLOAT32 = 1e-5
"""Tolerance for float32 results against PyTorch's float32 results."""

# --- forbidding PyTorch's own normalization and autograd inside the learner's code -------------

NORM_KERNEL = re.compile(r"(batch|instance|layer|group|rms)_norm")
"""Names of torch functions that compute a normalization (F.batch_norm, torch.batch_norm,
torch.native_batch_norm, aten ops, decompositions, instance/layer/group norm that could be
bent into batch norm by a transpose)."""

TORCH_DIR = str(Path(torch.__file__).parent) + "/"
_PROFILER_SETTERS = tuple(
    f for f in (sys.setprofile, getattr(sys, "_setprofileallthreads", None)) if f is not None
)


@dataclass
class _Watcher:
    """A profiler that records the first forbidden torch call: a normalization kernel, or the
    autograd engine (``run_backward``, behind ``torch.autograd.grad`` and ``.backward()``)."""

    seen: list[str] = field(default_factory=list)
    tampered: bool = False
    armed: bool = True

    def __call__(self, frame, event, arg):
        if self.seen or not self.armed:
            return
        if event == "call" and frame.f_code.co_filename.startswith(TORCH_DIR):
            name = frame.f_code.co_name
            if name == "__call__" and frame.f_code.co_filename.endswith("_ops.py"):
                name = str(getattr(frame.f_locals.get("self"), "__name__", ""))  # torch.ops.aten
            self._record(name)
        elif event == "c_call":
            if any(arg is setter for setter in _PROFILER_SETTERS):
                self.tampered = True
            owner = (
                getattr(arg, "__module__", None) or type(getattr(arg, "__self__", None)).__name__
            )
            if "torch" in str(owner) or "Engine" in str(owner):
                self._record(getattr(arg, "__name__", ""))

    def _record(self, name: str) -> None:
        if NORM_KERNEL.search(name):
            self.seen.append(
                f"it calls PyTorch's own normalization ({name}); compute the mean, the biased "
                "variance and the normalization yourself with tensor operations"
            )
        elif name == "run_backward":
            self.seen.append(
                "it runs autograd (torch.autograd.grad or .backward()) inside; the backward "
                "must be written out by hand from the closed-form gradient"
            )


def _learner_error(what: str, error: Exception) -> CheckFailure:
    detail = f": {error}" if str(error) else ""
    if isinstance(error, NotImplementedError):
        detail += " (is the exercise filled in?)"
    return CheckFailure(f"{what} raised {type(error).__name__}{detail}")


def call_learner(what: str, fn: Callable, *args, watch: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, the learner's code, with warnings silenced (stderr would zero
    the test cell). watch: refuse PyTorch's normalization and the autograd engine meanwhile.

    Raises CheckFailure naming ``what`` when fn calls something forbidden (even if it then
    fails), removes the profiler, or raises.
    """
    watcher = _Watcher() if watch else None
    previous, previous_threads = sys.getprofile(), threading.getprofile()
    if watcher is not None:
        sys.setprofile(watcher)
        threading.setprofile(watcher)
    result, raised = None, None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = fn(*args, **kwargs)
    except CheckFailure:
        raise
    except Exception as error:  # the learner's own error, reported with what was called
        raised = error
    finally:
        if watcher is not None:
            watcher.armed = False
            watcher.tampered = watcher.tampered or sys.getprofile() is not watcher
            sys.setprofile(previous)
            threading.setprofile(previous_threads)
    if watcher is not None and watcher.tampered:
        raise CheckFailure(f"{what} changed the profiler (sys.setprofile); no points.")
    if watcher is not None and watcher.seen:
        raise CheckFailure(f"{what}: {watcher.seen[0]}. No points for this check.")
    if raised is not None:
        raise _learner_error(what, raised)
    return result


# --- references (float64 unless the case says otherwise) ---------------------------------------


def statistic_axes(x: torch.Tensor) -> list[int]:
    """Every axis but the channel axis 1: [0, 2, 3] for (N, C, H, W), [0] for (N, C)."""
    return list(reference.statistic_axes(x.dim()))


def per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """v (C,) shaped (1, C, 1, ...) to broadcast against an ``ndim``-D (N, C, ...) tensor."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def tensor_like_case(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor with ``a``'s values and memory layout (a transposed, strided or
    channels-last view stays non-contiguous). A private copy: ``a`` is never written."""
    if a.flags.c_contiguous:
        t = torch.tensor(a)
    elif a.flags.f_contiguous:
        t = torch.tensor(np.ascontiguousarray(a.T)).permute(*reversed(range(a.ndim)))
    elif a.ndim == 4 and np.argsort(a.strides)[0] == 1:
        t = torch.tensor(np.array(a)).contiguous(memory_format=torch.channels_last)
    else:  # every other entry of a twice-wider tensor
        wide = torch.zeros(*a.shape[:-1], 2 * a.shape[-1], dtype=torch.float64)
        t = wide[..., ::2]
        t.copy_(torch.tensor(np.array(a)))
    return t.requires_grad_(requires_grad)
