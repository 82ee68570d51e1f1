"""What lesson 11's checks share: tolerances, where the kernels run (GPU or Triton's
interpreter), the cases, tensors in a NaN guard band, and the watch on the learner's code."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import LARGE_OFFSET, make_case
from utils.checks.torch_module import call_learner
from utils.diagnose import TIGHT, CheckFailure

FLOAT32 = 1e-4
"""Tolerance for float32 results against the float64 reference (or F.batch_norm in float32).
A two-pass or Welford kernel lands near 1e-7; the one-pass E[x^2] - E[x]^2 formula is off by
1e-3 or more on the large-mean float32 case."""

MAX_DIFFERENCED = 500
"""Largest x whose dx is checked entry by entry against centered differences (2 forwards per
entry, all in one call of the oracle); larger cases are checked against autograd only."""

FLOAT32_GRADIENTS = 1e-3
"""Tolerance for float32 gradients against F.batch_norm's float32 gradients: with a mean of
1e3, x_hat itself carries ~3e-5 of float32 rounding, and the sums of the backward add it up."""

FLOAT32_OFFSET = 1e3
"""Mean of every channel of the float32 case: x^2 ~ 1e6, where float32 keeps 0.06 absolute."""

WORDS = dict(m="N*H*W", dout="dy", axes="dim=(0, 2, 3)", over=" over N, H, W")
"""This lesson's words in the shared mistake descriptions."""

FORBIDDEN = frozenset(
    {"sum", "mean", "var", "std", "var_mean", "std_mean", "nansum", "nanmean", "backward", "grad"}
)
"""torch functions the learner's code may not call: its reductions belong in the kernels, and
its backward is the kernels, not autograd."""


# --- where the kernels run --------------------------------------------------------------------


def interpreted() -> bool:
    """True when Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``), on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def kernel_device() -> torch.device:
    """The CPU under the interpreter, else the GPU (compiled kernels need CUDA tensors)."""
    if interpreted() or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


# --- cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelCase:
    """x, dy: (N, C, *spatial) float64 arrays; gamma, beta: (C,); the block the launchers get
    (a block smaller than N*H*W makes the kernels loop, one that does not divide it leaves a
    partial last block); dtype: the torch dtype the tensors are handed over in."""

    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    dy: np.ndarray
    eps: float
    block: int
    label: str
    dtype: torch.dtype = torch.float64
    differences: bool = True


def kernel_case(shape, seed, label, block, dtype=torch.float64, **options) -> KernelCase:
    """A seeded case (``utils.cases.make_case`` options: offset, far_affine, near_constant, eps)."""
    c = make_case(tuple(shape), seed, label, **options)
    x = c.x.astype(np.float32).astype(np.float64) if dtype == torch.float32 else c.x
    label = f"{label}, block={block}"
    # centered differences (h=1e-5) of values near 1e4 keep only ~1e-7 of the gradient
    differences = options.get("offset", 0.0) < LARGE_OFFSET
    return KernelCase(x, c.gamma, c.beta, c.dout, c.eps, block, label, dtype, differences)


VISIBLE_SHAPE = (2, 3, 4, 5)


def visible_cases() -> list[KernelCase]:
    """N*H*W = 40 with block 16: three trips through the loop, the last one partial."""
    return [kernel_case(VISIBLE_SHAPE, 2015, f"x of shape {VISIBLE_SHAPE}", 16)]


def hidden_cases(seed: int = 11_011) -> list[KernelCase]:
    """Odd sizes, a batch of 2, one channel, 2-D x, far gamma/beta, a large mean offset, a
    near-constant channel, a non-default eps, and blocks that loop, that do not divide N*H*W,
    and that exceed it."""
    return [
        kernel_case((3, 4, 5, 7), seed, "x of shape (3, 4, 5, 7)", 16),
        kernel_case((2, 1, 1, 1), seed + 1, "a batch of 2, one channel, 1x1", 4),
        kernel_case((7, 3), seed + 2, "2-D x (7, 3)", 4),
        kernel_case(
            (4, 2, 3, 3), seed + 3, "gamma and beta far from 1 and 0", 1024, far_affine=True
        ),
        kernel_case(
            (4, 2, 3, 3), seed + 4, f"large mean offset ({LARGE_OFFSET:g})", 16, offset=LARGE_OFFSET
        ),
        kernel_case((4, 2, 3, 3), seed + 5, "a near-constant channel", 16, near_constant=True),
        kernel_case((4, 2, 3, 3), seed + 6, "eps=1e-3 passed as an argument", 32, eps=1e-3),
    ]


def float32_case(seed: int = 11_111) -> KernelCase:
    """float32 x whose channels have mean ~1e3 and spread ~1: where E[x^2] - E[x]^2 fails."""
    return kernel_case(
        (8, 2, 5, 5),
        seed,
        f"float32 x, mean {FLOAT32_OFFSET:g}",
        64,
        torch.float32,
        offset=FLOAT32_OFFSET,
    )


# --- tensors in a NaN guard band ------------------------------------------------------------------


def guarded(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A contiguous tensor holding ``array``, in the middle of a buffer of NaN at least one
    tensor long on each side: a kernel that reads past either end reads NaN."""
    size = array.size
    pad = size + 4096
    buffer = torch.full((2 * pad + size,), float("nan"), dtype=dtype, device=kernel_device())
    view = buffer[pad : pad + size].view(array.shape)
    view.copy_(torch.as_tensor(np.ascontiguousarray(array)))
    return view


def _channels(x: np.ndarray) -> np.ndarray:
    """x (N, C, *) as a (C, N*H*W) matrix: one row per channel."""
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _from_channels(rows: np.ndarray, shape) -> np.ndarray:
    moved = (shape[1], shape[0], *shape[2:])
    return np.moveaxis(rows.reshape(moved), 0, 1)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def _channels_last_index(v: np.ndarray, shape) -> np.ndarray:
    """v (C,) read at channel (flat index % C), the index of a channels-last tensor."""
    return v[np.arange(math.prod(shape)) % shape[1]].reshape(shape)


# --- the learner's code under watch -------------------------------------------------------------


class _RefuseReductions(torch.overrides.TorchFunctionMode):
    """Records the first forbidden torch call (``FORBIDDEN``, or a normalization) and lets
    every call through; the check fails afterwards."""

    def __init__(self):
        super().__init__()
        self.seen: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.seen is None and (name in FORBIDDEN or name.endswith("_norm")):
            self.seen = name
        return func(*args, **(kwargs or {}))


def run_learner(what: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with warnings silenced (``call_learner``), refusing PyTorch's
    reductions and normalizations (``FORBIDDEN``)."""
    mode = _RefuseReductions()
    with mode:
        result = call_learner(what, fn, *args, watch=False, **kwargs)
    if mode.seen is not None:
        raise CheckFailure(
            f"{what} calls torch's {mode.seen}: in this lesson every sum over N, H, W is done "
            "inside a Triton kernel (tl.sum over blocks), and the backward is your kernels, "
            "not autograd. No points for this check."
        )
    return result


def _as_array(name: str, got, shape, dtypes) -> np.ndarray:
    """The learner's tensor as float64 numpy, after its type, shape, dtype and finiteness."""
    if not isinstance(got, torch.Tensor):
        kind = "None" if got is None else type(got).__name__
        raise CheckFailure(f"{name} is {kind}; expected a tensor of shape {tuple(shape)}.")
    if tuple(got.shape) != tuple(shape):
        raise CheckFailure(f"{name} has shape {tuple(got.shape)}, expected {tuple(shape)}.")
    if got.dtype not in dtypes:
        raise CheckFailure(
            f"{name} has dtype {got.dtype}, expected {' or '.join(map(str, dtypes))}: "
            "accumulate and store in float64 when x is float64."
        )
    arr = got.detach().cpu().double().numpy()
    if np.isnan(arr).any():
        raise CheckFailure(
            f"{name} contains NaN. Every input of this check is surrounded by NaN: your kernel "
            "read past the end of a tensor. Give every tl.load a mask (offsets < the number of "
            "values) with other=0.0, and keep masked lanes out of the sums (tl.where)."
        )
    if not np.isfinite(arr).all():
        raise CheckFailure(f"{name} contains inf: a division by zero?")
    return arr


def _statistics_dtypes(case: KernelCase) -> tuple[torch.dtype, ...]:
    return (torch.float64,) if case.dtype == torch.float64 else (torch.float32, torch.float64)


def _tolerance(case: KernelCase) -> float:
    return TIGHT if case.dtype == torch.float64 else FLOAT32
