"""Lesson 11's kernel checks: known-wrong variants (numpy, float64) and the checks of the
statistics, normalize and backward kernels."""

from __future__ import annotations

import numpy as np
import torch

from utils import reference
from utils.checks.triton_kernels.common import (
    MAX_DIFFERENCED,
    VISIBLE_SHAPE,
    WORDS,
    KernelCase,
    _as_array,
    _channels,
    _channels_last_index,
    _per_channel,
    _statistics_dtypes,
    _tolerance,
    items_of,
    launch,
    visible_cases,
)
from utils.checks.twins import On, paired
from utils.diagnose import (
    FINITE_DIFFERENCE,
    CheckFailure,
    assert_close,
    on_cases,
    report,
    report_gradients,
)
from utils.gradcheck import relative_error
from utils.mistakes import catalogue, describe
from utils.mistakes.catalogue import batch_sets, quietly, wrong_dx

# --- known-wrong variants (numpy, float64) ---------------------------------------------------

INV_STD_MISTAKES = {
    describe("unbiased variance", **WORDS): {"ddof": 1},
    describe("eps outside sqrt", **WORDS): {"spread": "sqrt(v) + eps"},
    describe("eps missing", **WORDS): {"eps": 0.0},
    describe("inv_std is the std"): {"spread": "1 / sqrt(v + eps)"},
    describe("no square root", what="1"): {"spread": "v + eps"},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_inv_std``."""


def statistics_mistakes(case: KernelCase) -> dict[str, dict[str, np.ndarray]]:
    """ "mean" and "inv_std" -> {description: the wrong (C,) array}."""
    x, eps, m = case.x, case.eps, case.x.size // case.x.shape[1]
    rows, block = _channels(x), x.reshape(x.shape[1], -1)
    mean, var = rows.mean(1), rows.var(1)
    padded = -(-m // case.block) * case.block - m  # masked lanes of the last block
    inv_std = catalogue.inv_std_mistakes(batch_sets(x.ndim), x, eps, INV_STD_MISTAKES)
    with quietly():
        inv_std |= {
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


AFFINE_MISTAKES = {
    describe("gamma beta swapped", out="y"): {"affine": "beta * x_hat + gamma"},
    describe("no gamma"): {"affine": "x_hat + beta"},
    describe("no beta"): {"affine": "gamma * x_hat"},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_forward``."""


def normalize_mistakes(case: KernelCase, mean, inv_std) -> dict[str, np.ndarray]:
    """description -> a wrong y of the normalize kernel given the right mean and inv_std (C,)."""
    x, g, b = case.x, case.gamma, case.beta
    sets = batch_sets(x.ndim)
    last = [_channels_last_index(v, x.shape) for v in (mean, inv_std, g, b)]
    return {
        **catalogue.forward_mistakes(sets, x, g, b, case.eps, AFFINE_MISTAKES),
        describe("channel index channels-last"): (x - last[0]) * last[1] * last[2] + last[3],
    }


PARAMETER_MISTAKES = {
    "sum_dy": {
        describe("dbeta is sum(dout * x_hat)"): "sum(dout * x_hat)",
        describe("dbeta averages", **WORDS): "mean(dout)",
    },
    "sum_dy_xhat": {
        describe("dgamma is sum(dout)", **WORDS): "sum(dout)",
        describe("dgamma uses x", **WORDS): "sum(dout * x)",
    },
}
"""sum -> description -> what ``utils.mistakes.catalogue.parameter_mistakes`` computes."""


def reduction_mistakes(case: KernelCase, mean, inv_std) -> dict[str, dict[str, np.ndarray]]:
    """sum -> description -> a wrong sum_dy or sum_dy_xhat (C,) given the right statistics."""
    x, dy = case.x, case.dy
    x_hat = (x - _per_channel(mean, x.ndim)) * _per_channel(inv_std, x.ndim)
    blocks = {
        "sum_dy": dy.reshape(dy.shape[1], -1).sum(1),
        "sum_dy_xhat": (dy * x_hat).reshape(dy.shape[1], -1).sum(1),
    }
    sets = batch_sets(x.ndim)
    return {
        key: {
            **catalogue.parameter_mistakes(sets, x, dy, case.eps, picks),
            describe("channel is a contiguous block"): blocks[key],
        }
        for key, picks in PARAMETER_MISTAKES.items()
    }


_STATISTICS = dict(statistics="the batch mean and variance (sum_dy and sum_dy_xhat)", **WORDS)
DX_MISTAKES = {
    describe("dx without mean term", mean="mean (sum_dy)", **WORDS): {"mean_term": 0},
    describe("dx without variance term", variance="variance (sum_dy_xhat)", **WORDS): {
        "variance_term": 0
    },
    describe("dx with constant statistics", **_STATISTICS): {"mean_term": 0, "variance_term": 0},
    describe("dx without gamma", **WORDS): {"with_gamma": False},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_dx``."""


def elementwise_mistakes(case: KernelCase, mean, inv_std, s_dy, s_dyx) -> dict[str, np.ndarray]:
    """description -> a wrong dx of the elementwise kernel given the right statistics and
    sums (C,)."""
    sets = batch_sets(case.x.ndim)
    return {
        **catalogue.dx_mistakes(sets, case.x, case.gamma, case.dy, case.eps, DX_MISTAKES),
        describe("channel index channels-last"): _channels_last_dx(
            case, mean, inv_std, s_dy, s_dyx
        ),
        describe("dx divides by M - 1"): wrong_dx(
            sets, case.x, case.gamma, case.dy, case.eps, count="m - 1"
        ),
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
    what = "channel_statistics(x, eps, block)"
    answer = launch(fn, what, [case.x, case.eps], case.dtype, case.block)
    got = items_of(
        answer.get("out"), 2, "channel_statistics must return two tensors: (mean, inv_std)."
    )
    if 0 in answer["changed"]:
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


def _normalize_one(fn, case: KernelCase) -> float:
    mean, inv_std = _statistics_reference(case)
    what = "normalize_affine(x, mean, inv_std, gamma, beta, block)"
    arrays = [case.x, mean, inv_std, case.gamma, case.beta]
    answer = launch(fn, what, arrays, case.dtype, case.block)
    got = _as_array("y", answer.get("out"), case.x.shape, (case.dtype,))
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    return assert_close(
        "y", got, expected, normalize_mistakes(case, mean, inv_std), _tolerance(case)
    )


@paired(lambda: On(visible_cases(), f", x of shape {VISIBLE_SHAPE}, block=16, vs F.batch_norm"))
def check_normalize_affine(on: On, fn) -> None:
    """Visible check: y = gamma * (x - mean) * inv_std + beta against F.batch_norm, float64."""
    err = on_cases(on.cases, lambda case: _normalize_one(fn, case))
    report(f"normalize_affine{on.label}", err)


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
    what = "backward_reductions(dy, x, mean, inv_std, block)"
    answer = launch(fn, what, [case.dy, case.x, mean, inv_std], torch.float64, case.block)
    got = items_of(
        answer.get("out"), 2, "backward_reductions must return two tensors: (sum_dy, sum_dy_xhat)."
    )
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
    arrays = [case.dy, case.x, mean, inv_std, case.gamma, s_dy, s_dyx]
    what = "backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat, block)"
    answer = launch(fn, what, arrays, torch.float64, case.block)
    got = _as_array("dx", answer.get("out"), case.x.shape, (torch.float64,))
    return _compare_gradient(
        "dx", got, case, elementwise_mistakes(case, mean, inv_std, s_dy, s_dyx)
    )


def _report_gradients(what: str, errors: list[tuple[float, float]]) -> None:
    report_gradients(what, errors, "centered differences of F.batch_norm")


def _on_cases_pairs(cases, one) -> list[tuple[float, float]]:
    errors = []
    on_cases(cases, lambda case: errors.append(one(case)) or errors[-1][0])
    return errors


@paired(lambda: On(visible_cases()))
def check_backward_reductions(on: On, fn) -> None:
    """Visible check: sum_dy and sum_dy_xhat (= dbeta and dgamma), float64."""
    _report_gradients(
        f"backward_reductions{on.label}",
        _on_cases_pairs(on.cases, lambda c: _reductions_one(fn, c)),
    )


@paired(lambda: On(visible_cases()))
def check_backward_elementwise(on: On, fn) -> None:
    """Visible check: dx from the two sums, float64."""
    _report_gradients(
        f"backward_elementwise{on.label}",
        _on_cases_pairs(on.cases, lambda c: _elementwise_one(fn, c)),
    )
