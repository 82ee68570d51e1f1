"""Checks for lesson 07: layer, instance, group and RMS normalization (forward and backward).

Every variant subtracts a mean (RMSNorm does not) and divides by a root mean square; they
differ in the set of entries that share one statistic. Here a ``Variant`` says which set
(``view``: x reshaped so that the set lies along ``axes``), how gamma and beta broadcast, and
which form of the oracle ``utils.reference`` (F.layer_norm, F.instance_norm, F.group_norm,
F.rms_norm, autograd) it is. The module has five sections: the variants, the
known-wrong variants used to name a mistake, the seeded cases, the generic check machinery,
and the sixteen public checks the notebook's grade cells call. As everywhere in the course,
the learner's functions run through ``call_without_torch``, gradients are compared with
autograd and with centered differences of the learner's own forward, and a failure names
the case and, where it can, the mistake.

The package holds one module per concern: ``forms`` (the variants and their PyTorch
references), ``wrong`` (the known-wrong variants), ``cases`` and ``engine`` (the machinery
the four variants share); the checks the notebook calls are here.
"""

from __future__ import annotations

from collections.abc import Callable

from utils.checks.normalization_variants.cases import (
    INDIVISIBLE,
    VISIBLE,
    visible_case,
)
from utils.checks.normalization_variants.engine import (
    _check_backward_on,
    _check_forward_on,
    _check_indivisible_groups,
    _visible,
)
from utils.checks.normalization_variants.forms import (
    GROUPNORM,
    INSTANCENORM,
    LAYERNORM,
    RMSNORM,
    Variant,
    VariantCase,
    _name,
    forward_reference,
    gradients_reference,
)
from utils.checks.normalization_variants.wrong import (
    DX_MISTAKES,
    FORWARD_MISTAKES,
    VARIANT,
    backward_mistakes,
    forward_mistakes,
)
from utils.checks.twins import On, paired

# --- checks: the ones the notebook calls -------------------------------------------------------


@paired(lambda: _visible(LAYERNORM))
def check_layernorm_forward(on: On, forward: Callable) -> None:
    """Visible check of ``layernorm_forward`` against F.layer_norm on a (4, 5) case."""
    _check_forward_on(LAYERNORM, forward, on.cases, on.label)


@paired(lambda: _visible(LAYERNORM))
def check_layernorm_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``layernorm_backward`` on the cache of ``forward``."""
    _check_backward_on(LAYERNORM, backward, forward, on.cases, on.label)


@paired(lambda: _visible(INSTANCENORM))
def check_instancenorm_forward(on: On, forward: Callable) -> None:
    """Visible check of ``instancenorm_forward`` against F.instance_norm on a (2, 3, 2, 2) case."""
    _check_forward_on(INSTANCENORM, forward, on.cases, on.label)


@paired(lambda: _visible(INSTANCENORM))
def check_instancenorm_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``instancenorm_backward`` on the cache of ``forward``."""
    _check_backward_on(INSTANCENORM, backward, forward, on.cases, on.label)


@paired(lambda: _visible(GROUPNORM))
def check_groupnorm_forward(on: On, forward: Callable) -> None:
    """Visible check of ``groupnorm_forward`` against F.group_norm (6 channels, 3 groups)."""
    _check_forward_on(GROUPNORM, forward, on.cases, on.label)


def check_groupnorm_rejects_uneven_groups(forward: Callable) -> None:
    """Visible check that ``groupnorm_forward`` raises ValueError for 6 channels in 4 groups
    (a separate requirement, graded on its own: a right forward keeps its points without it)."""
    _check_indivisible_groups(forward, *INDIVISIBLE)
    channels, groups = INDIVISIBLE[0][1], INDIVISIBLE[1]
    name = _name(forward)
    print(f"{name} raises ValueError for {channels} channels in {groups} groups — correct")


@paired(lambda: _visible(GROUPNORM))
def check_groupnorm_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``groupnorm_backward`` on the cache of ``forward``."""
    _check_backward_on(GROUPNORM, backward, forward, on.cases, on.label)


@paired(lambda: _visible(RMSNORM))
def check_rmsnorm_forward(on: On, forward: Callable) -> None:
    """Visible check of ``rmsnorm_forward`` against F.rms_norm on a (4, 5) case."""
    _check_forward_on(RMSNORM, forward, on.cases, on.label)


@paired(lambda: _visible(RMSNORM))
def check_rmsnorm_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``rmsnorm_backward`` -> (dx, dgamma) on the cache of ``forward``."""
    _check_backward_on(RMSNORM, backward, forward, on.cases, on.label)


__all__ = [
    "DX_MISTAKES",
    "FORWARD_MISTAKES",
    "GROUPNORM",
    "INDIVISIBLE",
    "INSTANCENORM",
    "LAYERNORM",
    "RMSNORM",
    "VARIANT",
    "VISIBLE",
    "Variant",
    "VariantCase",
    "backward_mistakes",
    "check_groupnorm_backward",
    "check_groupnorm_forward",
    "check_groupnorm_rejects_uneven_groups",
    "check_instancenorm_backward",
    "check_instancenorm_forward",
    "check_layernorm_backward",
    "check_layernorm_forward",
    "check_rmsnorm_backward",
    "check_rmsnorm_forward",
    "forward_mistakes",
    "forward_reference",
    "gradients_reference",
    "visible_case",
]
