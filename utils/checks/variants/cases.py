"""Lesson 07's visible and hidden cases."""

from __future__ import annotations

import dataclasses

import numpy as np

from utils.cases import LARGE_OFFSET, NEAR_CONSTANT_STD, make_case
from utils.checks.variants.forms import Variant, VariantCase

# --- cases -------------------------------------------------------------------------------------

VISIBLE = {
    "layernorm": ((4, 5), 0),
    "instancenorm": ((2, 3, 2, 2), 0),
    "groupnorm": ((2, 6, 2, 2), 3),
    "rmsnorm": ((4, 5), 0),
}
"""prefix -> (shape, num_groups) of the visible case."""

HIDDEN = {
    "layernorm": [
        ((4, 5), 0),
        ((1, 6), 0),  # a batch of one: legal, each row has its own statistics
        ((3, 1), 0),  # D = 1: every x_hat is 0, out = beta (PyTorch agrees)
        ((2, 3, 4), 0),  # (batch, tokens, features), as in a transformer
        ((2, 2, 2, 3), 0),
    ],
    "instancenorm": [
        ((2, 3, 2, 3), 0),  # W == C: gamma (C,) broadcast along W runs without an error
        ((1, 2, 3, 3), 0),  # a batch of one
        ((3, 1, 2, 2), 0),  # a single channel
        ((2, 2, 1, 3), 0),  # H = 1
    ],
    "groupnorm": [
        ((2, 6, 2, 3), 3),
        ((1, 4, 2, 3), 2),  # a batch of one
        ((2, 4, 2, 2), 4),  # G = C: instance norm
        ((3, 4, 2, 1), 1),  # G = 1: layer norm over (C, H, W)
        ((2, 6, 1, 1), 2),  # 1 x 1 maps: a group still has C/G values
        ((2, 4, 1, 4), 2),  # W == C
    ],
    "rmsnorm": [
        ((4, 5), 0),
        ((1, 6), 0),
        ((3, 1), 0),  # D = 1: out = gamma * x / sqrt(x**2 + eps)
        ((2, 3, 4), 0),
    ],
}
"""prefix -> [(shape, num_groups)] of the random hidden cases."""

SPECIAL = {
    "layernorm": ((4, 5), 0, "a near-constant row (variance ~1e-7)"),
    "instancenorm": ((2, 3, 3, 2), 0, "a near-constant map (variance ~1e-7)"),
    "groupnorm": ((2, 6, 3, 2), 3, "a near-constant group (variance ~1e-7)"),
    "rmsnorm": ((4, 5), 0, "a near-zero row (mean square ~1e-7, below eps)"),
}
"""prefix -> (shape, num_groups, label of the quiet set) of the special hidden cases."""

INDIVISIBLE = ((2, 6, 1, 2), 4)
"""x shape and num_groups that GroupNorm must refuse (6 channels, 4 groups), although
x.reshape(N, 4, -1) runs."""
INDIVISIBLE_HIDDEN = (((1, 4, 2, 2), 8), ((3, 9, 2, 2), 6))
"""More channel counts to refuse: more groups than channels (the reshape still runs), and a
num_groups that shares a factor with C without dividing it."""


def _case(variant: Variant, shape, num_groups: int, seed: int, label: str, **options):
    eps = options.pop("eps", variant.default_eps)
    base = make_case(shape, seed, label, param_axis=variant.param_axis, eps=eps, **options)
    return VariantCase(**vars(base), num_groups=num_groups)


def _with_quiet_set(variant: Variant, case: VariantCase, seed: int) -> VariantCase:
    """``case`` whose first set (first row, map or group) barely varies; for RMSNorm, whose
    first row is near zero, so that eps dominates its mean square."""
    x = case.x.copy()
    view, axes = variant.view(x, case)
    first = view[(0,) * (view.ndim - len(axes))]  # the sets lie along the trailing axes
    noise = NEAR_CONSTANT_STD * np.random.default_rng(seed).normal(size=first.shape)
    first[...] = (first.mean() if variant.center else 0.0) + noise
    return dataclasses.replace(case, x=x)


def visible_case(variant: Variant) -> VariantCase:
    """The small fixed case of the visible checks."""
    shape, groups = VISIBLE[variant.prefix]
    return _case(variant, shape, groups, 2015, f"visible case, x of shape {shape}")


def hidden_cases(variant: Variant, seed: int = 70_707) -> list[VariantCase]:
    """The random hidden cases, then on the special shape: gamma/beta far from 1/0, a large
    offset, a quiet set, an F-ordered and a strided x, and a non-default eps."""
    cases = [
        _case(variant, shape, g, seed + i, f"random x of shape {shape}" + _groups_label(g))
        for i, (shape, g) in enumerate(HIDDEN[variant.prefix])
    ]
    shape, groups, quiet = SPECIAL[variant.prefix]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}),
        (f"large mean offset ({LARGE_OFFSET:g})", {"offset": LARGE_OFFSET}),
        (quiet, {}),
        ("non-contiguous x (a transposed view)", {"layout": "transposed"}),
        ("non-contiguous x (every other column of a wider array)", {"layout": "strided"}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}),
    ]
    for k, (label, options) in enumerate(special, start=len(cases)):
        case = _case(variant, shape, groups, seed + k, label + _groups_label(groups), **options)
        cases.append(_with_quiet_set(variant, case, seed + k) if label == quiet else case)
    return cases


def _groups_label(num_groups: int) -> str:
    return f", num_groups={num_groups}" if num_groups else ""
