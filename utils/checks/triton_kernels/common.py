"""What lesson 11's checks share: tolerances, the cases, the calls into the learner's code
(``utils.autograd_call``: here, or in the graded kernel) and what their answers become."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import LARGE_OFFSET, make_case
from utils.checks.torch_module.common import in_kernel, kind_of, tensor_of
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


# --- arrays -------------------------------------------------------------------------------------


def _channels(x: np.ndarray) -> np.ndarray:
    """x (N, C, *) as a (C, N*H*W) matrix: one row per channel."""
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def _channels_last_index(v: np.ndarray, shape) -> np.ndarray:
    """v (C,) read at channel (flat index % C), the index of a channels-last tensor."""
    return v[np.arange(math.prod(shape)) % shape[1]].reshape(shape)


# --- the learner's code, where it lives (utils.autograd_call) -------------------------------------


def launch(fn, what: str, args: list, dtype: torch.dtype, block: int) -> dict:
    """A learner's launcher on ``args`` (ndarrays become tensors of ``dtype`` in a NaN guard
    band, numbers stay numbers), with ``block``: ``utils.autograd_call.kernels_launch``'s answer,
    its form checked ("out": the result described, "changed": positions of inputs written)."""
    answer = in_kernel("kernels_launch", fn, what, list(args), str(dtype), int(block))
    if type(answer) is not dict or type(answer.get("changed")) is not list:
        raise CheckFailure(f"{what} could not be run.")
    return answer


def items_of(described, count: int, message: str) -> list:
    """The ``count`` items of a tuple the learner's code returned (described), else
    CheckFailure(message)."""
    items = described.get("items") if type(described) is dict else None
    if kind_of(described) != "tuple" or type(items) is not list or len(items) != count:
        raise CheckFailure(message)
    return items


def _as_array(name: str, got, shape, dtypes) -> np.ndarray:
    """The learner's tensor (a ``utils.autograd_call.describe`` answer) as float64 numpy, after
    its type, shape, dtype and finiteness."""
    t = tensor_of(got)
    if t is None:
        raise CheckFailure(f"{name} is {kind_of(got)}; expected a tensor of shape {tuple(shape)}.")
    if tuple(t.shape) != tuple(shape):
        raise CheckFailure(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}.")
    if t.dtype not in dtypes:
        raise CheckFailure(
            f"{name} has dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}: "
            "accumulate and store in float64 when x is float64."
        )
    arr = t.double().numpy()
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
