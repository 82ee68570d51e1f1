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

from utils import mistakes, reference
from utils.cases import Case, make_case
from utils.checks.batchnorm import STEP_PER_SPREAD, check_default_eps, run_forward
from utils.diagnose import (
    MATCH,
    CheckFailure,
    as_float_array,
    assert_close,
    assert_unchanged,
    check_backward_on,
    compare_gradients,
    compare_with_differences,
    on_cases,
)
from utils.diagnose import report as report_line
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import call_without_torch, names_refused
from utils.mistakes import describe

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


def _lifted(forward_2d: Callable) -> Callable:
    """A lesson-02 forward variant applied to the rows, as the reshape route would."""
    return lambda x, g, b, eps: _unrows(forward_2d(_rows(x), g, b, eps), x.shape)


def _over(axes, ddof: int = 0) -> Callable:
    """The forward with statistics over ``axes`` instead of (0, 2, 3)."""

    def forward(x, gamma, beta, eps):
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, ddof=ddof, keepdims=True)
        x_hat = (x - mean) / np.sqrt(var + eps)
        return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)

    return forward


def _correct_2d(x, gamma, beta, eps):
    return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta


def forward_reshape_without_transpose(x, gamma, beta, eps):
    return _correct_2d(x.reshape(-1, x.shape[1]), gamma, beta, eps).reshape(x.shape)


def forward_reshape_in_without_transpose(x, gamma, beta, eps):
    """x.reshape(-1, C) going in, but the correct way back."""
    return _unrows(_correct_2d(x.reshape(-1, x.shape[1]), gamma, beta, eps), x.shape)


def forward_back_without_transpose(x, gamma, beta, eps):
    return _correct_2d(_rows(x), gamma, beta, eps).reshape(x.shape)


def _dividing_sums_by_n(mean_too: bool) -> Callable:
    """The forward whose variance (and, if ``mean_too``, mean) divides a sum over (0, 2, 3)
    by N = x.shape[0] instead of by N * H * W."""

    def forward(x, gamma, beta, eps):
        n = x.shape[0]
        total = x.sum(axis=CHANNEL_AXES, keepdims=True)
        mean = total / n if mean_too else x.mean(axis=CHANNEL_AXES, keepdims=True)
        var = ((x - mean) ** 2).sum(axis=CHANNEL_AXES, keepdims=True) / n
        x_hat = (x - mean) / np.sqrt(var + eps)
        return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)

    return forward


def forward_affine_along_width(x, gamma, beta, eps):
    """gamma * x_hat with gamma (C,) broadcasts along W; only runs when W == C."""
    if x.shape[3] != x.shape[1]:
        return None
    x_hat = (x - x.mean(axis=CHANNEL_AXES, keepdims=True)) / np.sqrt(
        x.var(axis=CHANNEL_AXES, keepdims=True) + eps
    )
    return gamma * x_hat + beta


SPATIAL = {
    "m": "N*H*W",
    "mean": "mean",
    "variance": "variance",
    "statistics": "the mean and variance",
}
"""The words of lesson 06 for ``utils.mistakes.describe``."""
SPATIAL_SUMS = {**SPATIAL, "m": "(N*H*W)"}

_ROUTE_HINT = "transpose to (N, H, W, C) first, e.g. x.transpose(0, 2, 3, 1).reshape(-1, C)"

FORWARD_MISTAKES = {
    "the statistics are taken per position over the batch only (axis=0); a channel's "
    "statistics run over the batch and all positions, axis=(0, 2, 3)": _over(0),
    "the statistics are taken over the batch and the channels (axis=(0, 1)); they are per "
    "channel, over axis=(0, 2, 3)": _over((0, 1)),
    "the statistics are taken per example and channel (axis=(2, 3), instance norm); batch "
    "norm also averages over the batch, axis=(0, 2, 3)": _over((2, 3)),
    "the statistics are taken per example over (1, 2, 3) (layer norm); batch norm uses "
    "axis=(0, 2, 3)": _over((1, 2, 3)),
    "the statistics are taken over the whole array; they are per channel, axis=(0, 2, 3)": (
        _over(None)
    ),
    f"x was reshaped to (-1, C) without moving the channel axis last, which mixes channels "
    f"in every row: {_ROUTE_HINT}": forward_reshape_without_transpose,
    f"x was reshaped to (-1, C) without moving the channel axis last (the way back is right, "
    f"but the rows mixed channels): {_ROUTE_HINT}": forward_reshape_in_without_transpose,
    "the rows were put back with reshape alone; reshape them to (N, H, W, C) and transpose "
    "with (0, 3, 1, 2)": forward_back_without_transpose,
    "the sums over (0, 2, 3) are divided by N instead of by N * H * W, the number of values "
    "of a channel": _dividing_sums_by_n(mean_too=True),
    "the variance's sum over (0, 2, 3) is divided by N instead of by N * H * W, the number of "
    "values of a channel": _dividing_sums_by_n(mean_too=False),
    describe("affine along width"): forward_affine_along_width,
    describe("unbiased variance, uses", **SPATIAL): _over(CHANNEL_AXES, ddof=1),
    describe("eps outside sqrt"): _lifted(mistakes.forward_eps_outside_sqrt),
    describe("eps missing"): _lifted(mistakes.forward_without_eps),
    describe("no square root"): _lifted(mistakes.forward_divides_by_variance),
    describe("gamma beta swapped"): _lifted(mistakes.forward_gamma_beta_swapped),
    describe("no affine", not_x_hat=""): _lifted(mistakes.forward_without_gamma_and_beta),
    describe("eps fixed"): _lifted(mistakes.forward_default_eps),
}
"""description -> wrong forward(x, gamma, beta, eps) of 4-D x (None where it cannot run)."""


def forward_mistakes(case: Case) -> dict[str, np.ndarray]:
    """Every known-wrong spatial forward output on ``case`` that can be computed."""
    with np.errstate(all="ignore"):
        outputs = {
            d: f(case.x, case.gamma, case.beta, case.eps) for d, f in FORWARD_MISTAKES.items()
        }
    return {d: out for d, out in outputs.items() if out is not None}


def _closed_form_dx(x, gamma, dout, eps, axes=CHANNEL_AXES, count=None):
    """The closed-form dx with sums over ``axes`` divided by ``count`` (default: their size)."""
    mean = x.mean(axis=CHANNEL_AXES, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=CHANNEL_AXES, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dout * gamma.reshape(1, -1, 1, 1)
    total = np.sum(dx_hat, axis=axes, keepdims=True)
    m = count if count is not None else dx_hat.size // total.size
    total = total + x_hat * np.sum(dx_hat * x_hat, axis=axes, keepdims=True)
    return inv_std / m * (m * dx_hat - total)


def _lifted_dx(dx_2d: Callable) -> Callable:
    return lambda x, g, dout, eps: _unrows(dx_2d(_rows(x), g, _rows(dout), eps), x.shape)


def _correct_dx_2d(x, gamma, dout, eps):
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    dx_hat = dout * gamma
    n = len(x)
    return (n * dx_hat - dx_hat.sum(0) - x_hat * (dx_hat * x_hat).sum(0)) / (
        n * np.sqrt(x.var(axis=0) + eps)
    )


def dx_dout_reshaped_without_transpose(x, gamma, dout, eps):
    return _unrows(_correct_dx_2d(_rows(x), gamma, dout.reshape(-1, x.shape[1]), eps), x.shape)


def dx_back_without_transpose(x, gamma, dout, eps):
    return _correct_dx_2d(_rows(x), gamma, _rows(dout), eps).reshape(x.shape)


DX_MISTAKES = {
    "the sums in dx run over the batch axis only (axis=0); they run over axis=(0, 2, 3)": (
        lambda x, g, dout, eps: _closed_form_dx(x, g, dout, eps, axes=0)
    ),
    "the sums in dx are divided by N instead of by N * H * W, the number of values of a "
    "channel": lambda x, g, dout, eps: _closed_form_dx(x, g, dout, eps, count=x.shape[0]),
    "the sums in dx run over the channels (axis=1) instead of over axis=(0, 2, 3)": (
        lambda x, g, dout, eps: _closed_form_dx(x, g, dout, eps, axes=1)
    ),
    f"dout was reshaped to (-1, C) without moving the channel axis last: {_ROUTE_HINT}": (
        dx_dout_reshaped_without_transpose
    ),
    "the rows of dx were put back with reshape alone; reshape them to (N, H, W, C) and "
    "transpose with (0, 3, 1, 2)": dx_back_without_transpose,
    describe("dx without mean term", **SPATIAL_SUMS): _lifted_dx(mistakes.dx_without_mean_term),
    describe("dx without variance term", **SPATIAL_SUMS): _lifted_dx(
        mistakes.dx_without_variance_term
    ),
    describe("dx with constant statistics", **SPATIAL): _lifted_dx(
        mistakes.dx_with_constant_statistics
    ),
    describe("dx without gamma"): _lifted_dx(mistakes.dx_without_gamma),
    "the backward uses the unbiased variance (N*H*W - 1); the forward divides by N*H*W": (
        _lifted_dx(mistakes.dx_with_unbiased_variance)
    ),
    describe("dx without eps"): _lifted_dx(mistakes.dx_without_eps),
}
"""description -> wrong dx(x, gamma, dout, eps) of 4-D x and dout."""


def backward_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx (N, C, H, W), dgamma and dbeta (C,) on ``case``."""
    x, gamma, dout, eps = case.x, case.gamma, case.dout, case.eps
    c = x.shape[1]
    with np.errstate(all="ignore"):
        wrong_dx = {d: f(x, gamma, dout, eps) for d, f in DX_MISTAKES.items()}
        x_hat = (x - x.mean(axis=CHANNEL_AXES, keepdims=True)) / np.sqrt(
            x.var(axis=CHANNEL_AXES, keepdims=True) + eps
        )
    sum_dout, sum_dout_x_hat = dout.sum(axis=CHANNEL_AXES), (dout * x_hat).sum(axis=CHANNEL_AXES)
    scrambled = "was summed after reshape(-1, C) without moving the channel axis last"
    return {
        "dx": wrong_dx,
        "dgamma": {
            describe("dgamma is sum(dout)"): sum_dout,
            describe("dgamma uses x", over=" over (0, 2, 3)"): (dout * x).sum(axis=CHANNEL_AXES),
            f"dgamma {scrambled}": (dout * x_hat).reshape(-1, c).sum(axis=0),
            "dgamma averages over the positions; it is the sum over (0, 2, 3)": (
                (dout * x_hat).mean(axis=(2, 3)).sum(axis=0)
            ),
        },
        "dbeta": {
            describe("dbeta is sum(dout * x_hat)"): sum_dout_x_hat,
            describe("dbeta averages", axes="(0, 2, 3)"): dout.mean(axis=CHANNEL_AXES),
            f"dbeta {scrambled}": dout.reshape(-1, c).sum(axis=0),
        },
    }


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
        f"x was reshaped to (-1, C) without moving the channel axis last: {_ROUTE_HINT}": (
            case.x.reshape(-1, c)
        ),
        "the rows hold positions in the order (n, w, h); the docstring asks for n, then h, "
        "then w: transpose with (0, 2, 3, 1)": case.x.transpose(0, 3, 2, 1).reshape(-1, c),
    }
    err_rows = assert_close("rows", rows, expected, mistakes=wrong_rows)
    given = expected.copy()
    back = call_without_torch(rows_to_channels, given, case.x.shape, name=_name(rows_to_channels))
    assert_unchanged(expected, given, _name(rows_to_channels), "rows")
    wrong_back = {
        "the rows were put back with reshape alone; reshape them to (N, H, W, C) and transpose "
        "with (0, 3, 1, 2)": expected.reshape(case.x.shape),
    }
    return max(err_rows, assert_close("rows_to_channels(rows)", back, case.x, mistakes=wrong_back))


def check_channel_rows(channels_to_rows: Callable, rows_to_channels: Callable) -> None:
    """Visible check of the (N, C, H, W) <-> (N*H*W, C) conversions on the small case."""
    err = on_cases([visible_case()], lambda c: _layout_error(channels_to_rows, rows_to_channels, c))
    report_line(f"{_name(channels_to_rows)} and {_name(rows_to_channels)}", err)


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
    try:
        _, cache = _checked_forward(forward, case)
    except CheckFailure as failure:
        raise CheckFailure(
            f"fix {_name(forward)} first: the backward is checked on the cache your forward "
            f"makes. {failure}"
        ) from None
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


def check_spatial_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of a spatial backward ``(dout, cache) -> (dx, dgamma, dbeta)`` on the
    small case, with the cache made by ``forward``."""
    _check_backward_on(backward, forward, [visible_case()], "")


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


def check_spatial_backward_direct(backward: Callable, forward: Callable) -> None:
    """``check_spatial_backward`` for route 2, with the functions of ``ROUTE_1`` refused."""
    with names_refused((backward, forward), ROUTE_1, ROUTE_2_RULE):
        check_spatial_backward(backward, forward)
