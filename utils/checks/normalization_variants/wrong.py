"""Lesson 07's known-wrong variants (numpy), keyed by a description completing
"it looks like ..."."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from utils.cases import Case
from utils.checks.normalization_variants.forms import Variant
from utils.diagnose import TIGHT, CheckFailure, as_float_array
from utils.gradcheck import relative_error
from utils.mistakes import catalogue, describe
from utils.mistakes.catalogue import (
    PER_SAMPLE,
    WHOLE,
    Sets,
    standardize,
    wrong_affine,
    wrong_forward,
)

# --- known-wrong variants (numpy), keyed by a description completing "it looks like ..." -----
# GroupNorm's own mistakes, with ``catalogue.wrong_forward``'s signature (sets: the group sets).


def _interleaved_groups(sets: Sets, x, gamma, beta, eps) -> np.ndarray:
    """Channel c in group c % G: the reshape (N, C/G, G, H, W) and statistics over (1, 3, 4)."""
    n, c, h, w = x.shape
    view = x.reshape(n, c // sets.groups, sets.groups, h, w)
    return wrong_affine(sets, standardize(view, (1, 3, 4), eps).reshape(x.shape), gamma, beta)


def _per_group_affine(sets: Sets, x, gamma, beta, eps) -> np.ndarray:
    """Every channel of group g scaled by gamma[g] and shifted by beta[g]."""
    group_of_channel = np.arange(x.shape[1]) // (x.shape[1] // sets.groups)
    return wrong_forward(sets, x, gamma[group_of_channel], beta[group_of_channel], eps)


def _groups_counted(count: Callable[[int, int], int]) -> Callable:
    """GroupNorm with the number of groups replaced by count(C, num_groups)."""

    def forward(sets: Sets, x, gamma, beta, eps) -> np.ndarray:
        groups = count(x.shape[1], sets.groups)
        return wrong_forward(dataclasses.replace(sets, groups=groups), x, gamma, beta, eps)

    return forward


def _group_statistics_over(view_of: Callable, axes: tuple[int, ...]) -> Callable:
    """GroupNorm with each group's statistics over ``axes`` of ``view_of(sets, x)``."""

    def forward(sets: Sets, x, gamma, beta, eps) -> np.ndarray:
        x_hat = standardize(view_of(sets, x), axes, eps).reshape(x.shape)
        return wrong_affine(sets, x_hat, gamma, beta)

    return forward


def _channels_in_groups(sets: Sets, x) -> np.ndarray:
    """x (N, C, H, W) as (N, G, C/G, H, W)."""
    n, c, h, w = x.shape
    return x.reshape(n, sets.groups, c // sets.groups, h, w)


VARIANT = {"v": "mean square", "what": "the result", "default": "the default"}
"""The words of lesson 07 for ``utils.mistakes.describe``."""


def _eps_mistakes(default_eps: float) -> dict[str, dict]:
    return {
        describe("eps outside sqrt", **VARIANT): {"spread": "sqrt(v) + eps"},
        describe("eps missing", **VARIANT): {"eps": 0.0},
        describe("no square root", **VARIANT): {"spread": "v + eps"},
        describe("eps fixed", **VARIANT): {"eps": default_eps},
    }


_UNBIASED = {describe("unbiased variance, sets"): {"ddof": 1}}
_EPS_MISTAKES = _eps_mistakes(1e-5)
_AFFINE_MISTAKES = {
    describe("gamma beta swapped"): {"affine": "beta * x_hat + gamma"},
    describe("no affine"): {"affine": "x_hat"},
}
_CHANNEL_AFFINE = {describe("affine along width"): {"affine": "along the last axis"}}

FORWARD_MISTAKES: dict[str, dict[str, dict | Callable]] = {
    "layernorm": {
        describe("layer over the batch"): {"over": (0,)},
        describe("layer over everything"): {"over": WHOLE},
        describe("layer per sample"): {"over": PER_SAMPLE},
        describe("layer over axis 1"): {"over": (1,)},
        describe("layer not centered"): {"center": False},
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
    },
    "instancenorm": {
        describe("instance over the batch"): {"over": (0, 2, 3)},
        describe("instance over the channels"): {"over": (1, 2, 3)},
        describe("instance over everything"): {"over": WHOLE},
        describe("instance over one spatial axis"): {"over": (3,)},
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
        **_CHANNEL_AFFINE,
    },
    "groupnorm": {
        describe("group interleaved"): _interleaved_groups,
        describe("group affine per group"): _per_group_affine,
        describe("group size as count"): _groups_counted(lambda c, g: c // g),
        describe("group of all channels"): _groups_counted(lambda c, g: 1),
        describe("group per channel"): _groups_counted(lambda c, g: c),
        describe("group per position"): _group_statistics_over(_channels_in_groups, (2,)),
        describe("group with the batch"): _group_statistics_over(
            lambda sets, x: sets.view(x)[0], (0, 2)
        ),
        **_UNBIASED,
        **_EPS_MISTAKES,
        **_AFFINE_MISTAKES,
        **_CHANNEL_AFFINE,
    },
    "rmsnorm": {
        describe("rms centered"): {"center": True},
        describe("rms over the batch"): {"over": (0,)},
        describe("rms over everything"): {"over": WHOLE},
        describe("rms squares summed"): {"average": False},
        **_eps_mistakes(1e-6),
        describe("rms no gamma"): {"affine": "x_hat"},
    },
}
"""variant prefix -> description -> the switches of ``utils.mistakes.catalogue.wrong_forward``,
or a GroupNorm mistake of this lesson's own with its signature."""


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
    return catalogue.forward_mistakes(
        variant.sets_for(case),
        case.x,
        case.gamma,
        case.beta if variant.has_beta else None,
        case.eps,
        FORWARD_MISTAKES[variant.prefix],
    )


_DX_MISTAKES = {
    describe("dx without mean term, sets"): {"mean_term": 0},
    describe("dx without variance term, sets"): {"variance_term": 0},
    describe("dx with constant statistics, sets"): {"mean_term": 0, "variance_term": 0},
    describe("dx without gamma"): {"with_gamma": False},
    describe("dx with unbiased variance", m="m"): {"ddof": 1},
    describe("dx without eps"): {"eps_in_scale": False},
}
DX_MISTAKES: dict[str, dict[str, dict]] = {
    "layernorm": {**_DX_MISTAKES, describe("layer dx over the batch"): {"sum_axes": (0,)}},
    "instancenorm": {
        **_DX_MISTAKES,
        describe("instance dx over the batch"): {"sum_axes": (0, 2, 3)},
    },
    "groupnorm": {**_DX_MISTAKES, describe("group dx over the batch"): {"sum_axes": (0, 2)}},
    "rmsnorm": {
        describe("rms dx mean term"): {"mean_term": 1},
        describe("rms dx without rms term"): {"variance_term": 0},
        describe("dx without gamma"): {"with_gamma": False},
        describe("rms dx over the batch"): {"sum_axes": (0,)},
        describe("dx without eps", v="mean(x**2)", instead="1 / sqrt(mean(x**2) + eps)"): {
            "eps_in_scale": False
        },
    },
}
"""variant prefix -> description -> the switches of ``utils.mistakes.catalogue.wrong_dx``
(sums over axes of the variant's view of x)."""


def backward_mistakes(variant: Variant, case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma (and dbeta) of ``variant`` on ``case``."""
    sets, where = variant.sets_for(case), variant.parameter_axes
    x, dout, eps = case.x, case.dout, case.eps
    picks = {
        "dgamma": {
            describe("dgamma is sum(dout)", **({} if variant.has_beta else {"swapped": ""})): (
                "sum(dout)"
            ),
            describe("dgamma uses x", x_hat="the normalized x", over=f" over {where}"): (
                "sum(dout * x)"
            ),
            describe("dgamma averages", axes=where): "mean(dout * x_hat)",
        },
    }
    if variant.has_beta:
        picks["dbeta"] = {
            describe("dbeta is sum(dout * x_hat)"): "sum(dout * x_hat)",
            describe("dbeta averages", axes=where): "mean(dout)",
        }
    dx_picks = DX_MISTAKES[variant.prefix]
    return {
        "dx": catalogue.dx_mistakes(sets, x, case.gamma, dout, eps, dx_picks),
        **{k: catalogue.parameter_mistakes(sets, x, dout, eps, p) for k, p in picks.items()},
    }
