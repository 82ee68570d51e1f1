"""What the lesson 09 checks share: the float32 tolerance, the calls into the learner's code
(``utils.autograd_call``: in-process, or in the graded kernel) and what their answers become,
and the float64 references."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from utils import autograd_call, reference
from utils.diagnose import CheckFailure

FLOAT32 = 1e-5
"""Tolerance for float32 results against PyTorch's float32 results."""

# --- the learner's code: here or in the graded kernel (utils.autograd_call) ---------------------


def call_learner(what: str, fn: Callable, *args, watch: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, the learner's code, with warnings silenced (stderr would zero
    the test cell). watch: refuse PyTorch's normalization and the autograd engine meanwhile
    (``utils.autograd_call.watched``).

    Raises CheckFailure naming ``what`` when fn calls something forbidden (even if it then
    fails), removes the profiler, or raises.
    """
    try:
        return autograd_call.watched(what, fn, *args, watch=watch, **kwargs)
    except autograd_call.LearnerFailure as failure:
        raise CheckFailure(str(failure)) from None


def in_kernel(name: str, *args):
    """``utils.autograd_call``'s call ``name`` where the learner's objects live (in-process, or
    the graded kernel when they are the checker's proxies); a failure of the learner's code
    becomes a CheckFailure."""
    try:
        return autograd_call.call(name, *args)
    except autograd_call.LearnerFailure as failure:
        raise CheckFailure(str(failure)[:2000]) from None


TORCH_DTYPES = {
    str(d): d
    for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
        torch.complex128, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
        torch.bool,
    )
}  # fmt: skip


class Other:
    """Something the learner's code gave that is not a tensor (its type's name only)."""

    def __init__(self, kind: str):
        self.kind = str(kind)[:100]

    def __repr__(self) -> str:
        return f"a {self.kind}"


def kind_of(described) -> str:
    """The type name in a ``describe`` answer: "tensor", "None", "tuple", ..."""
    if described is None:
        return "None"
    if type(described) is dict and type(described.get("kind")) is str:
        return described["kind"][:100]
    return type(described).__name__


def tensor_of(described) -> torch.Tensor | None:
    """The tensor a ``describe`` answer holds (CPU, its own dtype), after checking that it is
    well formed; None when it holds no tensor."""
    if kind_of(described) != "tensor":
        return None
    data, dtype = described.get("data"), TORCH_DTYPES.get(described.get("dtype"))
    if not isinstance(data, np.ndarray) or dtype is None:
        return None
    t = torch.from_numpy(np.array(data))
    return t.to(dtype) if t.dtype != dtype else t


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
    return autograd_call.tensor_like(
        np.asarray(a, dtype=np.float64), autograd_call.layout_of(a), requires_grad
    )
