"""Checks for lesson 06: spatial batch normalization of convolutional feature maps.

x has shape (N, C, H, W); gamma and beta one value per channel, (C,). Each channel is
normalized with the mean and the biased variance of its N * H * W values. The module has four
sections: the known-wrong variants used to name a mistake, the seeded cases, and the checks
the notebook's grade cells call; the references (F.batch_norm on 4-D input, autograd) are
``utils.reference``'s. As everywhere in the course, the learner's functions run through
``call_without_torch``, gradients are checked against autograd and against centered
differences of the learner's own forward, and a failure message names the case and, where it
can, the mistake.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from utils import reference
from utils.cases import Case, make_case
from utils.checks.batchnorm import STEP_PER_SPREAD, check_default_eps, run_forward
from utils.checks.twins import On, paired
from utils.diagnose import (
    MATCH,
    CheckFailure,
    as_float_array,
    assert_close,
    assert_unchanged,
    check_backward_on,
    compare_gradients,
    compare_with_differences,
    forward_first,
    on_cases,
)
from utils.diagnose import report as report_line
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import call_without_torch, names_refused
from utils.mistakes import catalogue, describe
from utils.mistakes.catalogue import WHOLE, batch_sets, wrong_dx, wrong_forward

CHANNEL_AXES = (0, 2, 3)
"""The axes a channel's statistics are taken over: the batch and both spatial axes."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


GRADIENTS = ("dx", "dgamma", "dbeta")


# --- known-wrong variants (numpy), keyed by a description completing "it looks like ..." -----


def _rows(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _unrows(rows: np.ndarray, shape: tuple) -> np.ndarray:
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


ROWS = batch_sets(2)
"""The 2-D BatchNorm that the reshape route hands the rows (N*H*W, C) to."""
SETS = batch_sets(4)
"""Spatial BatchNorm itself: one set per channel, over CHANNEL_AXES."""


def forward_reshape_without_transpose(sets, x, gamma, beta, eps):
    return wrong_forward(ROWS, x.reshape(-1, x.shape[1]), gamma, beta, eps).reshape(x.shape)


def forward_reshape_in_without_transpose(sets, x, gamma, beta, eps):
    """x.reshape(-1, C) going in, but the correct way back."""
    return _unrows(wrong_forward(ROWS, x.reshape(-1, x.shape[1]), gamma, beta, eps), x.shape)


def forward_back_without_transpose(sets, x, gamma, beta, eps):
    return wrong_forward(ROWS, _rows(x), gamma, beta, eps).reshape(x.shape)


SPATIAL = {
    "m": "N*H*W",
    "mean": "mean",
    "variance": "variance",
    "statistics": "the mean and variance",
}
"""The words of lesson 06 for ``utils.mistakes.describe``."""
SPATIAL_SUMS = {**SPATIAL, "m": "(N*H*W)"}

FORWARD_MISTAKES = {
    describe("spatial per position"): {"over": (0,)},
    describe("spatial over batch and channels"): {"over": (0, 1)},
    describe("spatial instance norm"): {"over": (2, 3)},
    describe("spatial layer norm"): {"over": (1, 2, 3)},
    describe("spatial over everything"): {"over": WHOLE},
    describe("spatial x reshaped"): forward_reshape_without_transpose,
    describe("spatial x reshaped, back right"): forward_reshape_in_without_transpose,
    describe("spatial rows put back"): forward_back_without_transpose,
    describe("spatial sums divided by N"): {"count": "N", "mean_count": "N"},
    describe("spatial variance divided by N"): {"count": "N"},
    describe("affine along width"): {"affine": "along the last axis"},
    describe("unbiased variance, uses", **SPATIAL): {"ddof": 1},
    describe("eps outside sqrt"): {"spread": "sqrt(v) + eps"},
    describe("eps missing"): {"eps": 0.0},
    describe("no square root"): {"spread": "v + eps"},
    describe("gamma beta swapped"): {"affine": "beta * x_hat + gamma"},
    describe("no affine", not_x_hat=""): {"affine": "x_hat"},
    describe("eps fixed"): {"eps": 1e-5},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_forward``, or a mistake of
this lesson's own with its signature (the reshape route's mix-ups; ``sets`` unused)."""


def forward_mistakes(case: Case) -> dict[str, np.ndarray]:
    """Every known-wrong spatial forward output on ``case`` that can be computed."""
    return catalogue.forward_mistakes(
        SETS, case.x, case.gamma, case.beta, case.eps, FORWARD_MISTAKES
    )


def dx_dout_reshaped_without_transpose(sets, x, gamma, dout, eps):
    rows_dx = wrong_dx(ROWS, _rows(x), gamma, dout.reshape(-1, x.shape[1]), eps)
    return _unrows(rows_dx, x.shape)


def dx_back_without_transpose(sets, x, gamma, dout, eps):
    return wrong_dx(ROWS, _rows(x), gamma, _rows(dout), eps).reshape(x.shape)


DX_MISTAKES = {
    describe("spatial dx over the batch"): {"sum_axes": (0,)},
    describe("spatial dx divided by N"): {"count": "N"},
    describe("spatial dx over the channels"): {"sum_axes": (1,)},
    describe("spatial dout reshaped"): dx_dout_reshaped_without_transpose,
    describe("spatial rows put back", of=" of dx"): dx_back_without_transpose,
    describe("dx without mean term", **SPATIAL_SUMS): {"mean_term": 0},
    describe("dx without variance term", **SPATIAL_SUMS): {"variance_term": 0},
    describe("dx with constant statistics", **SPATIAL): {"mean_term": 0, "variance_term": 0},
    describe("dx without gamma"): {"with_gamma": False},
    describe("spatial dx unbiased"): {"ddof": 1},
    describe("dx without eps"): {"eps_in_scale": False},
}
"""description -> the switches of ``wrong_dx``, or a mistake of this lesson's own with its
signature."""

PARAMETER_MISTAKES = {
    "dgamma": {
        describe("dgamma is sum(dout)"): "sum(dout)",
        describe("dgamma uses x", over=" over (0, 2, 3)"): "sum(dout * x)",
    },
    "dbeta": {
        describe("dbeta is sum(dout * x_hat)"): "sum(dout * x_hat)",
        describe("dbeta averages", axes="(0, 2, 3)"): "mean(dout)",
    },
}


def backward_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx (N, C, H, W), dgamma and dbeta (C,) on ``case``."""
    x, dout, eps = case.x, case.dout, case.eps
    c = x.shape[1]
    wrong = {
        "dx": catalogue.dx_mistakes(SETS, x, case.gamma, dout, eps, DX_MISTAKES),
        **{
            which: catalogue.parameter_mistakes(SETS, x, dout, eps, picks)
            for which, picks in PARAMETER_MISTAKES.items()
        },
    }
    x_hat = catalogue.wrong_normalized(SETS, x, eps)
    wrong["dgamma"] |= {
        describe("spatial summed after reshape"): (dout * x_hat).reshape(-1, c).sum(axis=0),
        describe("spatial dgamma averages positions"): (dout * x_hat).mean(axis=(2, 3)).sum(0),
    }
    wrong["dbeta"][describe("spatial summed after reshape", which="dbeta")] = dout.reshape(
        -1, c
    ).sum(axis=0)
    return wrong


# --- cases -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChannelsLastCase(Case):
    """A case whose x is an (N, C, H, W) view of an array stored as (N, H, W, C)."""

    def fresh(self) -> ChannelsLastCase:
        copy = super().fresh()
        return dataclasses.replace(copy, x=channels_last_view(self.x))


def channels_last_view(x: np.ndarray) -> np.ndarray:
    """A copy of x (N, C, H, W), stored channels-last (NHWC) and seen through a transposed,
    non-contiguous (N, C, H, W) view. Always a copy, never memory shared with x."""
    return np.array(x.transpose(0, 2, 3, 1), order="C").transpose(0, 3, 1, 2)


VISIBLE_SHAPE = (2, 3, 2, 2)


def visible_case() -> Case:
    """The small fixed case of the visible checks: x of shape (2, 3, 2, 2)."""
    return make_case(VISIBLE_SHAPE, 2015, f"visible case, x of shape {VISIBLE_SHAPE}")


# --- checks: channels_to_rows / rows_to_channels ---------------------------------------------


def _layout_error(channels_to_rows: Callable, rows_to_channels: Callable, case: Case) -> float:
    x = case.fresh().x
    rows = call_without_torch(channels_to_rows, x, name=_name(channels_to_rows))
    assert_unchanged(case.x, x, _name(channels_to_rows), "x")
    n, c, h, w = case.x.shape
    expected = reference.channels_to_rows_reference(case.x)
    wrong_rows = {
        describe("spatial x reshaped to rows"): case.x.reshape(-1, c),
        describe("spatial rows in (n, w, h)"): case.x.transpose(0, 3, 2, 1).reshape(-1, c),
    }
    err_rows = assert_close("rows", rows, expected, mistakes=wrong_rows)
    given = expected.copy()
    back = call_without_torch(rows_to_channels, given, case.x.shape, name=_name(rows_to_channels))
    assert_unchanged(expected, given, _name(rows_to_channels), "rows")
    wrong_back = {
        describe("spatial rows put back"): expected.reshape(case.x.shape),
    }
    return max(err_rows, assert_close("rows_to_channels(rows)", back, case.x, mistakes=wrong_back))


@paired(lambda: On([visible_case()]))
def check_channel_rows(on: On, channels_to_rows: Callable, rows_to_channels: Callable) -> None:
    """Visible check of the (N, C, H, W) <-> (N*H*W, C) conversions on the small case."""
    err = on_cases(on.cases, lambda c: _layout_error(channels_to_rows, rows_to_channels, c))
    report_line(f"{_name(channels_to_rows)} and {_name(rows_to_channels)}{on.label}", err)


# --- checks: forward ---------------------------------------------------------------------------


def _checked_forward(forward: Callable, case: Case) -> tuple[float, object]:
    """(relative error of the learner's output, the learner's cache) on ``case``."""
    out, cache = run_forward(forward, case)
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    wrong = _distinct(forward_mistakes(case), expected)
    return assert_close("out", out, expected, mistakes=wrong), cache


def _forward_error(forward: Callable, case: Case) -> float:
    return _checked_forward(forward, case)[0]


def _distinct(wrong: dict[str, np.ndarray], expected: np.ndarray) -> dict[str, np.ndarray]:
    """The variants that differ from ``expected`` on this case: one that coincides with the
    right answer here (say, dividing by N when H = W = 1) must not name another mistake."""
    return {d: a for d, a in wrong.items() if not relative_error(a, expected) <= MATCH}


def check_spatial_forward(forward: Callable) -> None:
    """Visible check of a spatial forward against F.batch_norm on the small (2, 3, 2, 2) case,
    called with eps and without it (the default)."""
    err = on_cases([visible_case()], lambda c: _forward_error(forward, c))
    check_default_eps(forward, visible_case(), reference.batchnorm_forward_reference)
    report_line(_name(forward), err)


# --- checks: backward --------------------------------------------------------------------------


def _per_channel(value, what: str, shape: tuple) -> np.ndarray:
    """``value`` as a (C,) float64 array, or a CheckFailure whose hint reads its shape."""
    n, c, h, w = shape
    arr = as_float_array(value, what)
    if arr.shape == (c,):
        return arr
    hints = [
        ((c, h, w), "one value per channel and position: sum over the positions too"),
        ((n, c), "one value per example and channel: sum over the batch too"),
        ((h, w), "one value per position: sum over the batch and the positions"),
        ((1, c, 1, 1), "the keepdims shape: return one value per channel, shape (C,)"),
    ]
    matching = [hint for hint_shape, hint in hints if arr.shape == hint_shape]
    hint = f" ({'; or '.join(matching)}; axis=(0, 2, 3))" if matching else ""
    raise CheckFailure(
        f"{what} has shape {arr.shape}; expected one value per channel, ({c},){hint}."
    )


def _run_backward(backward: Callable, case: Case, cache) -> tuple[np.ndarray, ...]:
    dout = case.dout.copy()
    result = call_without_torch(backward, dout, cache, name=_name(backward))
    assert_unchanged(case.dout, dout, _name(backward), "dout")
    if not (isinstance(result, tuple) and len(result) == 3):
        raise CheckFailure(f"{_name(backward)} must return a tuple (dx, dgamma, dbeta).")
    dx, dgamma, dbeta = result
    return (
        as_float_array(dx, "dx", case.x.shape),
        _per_channel(dgamma, "dgamma", case.x.shape),
        _per_channel(dbeta, "dbeta", case.x.shape),
    )


def _finite_differences(forward: Callable, case: Case) -> tuple[np.ndarray, ...]:
    """Centered differences of ``sum(forward(x, gamma, beta, eps)[0] * dout)`` with respect to
    x, gamma and beta; each lambda perturbs its own argument."""
    x, gamma, beta = case.fresh().x, case.gamma.copy(), case.beta.copy()
    spread = np.sqrt(np.min(case.x.var(axis=CHANNEL_AXES)) + case.eps)
    h_x = STEP_PER_SPREAD * min(1.0, spread)
    return (
        numerical_gradient(lambda x_: forward(x_, gamma, beta, case.eps)[0], x, case.dout, h_x),
        numerical_gradient(lambda g_: forward(x, g_, beta, case.eps)[0], gamma, case.dout),
        numerical_gradient(lambda b_: forward(x, gamma, b_, case.eps)[0], beta, case.dout),
    )


def _backward_errors(backward: Callable, forward: Callable, case: Case) -> tuple[float, float]:
    """(error against autograd, error against finite differences) of ``backward`` on the
    cache of the learner's ``forward``. The cache's contents are the learner's own choice, so
    a wrong forward cannot be replaced by a reference: it is blamed first."""
    _, cache = forward_first(_name(forward), lambda: _checked_forward(forward, case))
    grads = _run_backward(backward, case, cache)
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    wrong = backward_mistakes(case)
    wrong = {k: _distinct(v, e) for (k, v), e in zip(wrong.items(), expected, strict=True)}
    err_autograd = compare_gradients(GRADIENTS, grads, expected, wrong)
    numeric = call_without_torch(_finite_differences, forward, case, name=_name(forward))
    err_fd = compare_with_differences(GRADIENTS, grads, numeric, f"your {_name(forward)}")
    return err_autograd, err_fd


def _check_backward_on(backward: Callable, forward: Callable, cases: list[Case], label: str):
    check_backward_on(
        cases,
        lambda case: _backward_errors(backward, forward, case),
        f"{_name(backward)}{label}",
        "dx, dgamma, dbeta",
        _name(forward),
    )


@paired(lambda: On([visible_case()]))
def check_spatial_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of a spatial backward ``(dout, cache) -> (dx, dgamma, dbeta)`` on the
    small case, with the cache made by ``forward``."""
    _check_backward_on(backward, forward, on.cases, on.label)


# --- checks: route 2, written without route 1 -------------------------------------------------

ROUTE_1 = (
    "channels_to_rows",
    "rows_to_channels",
    "batchnorm_forward",
    "batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
)
"""The functions of route 1 (and the 2-D layer it reuses) that route 2 must do without."""

ROUTE_2_RULE = (
    "route 2 is written without channels_to_rows, rows_to_channels, the 2-D layer or route 1's "
    "functions: reduce over axis=(0, 2, 3) with keepdims=True yourself."
)


def check_spatial_forward_direct(forward: Callable) -> None:
    """``check_spatial_forward`` for route 2, with the functions of ``ROUTE_1`` refused."""
    with names_refused((forward,), ROUTE_1, ROUTE_2_RULE):
        check_spatial_forward(forward)


@paired(lambda: On([visible_case()]))
def check_spatial_backward_direct(on: On, backward: Callable, forward: Callable) -> None:
    """``check_spatial_backward`` for route 2, with the functions of ``ROUTE_1`` refused."""
    with names_refused((backward, forward), ROUTE_1, ROUTE_2_RULE):
        check_spatial_backward.body(on, backward, forward)
