"""Lesson 07's variants (LayerNorm, InstanceNorm, GroupNorm, RMSNorm) and their PyTorch
references."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from utils import reference
from utils.cases import Case
from utils.mistakes import catalogue
from utils.mistakes.catalogue import Sets


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


@dataclass(frozen=True)
class VariantCase(Case):
    """A case with the number of groups GroupNorm needs (0 for the other variants)."""

    num_groups: int = 0


# --- the variants and their PyTorch references ------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One normalization layer, as the checks need it.

    prefix: the contract's function names (``<prefix>_forward``, ``<prefix>_backward``).
    sets: which entries share one statistic and where gamma runs (``utils.mistakes.catalogue``;
    GroupNorm's number of groups comes from each case, ``sets_for``). form: the oracle's name
    for it (``utils.reference``). parameter_axes: in words, what dgamma sums over.
    default_eps: the contract's default eps.
    """

    prefix: str
    sets: Sets
    form: str
    parameter_axes: str
    default_eps: float = 1e-5

    @property
    def center(self) -> bool:
        """Whether the mean is subtracted."""
        return self.sets.center

    @property
    def param_axis(self) -> int:
        """The axis of x that gamma runs along."""
        return self.sets.param_axis

    @property
    def has_beta(self) -> bool:
        """RMSNorm, the one variant that does not center, is also the one without beta."""
        return self.center

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return ("dx", "dgamma", "dbeta") if self.has_beta else ("dx", "dgamma")

    def sets_for(self, case: Case) -> Sets:
        """``sets`` on ``case`` (GroupNorm: with the case's num_groups)."""
        groups = getattr(case, "num_groups", 0)
        return dataclasses.replace(self.sets, groups=groups) if self.form == "group" else self.sets

    def view(self, x: np.ndarray, case: Case) -> tuple[np.ndarray, tuple[int, ...]]:
        """(x reshaped, axes): each set of entries sharing one statistic lies along axes."""
        return self.sets_for(case).view(x)

    def expand(self, p: np.ndarray, ndim: int) -> np.ndarray:
        """gamma or beta shaped to broadcast on an x of ``ndim`` axes."""
        return self.sets.expand(p, ndim)

    def parameter_sum(self, values: np.ndarray) -> np.ndarray:
        """values (shaped like x) summed over every axis but ``param_axis``: shape (D,)."""
        return self.sets.parameter_sum(values)

    def arguments(self, x, gamma, beta, case: Case) -> tuple:
        """The positional arguments of this variant's forward for ``case``."""
        params = (gamma, beta) if self.has_beta else (gamma,)
        groups = (case.num_groups,) if self.prefix == "groupnorm" else ()
        return (x, *params, *groups, case.eps)


LAYERNORM = Variant(
    prefix="layernorm",
    sets=catalogue.LAYER,
    form="layer",
    parameter_axes="every axis but the last",
)
INSTANCENORM = Variant(
    prefix="instancenorm",
    sets=catalogue.INSTANCE,
    form="instance",
    parameter_axes="axis=(0, 2, 3)",
)
GROUPNORM = Variant(
    prefix="groupnorm",
    sets=catalogue.group_sets(0),
    form="group",
    parameter_axes="axis=(0, 2, 3)",
)
RMSNORM = Variant(
    prefix="rmsnorm",
    sets=catalogue.RMS,
    form="rms",
    parameter_axes="every axis but the last",
    default_eps=1e-6,
)


def forward_reference(variant: Variant, case: Case) -> np.ndarray:
    """PyTorch's output of ``variant`` on ``case`` (float64, shaped like x)."""
    return reference.normalize_reference(
        variant.form, case.x, case.gamma, case.beta, case.eps, case.num_groups
    )


def gradients_reference(variant: Variant, case: Case) -> tuple[np.ndarray, ...]:
    """Autograd gradients of ``sum(forward(x, gamma[, beta]) * dout)`` on ``case``:
    (dx, dgamma, dbeta), or (dx, dgamma) for RMSNorm."""
    return reference.normalize_gradients_reference(
        variant.form, case.x, case.gamma, case.beta, case.dout, case.eps, case.num_groups
    )
