"""Lesson 07's known-wrong variants (numpy), keyed by a description completing
"it looks like ..."."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from utils.cases import Case
from utils.checks.variants.forms import Variant, VariantCase, _groups
from utils.diagnose import TIGHT, CheckFailure, as_float_array
from utils.gradcheck import relative_error
from utils.mistakes import describe, standardize

# --- known-wrong variants (numpy), keyed by a description completing "it looks like ..." -----


def _normalized(variant: Variant, case: Case, **options) -> np.ndarray:
    """x standardized over the variant's sets (with ``standardize``'s switches)."""
    view, axes = variant.view(case.x, case)
    options.setdefault("center", variant.center)
    eps = options.pop("eps", case.eps)
    return standardize(view, axes, eps, **options).reshape(case.x.shape)


def _affine(variant: Variant, x_hat, case: Case, gamma=None, beta=None) -> np.ndarray:
    gamma = case.gamma if gamma is None else gamma
    beta = case.beta if beta is None else beta
    out = variant.expand(gamma, x_hat.ndim) * x_hat
    return out + variant.expand(beta, x_hat.ndim) if variant.has_beta else out


def _with(**options) -> Callable:
    """The forward over the right sets, with some of ``standardize``'s mistake switches."""
    return lambda variant, case: _affine(variant, _normalized(variant, case, **options), case)


def _over(axes) -> Callable:
    """The forward with the statistics over ``axes`` of x itself (None: the whole array)."""

    def forward(variant: Variant, case: Case) -> np.ndarray:
        return _affine(variant, standardize(case.x, axes, case.eps, center=variant.center), case)

    return forward


def _per_sample(variant: Variant, case: Case) -> np.ndarray:
    """Each sample standardized over all its axes (only differs from layer norm for ndim > 2)."""
    return _over(tuple(range(1, case.x.ndim)))(variant, case)


def _default_eps(variant: Variant, case: Case) -> np.ndarray:
    return _with(eps=variant.default_eps)(variant, case)


def _parameters_swapped(variant: Variant, case: Case) -> np.ndarray:
    return _affine(variant, _normalized(variant, case), case, case.beta, case.gamma)


def _without_affine(variant: Variant, case: Case) -> np.ndarray:
    return _normalized(variant, case)


def _affine_along_width(variant: Variant, case: Case) -> np.ndarray | None:
    """gamma (C,) times a 4-D x_hat broadcasts along W; it only runs when W == C."""
    if case.x.shape[3] != case.x.shape[1]:
        return None
    return case.gamma * _normalized(variant, case) + case.beta


def _interleaved_groups(variant: Variant, case: VariantCase) -> np.ndarray:
    """Channel c in group c % G: the reshape (N, C/G, G, H, W) and statistics over (1, 3, 4)."""
    n, c, h, w = case.x.shape
    view = case.x.reshape(n, c // case.num_groups, case.num_groups, h, w)
    return _affine(variant, standardize(view, (1, 3, 4), case.eps).reshape(case.x.shape), case)


def _per_group_affine(variant: Variant, case: VariantCase) -> np.ndarray:
    """Every channel of group g scaled by gamma[g] and shifted by beta[g]."""
    group_of_channel = np.arange(case.x.shape[1]) // (case.x.shape[1] // case.num_groups)
    gamma, beta = case.gamma[group_of_channel], case.beta[group_of_channel]
    return _affine(variant, _normalized(variant, case), case, gamma, beta)


def _groups_counted(count: Callable[[int, int], int]) -> Callable:
    """GroupNorm with the number of groups replaced by count(C, num_groups)."""

    def forward(variant: Variant, case: VariantCase) -> np.ndarray:
        groups = count(case.x.shape[1], case.num_groups)
        return _with()(variant, dataclasses.replace(case, num_groups=groups))

    return forward


def _group_statistics_per_position(variant: Variant, case: VariantCase) -> np.ndarray:
    n, c, h, w = case.x.shape
    view = case.x.reshape(n, case.num_groups, c // case.num_groups, h, w)
    return _affine(variant, standardize(view, (2,), case.eps).reshape(case.x.shape), case)


def _group_statistics_with_batch(variant: Variant, case: VariantCase) -> np.ndarray:
    view, _ = _groups(case.x, case)
    return _affine(variant, standardize(view, (0, 2), case.eps).reshape(case.x.shape), case)


VARIANT = {"v": "mean square", "what": "the result", "default": "the default"}
"""The words of lesson 07 for ``utils.mistakes.describe``."""

_UNBIASED = {
    "the variance is the unbiased one (ddof=1); normalization layers divide by the number "
    "of values in the set (the biased variance)": _with(ddof=1),
}
_EPS_MISTAKES = {
    describe("eps outside sqrt", **VARIANT): _with(eps_outside=True),
    describe("eps missing", **VARIANT): _with(eps=0.0),
    describe("no square root", **VARIANT): _with(root=False),
    describe("eps fixed", **VARIANT): _default_eps,
}
_AFFINE_MISTAKES = {
    describe("gamma beta swapped"): _parameters_swapped,
    describe("no affine"): _without_affine,
}
_CHANNEL_AFFINE = {
    describe("affine along width"): _affine_along_width,
}

FORWARD_MISTAKES: dict[str, dict[str, Callable]] = {
    "layernorm": {
        "the statistics are taken over the batch axis (axis=0): that is batch norm; layer norm "
        "takes them per sample over the last axis (axis=-1)": _over((0,)),
        "the statistics are taken over the whole array; layer norm takes them per sample over "
        "the last axis (axis=-1)": _over(None),
        "each sample is normalized over all its axes; layer norm normalizes over the last axis "
        "only (one mean per row, or per token)": _per_sample,
        "the statistics are taken over axis=1; layer norm takes them over the last axis "
        "(axis=-1), which is axis 1 only for 2-D input": _over((1,)),
        "the mean is not subtracted (that is RMSNorm); layer norm centers each row first": _with(
            center=False
        ),
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
    },
    "instancenorm": {
        "the statistics run over the batch too, axis=(0, 2, 3): that is batch norm; instance "
        "norm takes them per sample and channel, axis=(2, 3)": _over((0, 2, 3)),
        "the statistics are taken per sample over all channels, axis=(1, 2, 3): that is layer "
        "norm; instance norm takes them per channel, axis=(2, 3)": _over((1, 2, 3)),
        "the statistics are taken over the whole array; instance norm uses axis=(2, 3)": _over(
            None
        ),
        "the statistics run over one spatial axis only; a map's statistics run over both, "
        "axis=(2, 3)": _over((3,)),
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
        **_CHANNEL_AFFINE,
    },
    "groupnorm": {
        "the groups are interleaved (channel c in group c % G); group g holds the contiguous "
        "channels g*C/G to (g+1)*C/G - 1, as x.reshape(N, G, -1) gives them": _interleaved_groups,
        "the affine is per group (gamma[g], beta[g] for every channel of group g); gamma and "
        "beta have one value per channel": _per_group_affine,
        "num_groups was used as the number of channels per group; it is the number of groups, "
        "x.reshape(N, num_groups, -1)": _groups_counted(lambda c, g: c // g),
        "the statistics are taken over all channels at once (num_groups ignored, as if it "
        "were 1: layer norm)": _groups_counted(lambda c, g: 1),
        "each channel is normalized on its own (num_groups ignored, as if it were C: instance "
        "norm)": _groups_counted(lambda c, g: c),
        "the group statistics leave out the positions (one mean per group and position); a "
        "group's statistics run over its channels and all H * W positions": (
            _group_statistics_per_position
        ),
        "the group statistics include the batch axis; each sample has its own": (
            _group_statistics_with_batch
        ),
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
        **_CHANNEL_AFFINE,
    },
    "rmsnorm": {
        "the mean is subtracted (that is layer norm); RMSNorm divides x itself by its root "
        "mean square": _with(center=True),
        "the root mean square is taken over the batch axis (axis=0); RMSNorm takes it per "
        "row over the last axis": _over((0,)),
        "the root mean square is taken over the whole array; RMSNorm takes it per row over "
        "the last axis (axis=-1)": _over(None),
        "the squares are summed instead of averaged: sqrt(mean(x**2) + eps), not "
        "sqrt(sum(x**2) + eps)": _with(average=False),
        **_EPS_MISTAKES,
        "gamma is not applied: out = gamma * x / rms": _without_affine,
    },
}
"""variant prefix -> description -> wrong forward(variant, case) (None where it cannot run)."""


def _distinct(wrong: dict, expected: np.ndarray) -> dict[str, np.ndarray]:
    """The variants that can run and fail against ``expected`` on this case: one that would
    pass here (say, instance norm's layer-norm variant with C = 1) must not name a mistake.
    The bar is TIGHT, not MATCH: RMSNorm's eps outside the root is off by only ~4e-7."""
    return {
        d: a for d, a in wrong.items() if a is not None and not relative_error(a, expected) <= TIGHT
    }


def _plausible(wrong: dict, got: np.ndarray, expected: np.ndarray) -> dict[str, np.ndarray]:
    """The known-wrong results that ``got`` is nearer to than to ``expected``: a result that is
    merely imprecise (float32, say) must not be told it made a mistake that differs from the
    reference by less than its own error (RMSNorm without eps is off by only ~4e-7)."""
    err = relative_error(got, expected)
    return {d: a for d, a in wrong.items() if relative_error(got, a) < err}


def _float64(value, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``as_float_array``, refusing a lower-precision float first: float32 keeps about 7
    digits, so it cannot reach TIGHT, and its error would look like some known mistake."""
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize < 8:
        raise CheckFailure(
            f"{what} has dtype {dtype}, which keeps only about 7 significant digits; compute "
            "and return float64 (the inputs are float64: leave out astype(np.float32))."
        )
    return as_float_array(value, what, shape)


def forward_mistakes(variant: Variant, case: Case) -> dict[str, np.ndarray]:
    """Every known-wrong output of ``variant`` on ``case`` that can be computed."""
    with np.errstate(all="ignore"):  # a wrong variant may divide by zero
        wrong = {d: f(variant, case) for d, f in FORWARD_MISTAKES[variant.prefix].items()}
    return {d: a for d, a in wrong.items() if a is not None}


def closed_form_dx(
    variant: Variant,
    case: Case,
    *,
    with_gamma: bool = True,
    mean_term: bool | None = None,
    variance_term: bool = True,
    sum_axes: tuple[int, ...] | None = None,
    ddof: int = 0,
    eps_in_scale: bool = True,
) -> np.ndarray:
    """dx = s * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) over each set (no mean
    term when nothing is centered), with switches for the classic backward mistakes: gamma
    forgotten, a term dropped, the sums over other axes (of the variant's view), the variance
    term divided by (m - ddof), eps missing from the scale s."""
    mean_term = variant.center if mean_term is None else mean_term
    dx_hat = case.dout * variant.expand(case.gamma, case.x.ndim) if with_gamma else case.dout
    view, axes = variant.view(case.x, case)
    d, _ = variant.view(dx_hat, case)
    centered = view - view.mean(axis=axes, keepdims=True) if variant.center else view
    second = (centered**2).mean(axis=axes, keepdims=True)
    x_hat = centered / np.sqrt(second + case.eps)
    scale = 1 / np.sqrt(second + case.eps) if eps_in_scale else 1 / np.sqrt(second)
    sum_axes = axes if sum_axes is None else sum_axes
    m = int(np.prod([view.shape[a] for a in sum_axes]))
    dx = d
    if mean_term:
        dx = dx - d.sum(axis=sum_axes, keepdims=True) / m
    if variance_term:
        dx = dx - x_hat * (d * x_hat).sum(axis=sum_axes, keepdims=True) / (m - ddof)
    return (scale * dx).reshape(case.x.shape)


_DX_MISTAKES = {
    "dx is missing the mean term (the -mean(dx_hat) over each set, which flows through the mean)": {
        "mean_term": False
    },
    "dx is missing the variance term (the -x_hat * mean(dx_hat * x_hat) over each set, which "
    "flows through the variance)": {"variance_term": False},
    "the statistics are treated as constants (dx = gamma * dout / sqrt(var + eps)); they "
    "depend on x too": {"mean_term": False, "variance_term": False},
    describe("dx without gamma"): {"with_gamma": False},
    describe("dx with unbiased variance", m="m"): {"ddof": 1},
    describe("dx without eps"): {"eps_in_scale": False},
}
DX_MISTAKES: dict[str, dict[str, dict]] = {
    "layernorm": {
        **_DX_MISTAKES,
        "the sums in dx run over the batch axis (axis=0), as in batch norm; for layer norm "
        "they run over the last axis": {"sum_axes": (0,)},
    },
    "instancenorm": {
        **_DX_MISTAKES,
        "the sums in dx run over axis=(0, 2, 3), as in batch norm; for instance norm they run "
        "over each map, axis=(2, 3)": {"sum_axes": (0, 2, 3)},
    },
    "groupnorm": {
        **_DX_MISTAKES,
        "the sums in dx run over the batch too; they run over each group of each sample": {
            "sum_axes": (0, 2)
        },
    },
    "rmsnorm": {
        "dx has a mean term (-mean(dx_hat)), as in layer norm; RMSNorm subtracts no mean, so "
        "there is none": {"mean_term": True},
        "dx is missing the term through the root mean square (-x_hat * mean(dx_hat * x_hat))": {
            "variance_term": False
        },
        describe("dx without gamma"): {"with_gamma": False},
        "the sums in dx run over the batch axis (axis=0); they run over the last axis": {
            "sum_axes": (0,)
        },
        describe("dx without eps", v="mean(x**2)", instead="1 / sqrt(mean(x**2) + eps)"): {
            "eps_in_scale": False
        },
    },
}
"""variant prefix -> description -> the switches of ``closed_form_dx`` that make the mistake."""


def backward_mistakes(variant: Variant, case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma (and dbeta) of ``variant`` on ``case``."""
    with np.errstate(all="ignore"):  # a wrong variant may divide by zero
        wrong_dx = {
            d: closed_form_dx(variant, case, **switches)
            for d, switches in DX_MISTAKES[variant.prefix].items()
        }
        x_hat = _normalized(variant, case)
    where = variant.parameter_axes
    sum_dout = variant.parameter_sum(case.dout)
    sum_dout_x_hat = variant.parameter_sum(case.dout * x_hat)
    count = case.dout.size // case.gamma.size
    wrong = {
        "dx": wrong_dx,
        "dgamma": {
            describe("dgamma is sum(dout)", **({} if variant.has_beta else {"swapped": ""})): (
                sum_dout
            ),
            describe("dgamma uses x", x_hat="the normalized x", over=f" over {where}"): (
                variant.parameter_sum(case.dout * case.x)
            ),
            f"dgamma averages; it is the sum over {where}": sum_dout_x_hat / count,
        },
    }
    if variant.has_beta:
        wrong["dbeta"] = {
            describe("dbeta is sum(dout * x_hat)"): sum_dout_x_hat,
            describe("dbeta averages", axes=where): sum_dout / count,
        }
    return wrong
