"""Lesson 07's hidden cases and checks (the visible ones:
``utils.checks.normalization_variants``)."""

from __future__ import annotations

from collections.abc import Callable

from utils.cases import LARGE_OFFSET
from utils.checks.hidden import hidden_twin
from utils.checks.normalization_variants import (
    check_groupnorm_backward,
    check_groupnorm_forward,
    check_instancenorm_backward,
    check_instancenorm_forward,
    check_layernorm_backward,
    check_layernorm_forward,
    check_rmsnorm_backward,
    check_rmsnorm_forward,
)
from utils.checks.normalization_variants.cases import _case, _groups_label, _with_quiet_set
from utils.checks.normalization_variants.engine import _check_indivisible_groups
from utils.checks.normalization_variants.forms import (
    GROUPNORM,
    INSTANCENORM,
    LAYERNORM,
    RMSNORM,
    Variant,
    VariantCase,
    _name,
)
from utils.checks.twins import On, counted

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


INDIVISIBLE_HIDDEN = (((1, 4, 2, 2), 8), ((3, 9, 2, 2), 6))
"""More channel counts to refuse: more groups than channels (the reshape still runs), and a
num_groups that shares a factor with C without dividing it."""


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


def _hidden(variant: Variant, gradients: bool = False) -> On:
    """The hidden cases. For gradients, without rows of one feature (D = 1): layer norm's
    x_hat is exactly 0 there but roundoff (~1e-13) in PyTorch, so dgamma has no scale to be
    compared on, and RMSNorm's output is nearly flat (dx ~ eps / |x|^3), below what a
    finite difference resolves."""
    cases = hidden_cases(variant)
    if gradients and variant.param_axis == -1:
        cases = [c for c in cases if c.x.shape[-1] > 1]
    return counted(cases, " on {n} hidden cases")


check_layernorm_forward_hidden = hidden_twin(check_layernorm_forward, lambda: _hidden(LAYERNORM))
check_layernorm_backward_hidden = hidden_twin(
    check_layernorm_backward, lambda: _hidden(LAYERNORM, gradients=True)
)
check_instancenorm_forward_hidden = hidden_twin(
    check_instancenorm_forward, lambda: _hidden(INSTANCENORM)
)
check_instancenorm_backward_hidden = hidden_twin(
    check_instancenorm_backward, lambda: _hidden(INSTANCENORM)
)
check_groupnorm_forward_hidden = hidden_twin(check_groupnorm_forward, lambda: _hidden(GROUPNORM))
check_groupnorm_backward_hidden = hidden_twin(check_groupnorm_backward, lambda: _hidden(GROUPNORM))
check_rmsnorm_forward_hidden = hidden_twin(check_rmsnorm_forward, lambda: _hidden(RMSNORM))
check_rmsnorm_backward_hidden = hidden_twin(
    check_rmsnorm_backward, lambda: _hidden(RMSNORM, gradients=True)
)


def check_groupnorm_rejects_uneven_groups_hidden(forward: Callable) -> None:
    """Hidden check of the ValueError, with more groups than channels among the cases."""
    for shape, groups in INDIVISIBLE_HIDDEN:
        _check_indivisible_groups(forward, shape, groups)
    print(f"{_name(forward)} raises ValueError for every uneven split — correct")
