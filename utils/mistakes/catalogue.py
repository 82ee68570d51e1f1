"""The one parameterized wrong normalizer, forward and backward, for every normalization.

A normalization is described by its ``Sets``: which entries of x share one statistic
(BatchNorm: every axis but 1, ``batch_sets``; layer and RMS norm: the last axis; instance norm:
(2, 3); group norm: each group of channels with its positions, ``group_sets``) and along which
axis gamma and beta run. Each function takes switches that make one classic mistake; a lesson
picks its mistakes as ``{description: switches}`` (descriptions from ``describe``) and gets
the wrong arrays on one input from ``forward_mistakes``, ``dx_mistakes`` and
``parameter_mistakes``. Everything is float64 numpy, computed quietly: a wrong variant may
divide by a zero variance, and its warning must not reach stderr (nbgrader zeroes a test cell
that writes there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

WHOLE = "the whole array"
"""``over=WHOLE``: the statistics taken over every entry of x at once."""

PER_SAMPLE = "each sample"
"""``over=PER_SAMPLE``: the statistics taken per sample, over every axis but 0."""

SPREADS = {
    "sqrt(v + eps)": lambda v, eps: np.sqrt(v + eps),
    "sqrt(v) + eps": lambda v, eps: np.sqrt(v) + eps,
    "v + eps": lambda v, eps: v + eps,
    "sqrt(sqrt(v) + eps)": lambda v, eps: np.sqrt(np.sqrt(v) + eps),
    "1 / sqrt(v + eps)": lambda v, eps: 1 / np.sqrt(v + eps),
}
"""What x - mean is divided by, from the variance (or mean square) v: the right one first,
then eps outside the root, no root, the standard deviation under the root, the inverse."""


def quietly():
    """numpy's floating-point warnings off meanwhile (see the module docstring)."""
    return np.errstate(all="ignore")


@dataclass(frozen=True)
class Sets:
    """Which entries of x share one statistic, and where gamma and beta run.

    axes: the axes of x each set runs along (negative counts from the end); groups: when > 0,
    x is seen as (N, groups, -1) and each set is one group of one sample (``axes`` unused);
    param_axis: the axis of x that gamma and beta run along (1 or -1); center: whether the mean
    is subtracted (RMSNorm does not).
    """

    axes: tuple[int, ...]
    param_axis: int = 1
    center: bool = True
    groups: int = 0

    def view(self, x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """(x reshaped, axes): each set of entries sharing a statistic lies along axes."""
        if self.groups:
            return x.reshape(x.shape[0], self.groups, -1), (2,)
        return x, self.axes

    def expand(self, p: np.ndarray, ndim: int) -> np.ndarray:
        """gamma or beta (one value per feature) shaped to broadcast on an x of ``ndim`` axes."""
        return p if self.param_axis == -1 else p.reshape(1, -1, *(1,) * (ndim - 2))

    def parameter_sum(self, values: np.ndarray) -> np.ndarray:
        """values (shaped like x) summed over every axis but ``param_axis``: one per feature."""
        keep = self.param_axis % values.ndim
        return values.sum(axis=tuple(a for a in range(values.ndim) if a != keep))


def batch_sets(ndim: int) -> Sets:
    """BatchNorm of an x of ``ndim`` axes (2-D, spatial, or a synchronized batch's whole x):
    one set per feature, over every axis but 1."""
    return Sets((0, *range(2, ndim)))


def group_sets(num_groups: int) -> Sets:
    """GroupNorm with ``num_groups`` groups of contiguous channels, x (N, C, ...)."""
    return Sets((2,), groups=num_groups)


LAYER = Sets((-1,), param_axis=-1)
INSTANCE = Sets((2, 3))
RMS = Sets((-1,), param_axis=-1, center=False)


# --- forward ----------------------------------------------------------------------------------


def standardize(
    x: np.ndarray,
    axes: tuple[int, ...] | None,
    eps: float,
    *,
    center: bool = True,
    ddof: int = 0,
    average: bool = True,
    count: int | None = None,
    mean_count: int | None = None,
    spread: str = "sqrt(v + eps)",
) -> np.ndarray:
    """(x - mean) / sqrt(mean square + eps) over ``axes`` (None: all axes), with switches for
    the classic mistakes: no centering, ddof=1, a sum instead of a mean, the sums divided by
    ``count`` (the variance's) or ``mean_count`` (the mean's) instead of the set's size, and
    another ``spread`` (a key of SPREADS)."""
    size = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    if not center:
        centered = x
    elif mean_count is None:
        centered = x - x.mean(axis=axes, keepdims=True)
    else:
        centered = x - x.sum(axis=axes, keepdims=True) / mean_count
    second = (centered**2).sum(axis=axes, keepdims=True)
    if average:
        second = second / ((size if count is None else count) - ddof)
    return centered / SPREADS[spread](second, eps)


def _over(x: np.ndarray, over) -> tuple[int, ...] | None:
    """The axes of x that ``over`` (a tuple, WHOLE or PER_SAMPLE) names."""
    if over == WHOLE:
        return None
    if over == PER_SAMPLE:
        return tuple(range(1, x.ndim))
    return over


def wrong_normalized(
    sets: Sets,
    x: np.ndarray,
    eps: float,
    *,
    over=None,
    center: bool | None = None,
    count: str | None = None,
    mean_count: str | None = None,
    **switches,
) -> np.ndarray:
    """x_hat shaped like x: x standardized over each set of ``sets``, or over the axes of x
    that ``over`` names. count, mean_count: "N" divides the variance's (the mean's) sum by the
    batch size instead of by the set's size. center defaults to the sets'; the other switches
    are ``standardize``'s."""
    view, axes = sets.view(x) if over is None else (x, _over(x, over))
    n = {None: None, "N": x.shape[0]}
    out = standardize(
        view,
        axes,
        eps,
        center=sets.center if center is None else center,
        count=n[count],
        mean_count=n[mean_count],
        **switches,
    )
    return out.reshape(x.shape)


AFFINES = {
    "gamma * x_hat + beta": (True, True),
    "beta * x_hat + gamma": (True, True),
    "x_hat": (False, False),
    "x_hat + beta": (False, True),
    "gamma * x_hat": (True, False),
}
"""The affine step and its mistakes: which of the scale and the shift are applied. The second
swaps gamma and beta; "along the last axis" (see ``wrong_affine``) is one more."""


def wrong_affine(
    sets: Sets, x_hat: np.ndarray, gamma, beta, affine: str = "gamma * x_hat + beta"
) -> np.ndarray | None:
    """``affine`` (a key of AFFINES, or "along the last axis": gamma and beta of shape (C,)
    broadcast on x_hat as they are, which runs only when the last axis has C entries) applied
    to x_hat; beta None (RMSNorm) adds no shift."""
    if affine == "along the last axis":
        return None if x_hat.shape[-1] != x_hat.shape[1] else gamma * x_hat + beta
    if affine == "beta * x_hat + gamma":
        gamma, beta = beta, gamma
    scale, shift = AFFINES[affine]
    out = sets.expand(gamma, x_hat.ndim) * x_hat if scale else x_hat
    return out + sets.expand(beta, x_hat.ndim) if shift and beta is not None else out


def wrong_forward(
    sets: Sets, x, gamma, beta, eps: float, *, affine: str = "gamma * x_hat + beta", **switches
) -> np.ndarray | None:
    """The output of the normalization ``sets`` with ``wrong_normalized``'s switches and a
    wrong ``affine`` (see ``wrong_affine``); None where the mistake cannot run on this x."""
    return wrong_affine(sets, wrong_normalized(sets, x, eps, **switches), gamma, beta, affine)


def forward_mistakes(
    sets: Sets, x, gamma, beta, eps: float, picks: Mapping[str, dict | Callable]
) -> dict[str, np.ndarray]:
    """description -> the wrong output, for every pick that can run here. A pick is the
    switches of ``wrong_forward`` (its "eps" replaces the one given), or a lesson's own wrong
    forward with ``wrong_forward``'s signature (sets, x, gamma, beta, eps) -> out or None."""

    def run(pick):
        if callable(pick):
            return pick(sets, x, gamma, beta, eps)
        return wrong_forward(sets, x, gamma, beta, **{"eps": eps, **pick})

    with quietly():
        wrong = {d: run(pick) for d, pick in picks.items()}
    return {d: a for d, a in wrong.items() if a is not None}


def wrong_inv_std(
    sets: Sets, x, eps: float, *, ddof: int = 0, spread: str = "sqrt(v + eps)"
) -> np.ndarray:
    """1 / spread(variance) of each set (one value per set; per feature for BatchNorm), with
    the variance's ``ddof`` and a wrong ``spread`` (a key of SPREADS)."""
    view, axes = sets.view(x)
    with quietly():
        return 1 / SPREADS[spread](view.var(axis=axes, ddof=ddof), eps)


def inv_std_mistakes(sets: Sets, x, eps: float, picks: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """description -> ``wrong_inv_std`` with its switches (a pick's "eps" replaces the one
    given), for every pick."""
    return {d: wrong_inv_std(sets, x, **{"eps": eps, **s}) for d, s in picks.items()}


# --- backward ---------------------------------------------------------------------------------


def wrong_dx(
    sets: Sets,
    x,
    gamma,
    dout,
    eps: float,
    *,
    with_gamma: bool = True,
    mean_term: float | None = None,
    mean_of_dout: bool = False,
    variance_term: float = 1.0,
    wrong_power: bool = False,
    sum_axes: tuple[int, ...] | None = None,
    count: str | None = None,
    ddof: int = 0,
    eps_in_scale: bool = True,
) -> np.ndarray:
    """The closed form dx = s * (dx_hat - sum(dx_hat) / m - x_hat * sum(dx_hat * x_hat) / m)
    over each set (s = 1 / sqrt(var + eps), dx_hat = dout * gamma), with switches for the
    classic mistakes.

    with_gamma: dx_hat = dout. mean_term, variance_term: the terms' factors (0 drops one, -1
    flips its sign; the mean term is 0 by default where nothing is centered). mean_of_dout:
    the mean term sums dout instead of dx_hat. wrong_power: the variance term times
    (var + eps), from d inv_std / d var = -1/2 (var + eps)^(-1/2). sum_axes: the sums over
    other axes (of the sets' view of x). count: m is "N" (the batch size) or "m - 1" for both
    sums; ddof: the variance term divided by m - ddof. eps_in_scale: s = 1 / sqrt(var).
    """
    mean_term = (1.0 if sets.center else 0.0) if mean_term is None else mean_term
    with quietly():
        dx_hat = dout * sets.expand(gamma, x.ndim) if with_gamma else dout
        view, axes = sets.view(x)
        d, source = sets.view(dx_hat)[0], sets.view(dout)[0] if mean_of_dout else None
        centered = view - view.mean(axis=axes, keepdims=True) if sets.center else view
        second = (centered**2).mean(axis=axes, keepdims=True)
        x_hat = centered / np.sqrt(second + eps)
        scale = 1 / np.sqrt(second + eps) if eps_in_scale else 1 / np.sqrt(second)
        sum_axes = axes if sum_axes is None else sum_axes
        m = math.prod(view.shape[a] for a in sum_axes)
        m = {None: m, "N": x.shape[0], "m - 1": m - 1}[count]
        dx = d
        if mean_term:
            summed = d if source is None else source
            dx = dx - mean_term * summed.sum(axis=sum_axes, keepdims=True) / m
        if variance_term:
            term = x_hat * (d * x_hat).sum(axis=sum_axes, keepdims=True) / (m - ddof)
            dx = dx - variance_term * (term * (second + eps) if wrong_power else term)
        return (scale * dx).reshape(x.shape)


def dx_mistakes(
    sets: Sets, x, gamma, dout, eps: float, picks: Mapping[str, dict | Callable]
) -> dict[str, np.ndarray]:
    """description -> the wrong dx, for every pick: the switches of ``wrong_dx``, or a
    lesson's own wrong dx with its signature (sets, x, gamma, dout, eps)."""

    def run(pick):
        if callable(pick):
            return pick(sets, x, gamma, dout, eps)
        return wrong_dx(sets, x, gamma, dout, eps, **pick)

    with quietly():
        return {d: run(pick) for d, pick in picks.items()}


def parameter_mistakes(
    sets: Sets, x, dout, eps: float, picks: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """description -> a wrong dgamma or dbeta (one value per feature), for picks {description:
    what it computes}: "sum(dout)", "sum(dout * x)", "sum(dout * x_hat)" (each over every axis
    but the parameters'), or "mean(...)" of one of them (that sum over its number of terms).
    The right dgamma is sum(dout * x_hat), the right dbeta sum(dout)."""
    with quietly():
        x_hat = wrong_normalized(sets, x, eps)
    sums = {
        "dout": sets.parameter_sum(dout),
        "dout * x": sets.parameter_sum(dout * x),
        "dout * x_hat": sets.parameter_sum(dout * x_hat),
    }
    values = {f"sum({k})": v for k, v in sums.items()}
    values |= {f"mean({k})": v / (dout.size // v.size) for k, v in sums.items()}
    return {d: values[formula] for d, formula in picks.items()}
