"""Checks for lesson 11: batch normalization's kernels written in Triton.

The learner writes four launchers (a Python function that allocates the outputs and launches
one Triton kernel) and a ``torch.autograd.Function`` around them:

* ``channel_statistics(x, eps, block) -> (mean, inv_std)``, both (C,);
* ``normalize_affine(x, mean, inv_std, gamma, beta, block) -> y`` shaped like x;
* ``backward_reductions(dy, x, mean, inv_std, block) -> (sum_dy, sum_dy_xhat)``, both (C,);
* ``backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat, block) -> dx``;
* ``TritonBatchNorm.apply(x, gamma, beta, eps) -> y`` with a backward made of the last two.

x is (N, C, *spatial), contiguous for the launchers. The kernels run where Triton runs them:
on the CPU under ``TRITON_INTERPRET=1`` (grading, CI, a laptop), or compiled on a CUDA GPU.

Every input tensor a check hands a launcher sits in the middle of a larger buffer filled with
NaN (``guarded``): a kernel that reads past the end of its tensor (a block mask that lets the
last block run over) gets NaN, and the check says so. Results are compared in float64 with the
one oracle (``utils.reference``); a wrong result is matched against known-wrong variants
computed on the same input (``utils.mistakes`` names them). Every gradient is compared with
PyTorch autograd and with centered finite differences: of PyTorch's forward for the backward
kernels, of the learner's own forward for the Function (``torch.autograd.gradcheck`` too).

While the learner's code runs, a ``TorchFunctionMode`` refuses PyTorch's reductions and
normalization: the sums belong in the kernels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from utils import reference
from utils.cases import LARGE_OFFSET, make_case
from utils.checks.torch_module import call_learner, require_own_backward
from utils.diagnose import (
    FINITE_DIFFERENCE,
    TIGHT,
    CheckFailure,
    assert_close,
    on_cases,
    report,
)
from utils.gradcheck import relative_error
from utils.mistakes import describe

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


# --- known-wrong variants (numpy, float64) ---------------------------------------------------


def statistics_mistakes(case: KernelCase) -> dict[str, dict[str, np.ndarray]]:
    """ "mean" and "inv_std" -> {description: the wrong (C,) array}."""
    x, eps, m = case.x, case.eps, case.x.size // case.x.shape[1]
    rows, block = _channels(x), x.reshape(x.shape[1], -1)
    mean, var = rows.mean(1), rows.var(1)
    padded = -(-m // case.block) * case.block - m  # masked lanes of the last block
    with np.errstate(all="ignore"):
        inv_std = {
            describe("unbiased variance", **WORDS): 1 / np.sqrt(rows.var(1, ddof=1) + eps),
            describe("eps outside sqrt", **WORDS): 1 / (np.sqrt(var) + eps),
            describe("eps missing", **WORDS): 1 / np.sqrt(var),
            describe("inv_std is the std"): np.sqrt(var + eps),
            describe("no square root", what="1"): 1 / (var + eps),
            describe("channel is a contiguous block"): 1 / np.sqrt(block.var(1) + eps),
            describe("masked lanes counted"): 1 / np.sqrt(var + padded * mean**2 / m + eps),
        }
    return {
        "mean": {
            describe("channel is a contiguous block"): block.mean(1),
            describe("statistics over everything"): np.full_like(mean, x.mean()),
        },
        "inv_std": inv_std,
    }


def normalize_mistakes(case: KernelCase, mean, inv_std) -> dict[str, np.ndarray]:
    x, g, b, nd = case.x, case.gamma, case.beta, case.x.ndim
    x_hat = (x - _per_channel(mean, nd)) * _per_channel(inv_std, nd)
    last = [_channels_last_index(v, x.shape) for v in (mean, inv_std, g, b)]
    return {
        describe("gamma beta swapped", out="y"): _per_channel(b, nd) * x_hat + _per_channel(g, nd),
        describe("no gamma"): x_hat + _per_channel(b, nd),
        describe("no beta"): _per_channel(g, nd) * x_hat,
        describe("channel index channels-last"): (x - last[0]) * last[1] * last[2] + last[3],
    }


def reduction_mistakes(case: KernelCase, mean, inv_std) -> dict[str, dict[str, np.ndarray]]:
    x, dy, m = case.x, case.dy, case.x.size // case.x.shape[1]
    x_hat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    s_dy, s_dyx = _channels(dy).sum(1), _channels(dy * x_hat).sum(1)
    block = dy.reshape(dy.shape[1], -1).sum(1)
    block_x = (dy * x_hat).reshape(dy.shape[1], -1).sum(1)
    return {
        "sum_dy": {
            describe("dbeta is sum(dout * x_hat)"): s_dyx,
            describe("dbeta averages", **WORDS): s_dy / m,
            describe("channel is a contiguous block"): block,
        },
        "sum_dy_xhat": {
            describe("dgamma is sum(dout)", **WORDS): s_dy,
            describe("dgamma uses x", **WORDS): _channels(dy * x).sum(1),
            describe("channel is a contiguous block"): block_x,
        },
    }


def elementwise_mistakes(case: KernelCase, mean, inv_std, s_dy, s_dyx) -> dict[str, np.ndarray]:
    x, dy, nd, m = case.x, case.dy, case.x.ndim, case.x.size // case.x.shape[1]
    gamma_s = _per_channel(case.gamma * inv_std, nd)
    x_hat = (x - _per_channel(mean, nd)) * _per_channel(inv_std, nd)
    mean_t, var_t = _per_channel(s_dy, nd) / m, x_hat * _per_channel(s_dyx, nd) / m
    s = dict(statistics="the batch mean and variance (sum_dy and sum_dy_xhat)", **WORDS)
    return {
        describe("dx without mean term", mean="mean (sum_dy)", **WORDS): gamma_s * (dy - var_t),
        describe("dx without variance term", variance="variance (sum_dy_xhat)", **WORDS): gamma_s
        * (dy - mean_t),
        describe("dx with constant statistics", **s): gamma_s * dy,
        describe("dx without gamma", **WORDS): _per_channel(inv_std, nd) * (dy - mean_t - var_t),
        describe("channel index channels-last"): _channels_last_dx(
            case, mean, inv_std, s_dy, s_dyx
        ),
        describe("dx divides by M - 1"): gamma_s
        * (dy - mean_t * m / (m - 1) - var_t * m / (m - 1)),
    }


def _channels_last_dx(case: KernelCase, mean, inv_std, s_dy, s_dyx) -> np.ndarray:
    """dx with every (C,) vector read at channel (flat index % C)."""
    m = case.x.size // case.x.shape[1]
    mean, inv_std, gamma, s_dy, s_dyx = (
        _channels_last_index(v, case.x.shape) for v in (mean, inv_std, case.gamma, s_dy, s_dyx)
    )
    x_hat = (case.x - mean) * inv_std
    return gamma * inv_std * (case.dy - s_dy / m - x_hat * s_dyx / m)


# --- the launchers --------------------------------------------------------------------------------


def _statistics_reference(case: KernelCase) -> tuple[np.ndarray, np.ndarray]:
    _, mean, var = reference.moments_reference(case.x)
    return mean, 1 / np.sqrt(var + case.eps)


def _statistics_one(fn, case: KernelCase) -> float:
    x = guarded(case.x, case.dtype)
    before = x.clone()
    got = run_learner("channel_statistics(x, eps, block)", fn, x, case.eps, block=case.block)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckFailure("channel_statistics must return two tensors: (mean, inv_std).")
    if not torch.equal(x, before):
        raise CheckFailure("channel_statistics changed its input x; the kernel only reads it.")
    c = case.x.shape[1]
    mean, inv_std = (
        _as_array(n, t, (c,), _statistics_dtypes(case))
        for n, t in zip(("mean", "inv_std"), got, strict=True)
    )
    expected, wrong = _statistics_reference(case), statistics_mistakes(case)
    tol = _tolerance(case)
    try:
        return max(
            assert_close("mean", mean, expected[0], wrong["mean"], tol),
            assert_close("inv_std", inv_std, expected[1], wrong["inv_std"], tol),
        )
    except CheckFailure as failure:
        if case.dtype == torch.float32 and "Likely mistake: it looks like" not in str(failure):
            raise CheckFailure(f"{failure} — {describe('one-pass variance')}") from None
        raise


def check_channel_statistics(fn) -> None:
    """Visible check: mean and inv_std of every channel against PyTorch, in float64."""
    err = on_cases(visible_cases(), lambda case: _statistics_one(fn, case))
    report(f"channel_statistics, x of shape {VISIBLE_SHAPE}, block=16", err)


def check_channel_statistics_hidden(fn) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _statistics_one(fn, case))
    report(f"channel_statistics, {len(cases)} hidden float64 cases", err)
    err = on_cases([float32_case()], lambda case: _statistics_one(fn, case))
    report("channel_statistics, float32 with a large mean", err, FLOAT32)


def _normalize_one(fn, case: KernelCase) -> float:
    mean, inv_std = _statistics_reference(case)
    args = [guarded(a, case.dtype) for a in (case.x, mean, inv_std, case.gamma, case.beta)]
    y = run_learner(
        "normalize_affine(x, mean, inv_std, gamma, beta, block)", fn, *args, block=case.block
    )
    got = _as_array("y", y, case.x.shape, (case.dtype,))
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    return assert_close(
        "y", got, expected, normalize_mistakes(case, mean, inv_std), _tolerance(case)
    )


def check_normalize_affine(fn) -> None:
    """Visible check: y = gamma * (x - mean) * inv_std + beta against F.batch_norm, float64."""
    err = on_cases(visible_cases(), lambda case: _normalize_one(fn, case))
    report(f"normalize_affine, x of shape {VISIBLE_SHAPE}, block=16, vs F.batch_norm", err)


def check_normalize_affine_hidden(fn) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _normalize_one(fn, case))
    report(f"normalize_affine, {len(cases)} hidden cases, vs F.batch_norm", err)


def _gradients(case: KernelCase) -> dict[str, np.ndarray]:
    dx, dgamma, dbeta = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dy, case.eps
    )
    return {"dx": dx, "sum_dy_xhat": dgamma, "sum_dy": dbeta}


def _difference(key: str, case: KernelCase, h: float = 1e-5) -> np.ndarray:
    """Centered differences of sum(F.batch_norm(x, gamma, beta) * dy) in the input whose
    gradient ``key`` is: x for dx, gamma for sum_dy_xhat, beta for sum_dy.

    All K perturbed copies go through the oracle in one call: copy k becomes channels
    k*C .. k*C + C - 1 of one wide batch, which batch norm treats independently."""
    x, gamma, beta, dy = case.x, case.gamma, case.beta, case.dy
    target = {"dx": x, "sum_dy_xhat": gamma, "sum_dy": beta}[key]
    k = target.size
    steps = h * np.eye(k).reshape(k, *target.shape)

    def losses(sign: float) -> np.ndarray:
        xs = np.broadcast_to(x, (k, *x.shape)) + (sign * steps if key == "dx" else 0.0)
        gs = gamma + (sign * steps if key == "sum_dy_xhat" else 0.0) * np.ones((k, 1))
        bs = beta + (sign * steps if key == "sum_dy" else 0.0) * np.ones((k, 1))
        wide = np.moveaxis(xs, 0, 1).reshape(x.shape[0], k * x.shape[1], *x.shape[2:])
        y = reference.batchnorm_forward_reference(wide, gs.ravel(), bs.ravel(), case.eps)
        y = np.moveaxis(y.reshape(x.shape[0], k, *x.shape[1:]), 1, 0)
        return (y * dy).reshape(k, -1).sum(1)

    return ((losses(1.0) - losses(-1.0)) / (2 * h)).reshape(target.shape)


def _compare_gradient(key: str, got: np.ndarray, case: KernelCase, wrong) -> tuple[float, float]:
    """``got`` against autograd of F.batch_norm, then against centered differences of it
    (skipped where the large mean offset makes them too coarse: 0 is returned)."""
    err = assert_close(key, got, _gradients(case)[key], wrong)
    if not case.differences or (key == "dx" and case.x.size > MAX_DIFFERENCED):
        return err, 0.0
    fd = relative_error(got, _difference(key, case))
    if not fd <= FINITE_DIFFERENCE:
        raise CheckFailure(
            f"{key}: relative error {fd:.1e} against centered differences of F.batch_norm "
            f"(must be below {FINITE_DIFFERENCE:.0e})."
        )
    return err, fd


def _reductions_one(fn, case: KernelCase) -> tuple[float, float]:
    mean, inv_std = _statistics_reference(case)
    args = [guarded(a) for a in (case.dy, case.x, mean, inv_std)]
    got = run_learner(
        "backward_reductions(dy, x, mean, inv_std, block)", fn, *args, block=case.block
    )
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckFailure("backward_reductions must return two tensors: (sum_dy, sum_dy_xhat).")
    c, wrong = case.x.shape[1], reduction_mistakes(case, mean, inv_std)
    errors = [
        _compare_gradient(key, _as_array(key, t, (c,), (torch.float64,)), case, wrong[key])
        for key, t in zip(("sum_dy", "sum_dy_xhat"), got, strict=True)
    ]
    return max(e[0] for e in errors), max(e[1] for e in errors)


def _elementwise_one(fn, case: KernelCase) -> tuple[float, float]:
    mean, inv_std = _statistics_reference(case)
    grads = _gradients(case)
    s_dy, s_dyx = grads["sum_dy"], grads["sum_dy_xhat"]
    arrays = (case.dy, case.x, mean, inv_std, case.gamma, s_dy, s_dyx)
    dx = run_learner(
        "backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat, block)",
        fn,
        *(guarded(a) for a in arrays),
        block=case.block,
    )
    got = _as_array("dx", dx, case.x.shape, (torch.float64,))
    return _compare_gradient(
        "dx", got, case, elementwise_mistakes(case, mean, inv_std, s_dy, s_dyx)
    )


def _report_gradients(what: str, errors: list[tuple[float, float]]) -> None:
    report(f"{what} vs PyTorch autograd", max(e[0] for e in errors))
    report(
        f"{what} vs centered differences of F.batch_norm",
        max(e[1] for e in errors),
        FINITE_DIFFERENCE,
    )


def _on_cases_pairs(cases, one) -> list[tuple[float, float]]:
    errors = []
    on_cases(cases, lambda case: errors.append(one(case)) or errors[-1][0])
    return errors


def check_backward_reductions(fn) -> None:
    """Visible check: sum_dy and sum_dy_xhat (= dbeta and dgamma), float64."""
    _report_gradients(
        "backward_reductions", _on_cases_pairs(visible_cases(), lambda c: _reductions_one(fn, c))
    )


def check_backward_reductions_hidden(fn) -> None:
    _report_gradients(
        "backward_reductions, hidden cases",
        _on_cases_pairs(hidden_cases(), lambda c: _reductions_one(fn, c)),
    )


def check_backward_elementwise(fn) -> None:
    """Visible check: dx from the two sums, float64."""
    _report_gradients(
        "backward_elementwise", _on_cases_pairs(visible_cases(), lambda c: _elementwise_one(fn, c))
    )


def check_backward_elementwise_hidden(fn) -> None:
    _report_gradients(
        "backward_elementwise, hidden cases",
        _on_cases_pairs(hidden_cases(), lambda c: _elementwise_one(fn, c)),
    )


# --- the autograd.Function ---------------------------------------------------------------------


def _inputs(case: KernelCase, requires_grad: bool, layout: str = "contiguous"):
    device = kernel_device()
    x = torch.tensor(case.x, dtype=case.dtype, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    params = [torch.tensor(a, dtype=case.dtype, device=device) for a in (case.gamma, case.beta)]
    return [t.requires_grad_(requires_grad) for t in (x, *params)]


def _apply(fn_cls, inputs, eps) -> torch.Tensor:
    name = fn_cls.__name__
    y = run_learner(f"{name}.apply(x, gamma, beta, eps)", fn_cls.apply, *inputs, eps)
    if not isinstance(y, torch.Tensor):
        raise CheckFailure(f"{name}.forward returned {type(y).__name__}, not a tensor.")
    if (
        any(t.requires_grad for t in inputs)
        and getattr(y.grad_fn, "_forward_cls", None) is not fn_cls
    ):
        raise CheckFailure(
            f"the output of {name}.apply was not made by {name}: do not override apply."
        )
    return y


def _expected_output(case: KernelCase, inputs) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """y and (dx, dgamma, dbeta) of PyTorch: float64, or F.batch_norm in float32 for a float32
    case (what a float32 model gets from PyTorch)."""
    arrays = [t.detach().cpu().numpy() for t in inputs]
    dy = case.dy.astype(arrays[0].dtype)
    y = reference.batchnorm_forward_reference(*arrays, case.eps)
    grads = reference.batchnorm_gradients_reference(*arrays, dy, case.eps)
    return np.asarray(y, np.float64), tuple(np.asarray(g, np.float64) for g in grads)


FUNCTION_BLOCK = 1024
"""The block the Function's launchers use: their default (the contract's ``block=1024``)."""


def function_forward_mistakes(case: KernelCase) -> dict[str, np.ndarray]:
    """Wrong y of the Function: the normalize kernel's mistakes, and those of the statistics
    kernel (run with the launchers' default block) carried through a correct normalize."""
    mean, inv_std = _statistics_reference(case)
    stats = statistics_mistakes(replace(case, block=FUNCTION_BLOCK))
    nd = case.x.ndim

    def normalized(m, s):
        scale = _per_channel(s * case.gamma, nd)
        return (case.x - _per_channel(m, nd)) * scale + _per_channel(case.beta, nd)

    return {
        **normalize_mistakes(case, mean, inv_std),
        **{d: normalized(m, inv_std) for d, m in stats["mean"].items()},
        **{d: normalized(mean, s) for d, s in stats["inv_std"].items()},
    }


def _function_forward_one(fn_cls, case: KernelCase, layout: str = "contiguous") -> float:
    inputs = _inputs(case, False, layout)
    y = _apply(fn_cls, inputs, case.eps)
    got = _as_array("y", y, case.x.shape, (case.dtype,))
    expected = _expected_output(case, inputs)[0]
    return assert_close("y", got, expected, function_forward_mistakes(case), _tolerance(case))


def _directional_differences(fn_cls, case: KernelCase, grads, h: float = 1e-5) -> float:
    """For x, gamma and beta in turn: the centered difference of sum(dy * fn_cls.apply(...))
    along a random direction u against <gradient, u>; returns the largest relative error."""
    rng = np.random.default_rng(7)
    dy = torch.tensor(case.dy, dtype=case.dtype)
    base = [t.detach() for t in _inputs(case, False)]
    worst = 0.0
    for k, name in enumerate(("dx", "dgamma", "dbeta")):
        u = torch.tensor(rng.normal(size=base[k].shape), dtype=case.dtype, device=base[k].device)

        def loss(step: float, k=k, u=u) -> float:
            moved = [t + step * u if i == k else t for i, t in enumerate(base)]
            y = run_learner(f"{fn_cls.__name__}.apply", fn_cls.apply, *moved, case.eps)
            return float((y.detach().cpu() * dy).sum())

        numeric = (loss(h) - loss(-h)) / (2 * h)
        analytic = float((torch.as_tensor(grads[k]) * u.cpu()).sum())
        err = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)
        if not err <= FINITE_DIFFERENCE:
            raise CheckFailure(
                f"{name}: relative error {err:.1e} against a centered difference of your own "
                f"forward along a random direction (must be below {FINITE_DIFFERENCE:.0e}): "
                "forward and backward disagree."
            )
        worst = max(worst, err)
    return worst


def _function_backward_one(fn_cls, case: KernelCase, layout="contiguous", differences=False):
    """dx, dgamma, dbeta of the learner's backward (called as autograd calls it) against
    PyTorch's autograd; with ``differences``, against its own forward too."""
    name = fn_cls.__name__
    inputs = _inputs(case, True, layout)
    y = _apply(fn_cls, inputs, case.eps)
    dy = torch.tensor(case.dy, dtype=case.dtype, device=inputs[0].device)
    grads = run_learner(f"{name}.backward(ctx, dy)", y.grad_fn.apply, dy)
    if not isinstance(grads, tuple) or len(grads) != 4:
        raise CheckFailure(
            f"{name}.backward must return 4 values, one per input of forward "
            "(dx, dgamma, dbeta, None for eps)."
        )
    if grads[3] is not None:
        raise CheckFailure(f"{name}.backward must return None for eps, a float, not a gradient.")
    expected = _expected_output(case, inputs)[1]
    mean, inv_std = _statistics_reference(case)
    grad_sums = _gradients(case)
    sums = reduction_mistakes(case, mean, inv_std)
    wrong = {
        "dx": elementwise_mistakes(
            case, mean, inv_std, grad_sums["sum_dy"], grad_sums["sum_dy_xhat"]
        ),
        "dgamma": sums["sum_dy_xhat"],
        "dbeta": sums["sum_dy"],
    }
    tol = TIGHT if case.dtype == torch.float64 else FLOAT32_GRADIENTS
    arrays, worst = [], 0.0
    for key, got, like, exp in zip(
        ("dx", "dgamma", "dbeta"), grads, inputs, expected, strict=False
    ):
        arrays.append(_as_array(key, got, like.shape, (case.dtype,)))
        worst = max(worst, assert_close(key, arrays[-1], exp, wrong[key], tol))
    fd = _directional_differences(fn_cls, case, arrays) if differences else 0.0
    return worst, fd


def _gradcheck(fn_cls) -> None:
    """torch.autograd.gradcheck (fast mode: random projections) of fn_cls.apply in float64."""
    case = kernel_case((3, 2, 2, 2), 99, "gradcheck", 4)
    inputs = (*_inputs(case, True), case.eps)
    ok = call_learner(
        "gradcheck",
        torch.autograd.gradcheck,
        fn_cls.apply,
        inputs,
        fast_mode=True,
        raise_exception=False,
        watch=False,
    )
    if not ok:
        raise CheckFailure(
            "torch.autograd.gradcheck: your backward disagrees with finite differences of your "
            "forward (float64)."
        )


def check_function_forward(fn_cls) -> None:
    """Visible check: TritonBatchNorm.apply in float64 against the reference, and in float32
    against F.batch_norm."""
    err = on_cases(visible_cases(), lambda case: _function_forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.apply, float64, vs F.batch_norm", err)
    err = on_cases([float32_case()], lambda case: _function_forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.apply, float32, vs F.batch_norm in float32", err, FLOAT32)


def check_function_forward_hidden(fn_cls) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _function_forward_one(fn_cls, case))
    last = replace(cases[3], label="channels-last x (not contiguous)")
    err = max(
        err, on_cases([last], lambda case: _function_forward_one(fn_cls, case, "channels_last"))
    )
    report(f"{fn_cls.__name__}.apply, {len(cases) + 1} hidden cases", err)


def check_function_backward(fn_cls) -> None:
    """Visible check: the backward against PyTorch's autograd (float64 and float32), centered
    differences of your forward, and torch.autograd.gradcheck."""
    require_own_backward(fn_cls)
    results = []
    on_cases(
        visible_cases(),
        lambda c: results.append(_function_backward_one(fn_cls, c, differences=True)) or 0.0,
    )
    report(f"{fn_cls.__name__}.backward vs PyTorch autograd", results[0][0])
    report(
        f"{fn_cls.__name__}.backward vs centered differences of your forward",
        results[0][1],
        FINITE_DIFFERENCE,
    )
    err = on_cases([float32_case()], lambda c: _function_backward_one(fn_cls, c)[0])
    report(
        f"{fn_cls.__name__}.backward, float32, vs F.batch_norm in float32", err, FLOAT32_GRADIENTS
    )
    _gradcheck(fn_cls)
    print(f"torch.autograd.gradcheck({fn_cls.__name__}.apply, float64, fast mode): passed")


def check_function_backward_hidden(fn_cls) -> None:
    require_own_backward(fn_cls)
    cases = hidden_cases()
    chosen = [cases[0], cases[2], cases[4]]
    err = on_cases(
        chosen, lambda c: _function_backward_one(fn_cls, c, differences=c is cases[2])[0]
    )
    last = replace(cases[3], label="channels-last x (not contiguous)")
    err = max(
        err, on_cases([last], lambda c: _function_backward_one(fn_cls, c, "channels_last")[0])
    )
    report(f"{fn_cls.__name__}.backward, {len(chosen) + 1} hidden cases", err)
