"""Lesson 00, exercises 1 and 2: relative_error and numerical_gradient."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import copy_with_layout
from utils.checks.gradients.common import RESTORED, _guarded_call, _torch_gradients
from utils.diagnose import FINITE_DIFFERENCE, CheckFailure, as_float_array, assert_close, report
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import call_without_torch
from utils.reference import as_tensor

# --- exercise 1: relative_error ------------------------------------------------------------


def _reference_relative_error(a, b, floor: float = 1e-12) -> float:
    ta, tb = as_tensor(a), as_tensor(b)
    scale = max(ta.abs().max().item(), tb.abs().max().item(), floor)
    return (ta - tb).abs().max().item() / scale


def _relative_error_mistakes(a, b, floor: float = 1e-12) -> dict[str, float]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff, size_a, size_b = np.abs(a - b), np.abs(a).max(), np.abs(b).max()
    swap = "; the error must not change when a and b are swapped"
    return {
        "the absolute error max|a - b|, which grows and shrinks with the size of the arrays": (
            diff.max()
        ),
        "an elementwise relative error, where an entry that should be 0 and comes back as "
        "1e-15 counts as a 100% error": np.max(diff / np.maximum(np.abs(a) + np.abs(b), floor)),
        f"dividing by max|a| only{swap}": diff.max() / max(size_a, floor),
        f"dividing by max|b| only{swap}": diff.max() / max(size_b, floor),
        "Euclidean norms; the lesson's definition uses the largest absolute entry": (
            np.linalg.norm(diff) / max(np.linalg.norm(a), np.linalg.norm(b), floor)
        ),
        "the mean of |a - b| instead of its maximum": diff.mean() / max(size_a, size_b, floor),
        "a denominator without the floor, max(max|a|, max|b|, floor)": (
            diff.max() / max(size_a, size_b)
        ),
    }


def _visible_relative_error_cases() -> list[tuple[str, object, object]]:
    a = np.array([[3.0, -2.0, 0.0], [1.0, 0.5, -4.0]])
    nudge = np.array([[2e-6, 0.0, 1e-15], [0.0, -1e-6, 0.0]])
    return [
        ("close arrays with an entry that should be 0", a, a + nudge),
        ("a=[2, -1], b=[4, -1]", np.array([2.0, -1.0]), np.array([4.0, -1.0])),
        ("the same pair swapped", np.array([4.0, -1.0]), np.array([2.0, -1.0])),
    ]


def _check_relative_error_of_zeros(fn: Callable) -> None:
    zeros = np.zeros((2, 3))
    got = _guarded_call("relative_error", fn, (zeros, zeros.copy()), ("a", "b"))
    if not np.all(np.isfinite(np.asarray(got, dtype=np.float64))):
        raise CheckFailure(
            "relative_error returned NaN or inf for two all-zero arrays: that is 0 / 0. Keep "
            "the floor in the denominator, max(max|a|, max|b|, floor)."
        )
    assert_close("relative_error of two all-zero arrays", got, 0.0)


def _relative_error_errors(fn: Callable, cases) -> list[float]:
    return [
        assert_close(
            f"relative_error [{label}]",
            _guarded_call("relative_error", fn, (a, b), ("a", "b")),
            _reference_relative_error(a, b),
            _relative_error_mistakes(a, b),
        )
        for label, a, b in cases
    ]


def check_relative_error(fn: Callable) -> None:
    """Visible check of ``relative_error(a, b)`` against the normwise definition (PyTorch)."""
    _check_relative_error_of_zeros(fn)
    report("relative_error", max(_relative_error_errors(fn, _visible_relative_error_cases())))


# --- exercise 2: numerical_gradient --------------------------------------------------------

COPY_OF_TRANSPOSED = (
    "your perturbations never reached x: x.ravel(), x.reshape(-1) and x.flatten() return a copy "
    "when x is not contiguous in memory (here x is a transposed view); index x itself, for "
    "example with np.ndindex(x.shape)"
)
KEPT_VIEW = (
    "f(x) was kept as an array and used after x changed again; f may return a view of x (here "
    "f(x) = x.T), so both kept arrays show the same numbers. Reduce np.sum(f(x) * dout) to a "
    "number right after each call"
)


@dataclass(frozen=True)
class _GradientCase:
    """f in numpy and the same f in PyTorch, a point x, an upstream dout (None: f is scalar)."""

    label: str
    f: Callable[[np.ndarray], np.ndarray]
    f_torch: Callable[[torch.Tensor], torch.Tensor] | None
    x: np.ndarray
    dout: np.ndarray | None
    zero_gradient_means: str | None = None  # the mistake that a gradient of all zeros shows


def _sin_matmul(w: np.ndarray) -> tuple[Callable, Callable]:
    """f(x) = sin(4x) @ w in numpy and in PyTorch; curved enough to expose a one-sided step."""
    return (lambda z: np.sin(4.0 * z) @ w), (lambda z: torch.sin(4.0 * z) @ as_tensor(w))


def _visible_gradient_cases() -> list[_GradientCase]:
    rng = np.random.default_rng(2)
    c = rng.uniform(0.5, 1.5, size=(3, 4)) * rng.choice([-1.0, 1.0], size=(3, 4))
    f, f_torch = _sin_matmul(rng.normal(size=(3, 5)))
    return [
        _GradientCase(
            "scalar f(x) = sum(c * sin(4x)), dout=None",
            lambda z: np.sum(c * np.sin(4.0 * z)),
            lambda z: (as_tensor(c) * torch.sin(4.0 * z)).sum(),
            rng.normal(size=(3, 4)),
            None,
        ),
        _GradientCase(
            "f(x) = sin(4x) @ W with an upstream dout",
            f,
            f_torch,
            rng.normal(size=(4, 3)),
            rng.normal(size=(4, 5)),
        ),
    ]


def _one_sided_gradient(f: Callable, x: np.ndarray, dout, h: float, direction: int) -> np.ndarray:
    """The one-sided difference (direction +1: forward, -1: backward) a learner might write."""
    x = x.copy()
    weight = 1.0 if dout is None else dout
    at_x = np.sum(f(x) * weight)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + direction * h
        grad[i] = direction * (np.sum(f(x) * weight) - at_x) / h
        x[i] = old
    return grad


def _numerical_gradient_mistakes(case: _GradientCase, h: float) -> dict[str, np.ndarray]:
    one_sided = "a one-sided difference {}, whose error shrinks only like h, not like h**2"
    centered = numerical_gradient(case.f, case.x.copy(), case.dout, h=h)
    mistakes = {
        one_sided.format("(f(x + h) - f(x)) / h"): _one_sided_gradient(
            case.f, case.x, case.dout, h, +1
        ),
        one_sided.format("(f(x) - f(x - h)) / h"): _one_sided_gradient(
            case.f, case.x, case.dout, h, -1
        ),
        "dividing by h instead of 2 * h (x + h and x - h are 2h apart)": 2.0 * centered,
    }
    if case.dout is not None:
        ignored = "dout was ignored: this is the gradient of sum(f(x)), not of sum(f(x) * dout)"
        mistakes[ignored] = numerical_gradient(case.f, case.x.copy(), None, h=h)
    if case.zero_gradient_means:
        mistakes[case.zero_gradient_means] = np.zeros_like(case.x)
    return mistakes


def _learner_gradient(fn: Callable, case: _GradientCase, **kwargs) -> np.ndarray:
    """Run the learner's numerical_gradient on a copy of case.x; x must come back unchanged."""
    x = copy_with_layout(case.x)
    got = call_without_torch(fn, case.f, x, case.dout, name="numerical_gradient", **kwargs)
    if not relative_error(x, case.x) <= RESTORED:
        change = np.max(np.abs(x - case.x))
        raise CheckFailure(
            f"numerical_gradient [{case.label}] left x changed (largest change {change:.1e}). "
            "Save each entry before you perturb it and write the saved value back after the two "
            "evaluations: the caller's x must come back as it went in."
        )
    return as_float_array(got, f"numerical_gradient [{case.label}]", case.x.shape)


def _numerical_gradient_errors(fn: Callable, cases: list[_GradientCase]) -> list[float]:
    return [
        assert_close(
            f"numerical_gradient [{case.label}]",
            _learner_gradient(fn, case),
            _torch_gradients(case.f_torch, [case.x], case.dout)[0],
            _numerical_gradient_mistakes(case, 1e-5),
            tol=FINITE_DIFFERENCE,
        )
        for case in cases
    ]


def check_numerical_gradient(fn: Callable) -> None:
    """Visible check of ``numerical_gradient(f, x, dout=None, h=1e-5)`` against autograd."""
    errors = _numerical_gradient_errors(fn, _visible_gradient_cases())
    report("numerical_gradient vs PyTorch autograd", max(errors), FINITE_DIFFERENCE)
