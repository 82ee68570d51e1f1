"""Lesson 07's variants (LayerNorm, InstanceNorm, GroupNorm, RMSNorm) and their PyTorch
references."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from utils import reference
from utils.cases import Case


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


@dataclass(frozen=True)
class VariantCase(Case):
    """A case with the number of groups GroupNorm needs (0 for the other variants)."""

    num_groups: int = 0


# --- the variants and their PyTorch references ------------------------------------------------


def _last_axis(x: np.ndarray, case: Case) -> tuple[np.ndarray, tuple[int, ...]]:
    return x, (x.ndim - 1,)


def _spatial_axes(x: np.ndarray, case: Case) -> tuple[np.ndarray, tuple[int, ...]]:
    return x, (2, 3)


def _groups(x: np.ndarray, case: VariantCase) -> tuple[np.ndarray, tuple[int, ...]]:
    return x.reshape(x.shape[0], case.num_groups, -1), (2,)


def _along_last(p: np.ndarray, ndim: int) -> np.ndarray:
    return p


def _along_channels(p: np.ndarray, ndim: int) -> np.ndarray:
    return p.reshape(1, -1, 1, 1)


@dataclass(frozen=True)
class Variant:
    """One normalization layer, as the checks need it.

    prefix: the contract's function names (``<prefix>_forward``, ``<prefix>_backward``).
    view(x, case) -> (array, axes): x reshaped so that each set of entries sharing one
    statistic lies along ``axes``. expand(p, ndim): gamma or beta shaped to broadcast on x.
    center: whether the mean is subtracted. form: the oracle's name for it (``utils.reference``).
    param_axis: the axis gamma runs along; parameter_axes: in words, what dgamma sums over.
    default_eps: the contract's default eps.
    """

    prefix: str
    view: Callable
    expand: Callable
    center: bool
    form: str
    param_axis: int
    parameter_axes: str
    default_eps: float = 1e-5

    @property
    def has_beta(self) -> bool:
        """RMSNorm, the one variant that does not center, is also the one without beta."""
        return self.center

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return ("dx", "dgamma", "dbeta") if self.has_beta else ("dx", "dgamma")

    def parameter_sum(self, values: np.ndarray) -> np.ndarray:
        """values (shaped like x) summed over every axis but ``param_axis``: shape (D,)."""
        keep = self.param_axis % values.ndim
        return values.sum(axis=tuple(a for a in range(values.ndim) if a != keep))

    def arguments(self, x, gamma, beta, case: Case) -> tuple:
        """The positional arguments of this variant's forward for ``case``."""
        params = (gamma, beta) if self.has_beta else (gamma,)
        groups = (case.num_groups,) if self.prefix == "groupnorm" else ()
        return (x, *params, *groups, case.eps)


LAYERNORM = Variant(
    prefix="layernorm",
    view=_last_axis,
    expand=_along_last,
    center=True,
    form="layer",
    param_axis=-1,
    parameter_axes="every axis but the last",
)
INSTANCENORM = Variant(
    prefix="instancenorm",
    view=_spatial_axes,
    expand=_along_channels,
    center=True,
    form="instance",
    param_axis=1,
    parameter_axes="axis=(0, 2, 3)",
)
GROUPNORM = Variant(
    prefix="groupnorm",
    view=_groups,
    expand=_along_channels,
    center=True,
    form="group",
    param_axis=1,
    parameter_axes="axis=(0, 2, 3)",
)
RMSNORM = Variant(
    prefix="rmsnorm",
    view=_last_axis,
    expand=_along_last,
    center=False,
    form="rms",
    param_axis=-1,
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
