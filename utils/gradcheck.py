"""Numerical gradients by centered differences (entry by entry, or along chosen directions),
and the relative error used everywhere."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def relative_error(a, b, floor: float = 1e-12) -> float:
    """Normwise relative error ``max|a-b| / max(max|a|, max|b|, floor)`` of two arrays.

    a, b: array-likes of the same shape (ValueError otherwise: broadcasting them would compare
    the wrong entries). Returns a float >= 0; 0.0 for empty arrays; NaN when an entry is NaN
    or infinite, so that ``err <= tol`` is False.
    Normwise rather than elementwise: an entry that should be 0 and comes back as 1e-17
    is roundoff, not an error, and must not dominate the result.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")  # without numpy's RuntimeWarning, which would zero a test cell
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), floor)
    return float(np.max(np.abs(a - b)) / scale)


def _weighted_sum(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout) -> Callable:
    """A function of no arguments: ``sum(f(x) * dout)`` of x as it is when called, as a float;
    dout None means weight 1. Raises ValueError when f(x) is shaped unlike dout (numpy would
    broadcast it silently and the gradient would be wrong)."""
    weight = None if dout is None else np.asarray(dout, dtype=np.float64)

    def weighted_sum() -> float:
        value = np.asarray(f(x), dtype=np.float64)
        if weight is None:
            return float(np.sum(value))
        if value.shape != weight.shape:
            raise ValueError(f"dout has shape {weight.shape} but f(x) has shape {value.shape}")
        return float(np.sum(value * weight))

    return weighted_sum


def _check_point_and_step(who: str, x, h: float) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(
            f"{who} needs a float64 ndarray x, got {getattr(x, 'dtype', type(x).__name__)}"
        )
    if not h > 0:
        raise ValueError(f"h must be positive, got {h}")


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout=None, h: float = 1e-5
) -> np.ndarray:
    """Centered-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    f: a function of x (it must use its argument: x is perturbed in place and restored, also
    when f raises). f may return a view of x: each value is reduced to a number at once.
    x: float64 ndarray of any shape, contiguous or not. dout: upstream gradient, shaped like
    f(x); None means weight 1 (for a scalar f, its plain gradient). h: step, > 0.
    Returns a float64 array shaped like x. Cost: 2 * x.size calls of f.
    Raises TypeError for a non-float64 x, ValueError for h <= 0 or a dout shaped unlike f(x)
    (numpy would broadcast it silently and the gradient would be wrong).
    """
    _check_point_and_step("numerical_gradient", x, h)
    weighted_sum = _weighted_sum(f, x, dout)
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        try:
            x[i] = old + h
            plus = weighted_sum()
            x[i] = old - h
            minus = weighted_sum()
        finally:
            x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def directional_differences(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    directions: Sequence[np.ndarray],
    dout=None,
    h: float = 1e-5,
) -> np.ndarray:
    """Centered differences of ``sum(f(x) * dout)`` along each direction u: the numbers
    ``(L(x + h u) - L(x - h u)) / 2h``, which approximate ``<gradient, u>``.

    f, x, dout, h: as for ``numerical_gradient`` (x is moved in place, keeping its memory
    layout, and restored exactly, also when f raises). directions: k arrays shaped like x.
    Returns a float64 array of shape (k,). Cost: 2 * k calls of f, whatever the size of x:
    what a check pays when each call of f is expensive.
    Raises TypeError for a non-float64 x, ValueError for h <= 0, a direction shaped unlike
    x or a dout shaped unlike f(x).
    """
    _check_point_and_step("directional_differences", x, h)
    directions = [np.asarray(u, dtype=np.float64) for u in directions]
    for u in directions:
        if u.shape != x.shape:
            raise ValueError(f"a direction has shape {u.shape} but x has shape {x.shape}")
    weighted_sum = _weighted_sum(f, x, dout)
    old = x.copy()
    slopes = np.zeros(len(directions), dtype=np.float64)
    try:
        for k, u in enumerate(directions):
            x[...] = old + h * u
            plus = weighted_sum()
            x[...] = old - h * u
            minus = weighted_sum()
            slopes[k] = (plus - minus) / (2 * h)
    finally:
        x[...] = old
    return slopes
