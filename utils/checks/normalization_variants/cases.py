"""Lesson 07's visible cases and the case builder the hidden ones
(``utils.checks.hidden.normalization_variants``) share."""

from __future__ import annotations

import dataclasses

import numpy as np

from utils.cases import NEAR_CONSTANT_STD, make_case
from utils.checks.normalization_variants.forms import Variant, VariantCase

# --- cases -------------------------------------------------------------------------------------

VISIBLE = {
    "layernorm": ((4, 5), 0),
    "instancenorm": ((2, 3, 2, 2), 0),
    "groupnorm": ((2, 6, 2, 2), 3),
    "rmsnorm": ((4, 5), 0),
}
"""prefix -> (shape, num_groups) of the visible case."""


INDIVISIBLE = ((2, 6, 1, 2), 4)
"""x shape and num_groups that GroupNorm must refuse (6 channels, 4 groups), although
x.reshape(N, 4, -1) runs."""


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


def _groups_label(num_groups: int) -> str:
    return f", num_groups={num_groups}" if num_groups else ""
