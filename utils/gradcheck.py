"""Numerical gradients by centered differences, and the relative error used everywhere."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def relative_error(a, b, floor: float = 1e-12) -> float:
    """Normwise relative error ``max|a-b| / max(max|a|, max|b|, floor)`` of two arrays.

    a, b: array-likes of the same shape. Returns a float >= 0; 0.0 for empty arrays.
    Normwise rather than elementwise: an entry that should be 0 and comes back as 1e-17
    is roundoff, not an error, and must not dominate the result.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), floor)
    return float(np.max(np.abs(a - b)) / scale)


def numerical_gradient(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout=None,
                       h: float = 1e-5) -> np.ndarray:
    """Centered-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    f: a function of x (it must use its argument: x is perturbed in place and restored).
    x: float64 array of any shape. dout: upstream gradient, shaped like f(x); None means
    f returns a scalar. Returns an array shaped like x. Cost: 2 * x.size calls of f.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs a float64 x, got {x.dtype}")
    grad = np.zeros_like(x)
    weight = 1.0 if dout is None else np.asarray(dout, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = np.sum(np.asarray(f(x), dtype=np.float64) * weight)
        x[i] = old - h
        minus = np.sum(np.asarray(f(x), dtype=np.float64) * weight)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad
