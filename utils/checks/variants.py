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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from utils import reference
from utils.cases import LARGE_OFFSET, NEAR_CONSTANT_STD, Case, make_case
from utils.checks.batchnorm import STEP_PER_SPREAD
from utils.diagnose import (
    TIGHT,
    CheckFailure,
    as_float_array,
    assert_close,
    assert_default_eps,
    assert_unchanged,
    check_backward_on,
    compare_gradients,
    compare_with_differences,
    on_cases,
)
from utils.diagnose import report as report_line
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import call_without_torch
from utils.mistakes import describe, standardize


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


# --- checks: the machinery shared by the four variants ---------------------------------------


def _run_forward(variant: Variant, forward: Callable, case: Case) -> tuple[np.ndarray, object]:
    """The learner's forward on fresh copies of ``case``: (out as float64, cache)."""
    given = case.fresh()
    args = variant.arguments(given.x, given.gamma, given.beta, case)
    result = call_without_torch(forward, *args, name=_name(forward))
    assert_unchanged(case.x, given.x, _name(forward), "x")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{_name(forward)} must return a tuple (out, cache).")
    out, cache = result
    return _float64(out, "out", case.x.shape), cache


def _checked_forward(variant: Variant, forward: Callable, case: Case) -> tuple[float, object]:
    """(relative error of the learner's output against PyTorch, the learner's cache)."""
    out, cache = _run_forward(variant, forward, case)
    expected = forward_reference(variant, case)
    wrong = _plausible(_distinct(forward_mistakes(variant, case), expected), out, expected)
    return assert_close("out", out, expected, mistakes=wrong), cache


def _check_forward_on(variant: Variant, forward: Callable, cases: list, label: str) -> None:
    err = on_cases(cases, lambda c: _checked_forward(variant, forward, c)[0])
    _check_default_eps(variant, forward)
    report_line(f"{_name(forward)}{label}", err)


def _check_indivisible_groups(forward: Callable, shape: tuple, groups: int) -> None:
    """GroupNorm must refuse x of ``shape`` split into ``groups`` groups with ValueError."""
    x = np.random.default_rng(0).normal(size=shape)
    gamma, beta = np.full(shape[1], 1.5), np.full(shape[1], 0.5)
    call = f"{_name(forward)}(x of shape {shape}, gamma, beta, num_groups={groups})"
    try:
        call_without_torch(forward, x, gamma, beta, groups, 1e-5, name=_name(forward))
    except ValueError:
        return
    except Exception as exc:  # any other error is not the contract's
        raise CheckFailure(
            f"{call} raised {type(exc).__name__}: {exc}; it must raise ValueError, saying "
            "that the number of channels is not divisible by num_groups."
        ) from None
    raise CheckFailure(
        f"{call} returned a result; C = {shape[1]} is not divisible by {groups}, so it must "
        "raise ValueError with a clear message (x.reshape(N, G, -1) runs anyway, mixing "
        "channels across groups)."
    )


def _check_default_eps(variant: Variant, forward: Callable) -> None:
    """Called without eps, ``forward`` must use the contract's default (PyTorch's): every
    other call passes eps explicitly, so a wrong default would go unnoticed."""
    case = visible_case(variant)  # built with the default eps
    given = case.fresh()
    args = variant.arguments(given.x, given.gamma, given.beta, case)[:-1]
    result = call_without_torch(forward, *args, name=_name(forward))
    out = result[0] if isinstance(result, tuple) and len(result) == 2 else None
    out = _float64(out, f"out of {_name(forward)} called without eps", case.x.shape)
    assert_default_eps(_name(forward), out, forward_reference(variant, case), variant.default_eps)


def _per_parameter(variant: Variant, value, what: str, case: Case) -> np.ndarray:
    """``value`` as a float64 array shaped like gamma, or a CheckFailure reading its shape."""
    arr = _float64(value, what)
    expected = case.gamma.shape
    if arr.shape == expected:
        return arr
    ndim, keep = case.x.ndim, variant.param_axis % case.x.ndim
    hints = {tuple(1 if a != keep else expected[0] for a in range(ndim)): "the keepdims shape"}
    for count in range(1, ndim):
        for axes in combinations(range(ndim), count):
            shape = tuple(s for a, s in enumerate(case.x.shape) if a not in axes)
            hints.setdefault(shape, f"a sum over axis={axes if count > 1 else axes[0]}")
    if case.num_groups:
        hints.setdefault((case.num_groups,), "one value per group")
    hint = hints.get(arr.shape)
    extra = f" ({hint}; {what} sums over {variant.parameter_axes})" if hint else ""
    raise CheckFailure(f"{what} has shape {arr.shape}; expected {expected}{extra}.")


def _run_backward(variant: Variant, backward: Callable, case: Case, cache) -> tuple:
    dout = case.dout.copy()
    result = call_without_torch(backward, dout, cache, name=_name(backward))
    assert_unchanged(case.dout, dout, _name(backward), "dout")
    names = variant.gradient_names
    if not (isinstance(result, tuple) and len(result) == len(names)):
        raise CheckFailure(f"{_name(backward)} must return a tuple ({', '.join(names)}).")
    dx = _float64(result[0], "dx", case.x.shape)
    params = [
        _per_parameter(variant, v, n, case) for v, n in zip(result[1:], names[1:], strict=True)
    ]
    return (dx, *params)


def _smallest_spread(variant: Variant, case: Case) -> float:
    """sqrt(mean square + eps) of the quietest set: the scale a step in x is measured on."""
    view, axes = variant.view(np.array(case.x), case)
    centered = view - view.mean(axis=axes, keepdims=True) if variant.center else view
    return float(np.sqrt(np.min((centered**2).mean(axis=axes)) + case.eps))


def _finite_differences(variant: Variant, forward: Callable, case: Case) -> tuple:
    """Centered differences of ``sum(forward(...)[0] * dout)`` with respect to x, gamma (and
    beta). Each lambda perturbs its own argument, never a captured array."""
    given = case.fresh()
    x, gamma, beta = given.x, given.gamma, given.beta

    def out(x_, gamma_, beta_):
        return forward(*variant.arguments(x_, gamma_, beta_, case))[0]

    h_x = STEP_PER_SPREAD * min(1.0, _smallest_spread(variant, case))
    grads = [
        numerical_gradient(lambda x_: out(x_, gamma, beta), x, case.dout, h_x),
        numerical_gradient(lambda g_: out(x, g_, beta), gamma, case.dout),
    ]
    if variant.has_beta:
        grads.append(numerical_gradient(lambda b_: out(x, gamma, b_), beta, case.dout))
    return tuple(grads)


def _backward_errors(variant: Variant, backward: Callable, forward: Callable, case) -> tuple:
    """(error against autograd, error against finite differences) of ``backward`` on the
    cache of the learner's ``forward``; a wrong forward is blamed first (the cache is the
    learner's own design, so no reference cache can replace it)."""
    try:
        _, cache = _checked_forward(variant, forward, case)
    except CheckFailure as failure:
        raise CheckFailure(
            f"fix {_name(forward)} first: the backward is checked on the cache your forward "
            f"makes. {failure}"
        ) from None
    grads = _run_backward(variant, backward, case, cache)
    expected = gradients_reference(variant, case)
    wrong = backward_mistakes(variant, case)
    wrong = {
        n: _plausible(_distinct(wrong[n], e), g, e)
        for n, g, e in zip(variant.gradient_names, grads, expected, strict=True)
    }
    err_autograd = compare_gradients(variant.gradient_names, grads, expected, wrong)
    numeric = call_without_torch(_finite_differences, variant, forward, case, name=_name(forward))
    err_fd = compare_with_differences(
        variant.gradient_names, grads, numeric, f"your {_name(forward)}"
    )
    return err_autograd, err_fd


def _check_backward_on(variant: Variant, backward, forward, cases: list, label: str) -> None:
    check_backward_on(
        cases,
        lambda case: _backward_errors(variant, backward, forward, case),
        f"{_name(backward)}{label}",
        ", ".join(variant.gradient_names),
        _name(forward),
    )


def _visible(variant: Variant) -> tuple[list, str]:
    return [visible_case(variant)], ""


def _hidden(variant: Variant, gradients: bool = False) -> tuple[list, str]:
    """The hidden cases. For gradients, without rows of one feature (D = 1): layer norm's
    x_hat is exactly 0 there but roundoff (~1e-13) in PyTorch, so dgamma has no scale to be
    compared on, and RMSNorm's output is nearly flat (dx ~ eps / |x|^3), below what a
    finite difference resolves."""
    cases = hidden_cases(variant)
    if gradients and variant.param_axis == -1:
        cases = [c for c in cases if c.x.shape[-1] > 1]
    return cases, f" on {len(cases)} hidden cases"


# --- checks: the ones the notebook calls -------------------------------------------------------


def check_layernorm_forward(forward: Callable) -> None:
    """Visible check of ``layernorm_forward`` against F.layer_norm on a (4, 5) case."""
    _check_forward_on(LAYERNORM, forward, *_visible(LAYERNORM))


def check_layernorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``layernorm_forward`` on every hidden case (ranks 2 to 4, N = 1, D = 1)."""
    _check_forward_on(LAYERNORM, forward, *_hidden(LAYERNORM))


def check_layernorm_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``layernorm_backward`` on the cache of ``forward``."""
    _check_backward_on(LAYERNORM, backward, forward, *_visible(LAYERNORM))


def check_layernorm_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``layernorm_backward`` on every hidden case."""
    _check_backward_on(LAYERNORM, backward, forward, *_hidden(LAYERNORM, gradients=True))


def check_instancenorm_forward(forward: Callable) -> None:
    """Visible check of ``instancenorm_forward`` against F.instance_norm on a (2, 3, 2, 2) case."""
    _check_forward_on(INSTANCENORM, forward, *_visible(INSTANCENORM))


def check_instancenorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``instancenorm_forward`` on every hidden case."""
    _check_forward_on(INSTANCENORM, forward, *_hidden(INSTANCENORM))


def check_instancenorm_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``instancenorm_backward`` on the cache of ``forward``."""
    _check_backward_on(INSTANCENORM, backward, forward, *_visible(INSTANCENORM))


def check_instancenorm_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``instancenorm_backward`` on every hidden case."""
    _check_backward_on(INSTANCENORM, backward, forward, *_hidden(INSTANCENORM))


def check_groupnorm_forward(forward: Callable) -> None:
    """Visible check of ``groupnorm_forward`` against F.group_norm (6 channels, 3 groups)."""
    _check_forward_on(GROUPNORM, forward, *_visible(GROUPNORM))


def check_groupnorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``groupnorm_forward`` on every hidden case (G = 1, G = C, N = 1, ...)."""
    _check_forward_on(GROUPNORM, forward, *_hidden(GROUPNORM))


def check_groupnorm_rejects_uneven_groups(forward: Callable) -> None:
    """Visible check that ``groupnorm_forward`` raises ValueError for 6 channels in 4 groups
    (a separate requirement, graded on its own: a right forward keeps its points without it)."""
    _check_indivisible_groups(forward, *INDIVISIBLE)
    channels, groups = INDIVISIBLE[0][1], INDIVISIBLE[1]
    name = _name(forward)
    print(f"{name} raises ValueError for {channels} channels in {groups} groups — correct")


def check_groupnorm_rejects_uneven_groups_hidden(forward: Callable) -> None:
    """Hidden check of the ValueError, with more groups than channels among the cases."""
    for shape, groups in INDIVISIBLE_HIDDEN:
        _check_indivisible_groups(forward, shape, groups)
    print(f"{_name(forward)} raises ValueError for every uneven split — correct")


def check_groupnorm_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``groupnorm_backward`` on the cache of ``forward``."""
    _check_backward_on(GROUPNORM, backward, forward, *_visible(GROUPNORM))


def check_groupnorm_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``groupnorm_backward`` on every hidden case."""
    _check_backward_on(GROUPNORM, backward, forward, *_hidden(GROUPNORM))


def check_rmsnorm_forward(forward: Callable) -> None:
    """Visible check of ``rmsnorm_forward`` against F.rms_norm on a (4, 5) case."""
    _check_forward_on(RMSNORM, forward, *_visible(RMSNORM))


def check_rmsnorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``rmsnorm_forward`` on every hidden case (a near-zero row included)."""
    _check_forward_on(RMSNORM, forward, *_hidden(RMSNORM))


def check_rmsnorm_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``rmsnorm_backward`` -> (dx, dgamma) on the cache of ``forward``."""
    _check_backward_on(RMSNORM, backward, forward, *_visible(RMSNORM))


def check_rmsnorm_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``rmsnorm_backward`` on every hidden case."""
    _check_backward_on(RMSNORM, backward, forward, *_hidden(RMSNORM, gradients=True))
