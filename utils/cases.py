"""Seeded test inputs for the normalization checks: one visible case and a hidden list.

A ``Case`` holds an input ``x``, per-feature ``gamma`` and ``beta``, an upstream gradient
``dout`` shaped like x, the ``eps`` to pass and a ``label`` a failure message can quote.
``x`` may be any rank: the parameters run along ``param_axis`` (1 for (N, D) and for
(N, C, H, W)). Test data never uses gamma exactly 1 or beta exactly 0: they hide bugs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

NEAR_CONSTANT_STD = 10**-3.5
"""Spread of the near-constant feature: variance 1e-7, a hundred times below eps=1e-5."""

LARGE_OFFSET = 1e4
"""Mean added to every feature in the large-offset case."""


@dataclass(frozen=True)
class Case:
    """One test input. x, dout: the same shape; gamma, beta: one value per feature."""

    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    dout: np.ndarray
    eps: float
    label: str

    def fresh(self) -> Case:
        """A copy with fresh arrays, x keeping its memory layout (so a check can hand the
        learner its own arrays and still see whether they were modified in place)."""
        return dataclasses.replace(
            self,
            x=copy_with_layout(self.x),
            gamma=self.gamma.copy(),
            beta=self.beta.copy(),
            dout=self.dout.copy(),
        )


def copy_with_layout(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` that is C-contiguous, F-contiguous or strided exactly when ``a`` is."""
    if a.flags.c_contiguous:
        return a.copy(order="C")
    if a.flags.f_contiguous:
        return a.copy(order="F")
    return strided_view(a)


def strided_view(a: np.ndarray) -> np.ndarray:
    """The values of ``a`` as every other entry along the last axis of a twice-wider array."""
    base = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan)
    view = base[..., ::2]
    view[...] = a
    return view


def signed(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    """Magnitudes in [low, high) with random signs: never 0, never exactly +-1 by accident."""
    return rng.uniform(low, high, size) * rng.choice([-1.0, 1.0], size)


def stream_parameters(
    rng: np.random.Generator,
    features: int,
    offset: float = 0.0,
    near_constant: bool = False,
    far_affine: bool = False,
    affine: bool = True,
) -> tuple:
    """(loc, scale, gamma, beta) of a stream of batches for a layer with running statistics.

    Each feature's values are drawn around ``loc`` (shifted by ``offset``) with spread ``scale``;
    near_constant: feature 0 has spread ~3e-4; far_affine: |gamma| 3-8, |beta| 5-20 (else
    0.5-2 and 0.2-2); affine=False: gamma and beta are None.
    """
    loc = rng.normal(0.0, 2.0, features) + offset
    scale = rng.uniform(0.5, 3.0, features)
    if near_constant:
        scale[0] = NEAR_CONSTANT_STD
    if far_affine:
        gamma, beta = signed(rng, 3.0, 8.0, features), signed(rng, 5.0, 20.0, features)
    else:
        gamma, beta = signed(rng, 0.5, 2.0, features), signed(rng, 0.2, 2.0, features)
    if not affine:
        gamma = beta = None
    return loc, scale, gamma, beta


def _feature_index(ndim: int, param_axis: int, feature: int) -> tuple:
    index = [slice(None)] * ndim
    index[param_axis] = feature
    return tuple(index)


def make_case(
    shape: tuple[int, ...],
    seed: int,
    label: str,
    *,
    param_axis: int = 1,
    offset: float = 0.0,
    far_affine: bool = False,
    near_constant: bool = False,
    layout: str = "C",
    eps: float = 1e-5,
) -> Case:
    """A seeded case of the given shape.

    Each feature (a slice along ``param_axis``) gets its own mean and spread, plus ``offset``.
    far_affine: gamma of magnitude 3-8 and beta of magnitude 5-20 (otherwise 0.5-2 and
    0.2-2, random signs). near_constant: feature 0 has variance ~1e-7. layout: "C",
    "transposed" (an F-ordered view, as x.T of a C array) or "strided" (every other column).
    """
    rng = np.random.default_rng(seed)
    features = shape[param_axis]
    spread_shape = [1] * len(shape)
    spread_shape[param_axis] = features
    loc = rng.normal(0.0, 2.0, features).reshape(spread_shape) + offset
    scale = rng.uniform(0.5, 3.0, features).reshape(spread_shape)
    x = loc + scale * rng.normal(size=shape)
    if near_constant:
        index = _feature_index(len(shape), param_axis, 0)
        x[index] = loc.ravel()[0] + NEAR_CONSTANT_STD * rng.normal(size=x[index].shape)
    if far_affine:
        gamma, beta = signed(rng, 3.0, 8.0, features), signed(rng, 5.0, 20.0, features)
    else:
        gamma, beta = signed(rng, 0.5, 2.0, features), signed(rng, 0.2, 2.0, features)
    dout = rng.normal(size=shape)
    if layout == "transposed":
        x = np.ascontiguousarray(x.T).T
    elif layout == "strided":
        x = strided_view(x)
    elif layout != "C":
        raise ValueError(f"unknown layout {layout!r}")
    return Case(x=x, gamma=gamma, beta=beta, dout=dout, eps=eps, label=label)


def visible_case(shape: tuple[int, ...] = (5, 4), param_axis: int = 1) -> Case:
    """The small fixed case of the visible checks."""
    return make_case(shape, 2015, f"visible case, x of shape {shape}", param_axis=param_axis)
