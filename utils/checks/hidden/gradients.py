"""Lesson 00's hidden cases and checks (the visible ones: ``utils.checks.gradients``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils.cases import Case, make_case, strided_view
from utils.checks.gradients.common import _guarded_call
from utils.checks.gradients.layers import (
    check_center_backward,
    check_center_forward,
    check_scale_shift_backward,
    check_scale_shift_forward,
)
from utils.checks.gradients.measures import (
    COPY_OF_TRANSPOSED,
    KEPT_VIEW,
    _GradientCase,
    _learner_gradient,
    _numerical_gradient_errors,
    _numerical_gradient_mistakes,
    _relative_error_errors,
    _sin_matmul,
)
from utils.checks.hidden import hidden_twin
from utils.checks.twins import On
from utils.diagnose import FINITE_DIFFERENCE, CheckFailure, assert_close, report
from utils.gradcheck import numerical_gradient
from utils.reference import as_tensor


def _hidden_relative_error_cases() -> list[tuple[str, object, object]]:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(5, 4))
    b = a + 1e-7 * rng.normal(size=(5, 4))
    cube = rng.normal(size=(2, 3, 4))
    return [
        ("arrays of size 1e6", 1e6 * a, 1e6 * b),
        ("arrays of size 1e-9", 1e-9 * a, 1e-9 * b),
        ("a 3-D pair", cube, cube * (1 + 1e-4 * rng.normal(size=cube.shape))),
        ("zeros against roundoff-sized numbers", np.zeros(3), np.array([1e-14, 0.0, -3e-15])),
        ("two Python floats", 2.0, 2.5),
        ("b much larger than a", a, 50.0 * b),
        ("a strided pair", strided_view(a), strided_view(b)),
    ]


def check_relative_error_hidden(fn: Callable) -> None:
    """Hidden check of ``relative_error``: scales, shapes, the floor, mismatched shapes."""
    errors = _relative_error_errors(fn, _hidden_relative_error_cases())
    report("relative_error on the hidden cases", max(errors))
    try:
        _guarded_call("relative_error", fn, (np.ones((3, 1)), np.ones(3)), ("a", "b"))
    except ValueError:
        print("relative_error: raises ValueError for shapes (3, 1) and (3,) — correct")
        return
    raise CheckFailure(
        "relative_error accepted a of shape (3, 1) and b of shape (3,): numpy broadcasts them to "
        "(3, 3) and compares the wrong entries. Raise ValueError when the shapes differ."
    )


def _hidden_gradient_cases() -> list[_GradientCase]:
    rng = np.random.default_rng(3)
    c = rng.uniform(0.5, 1.5, size=(2, 3, 2))
    f, f_torch = _sin_matmul(rng.normal(size=(3, 5)))
    return [
        _GradientCase(
            "a 3-D x, f(x) = c * x**3 + x",
            lambda z: c * z**3 + z,
            lambda z: as_tensor(c) * z**3 + z,
            rng.normal(size=(2, 3, 2)),
            rng.normal(size=(2, 3, 2)),
        ),
        _GradientCase(
            "a non-contiguous x (the transpose of a (3, 4) array)",
            f,
            f_torch,
            rng.normal(size=(3, 4)).T,
            rng.normal(size=(4, 5)),
            COPY_OF_TRANSPOSED,
        ),
        _GradientCase(
            "f returns a view of x, f(x) = x.T",
            lambda z: z.T,
            lambda z: z.T,
            rng.normal(size=(3, 4)),
            rng.normal(size=(4, 3)),
            KEPT_VIEW,
        ),
    ]


def _step_error(fn: Callable) -> float:
    """With h=1e-3 the learner's result must be the centered difference with that very h."""
    rng = np.random.default_rng(5)
    c = rng.uniform(0.5, 1.5, size=(3, 3))
    case = _GradientCase(
        "h=1e-3", lambda z: np.sum(c * np.sin(4.0 * z)), None, rng.normal(size=(3, 3)), None
    )
    mistakes = _numerical_gradient_mistakes(case, 1e-3)
    mistakes["the h argument was ignored (a fixed step was used)"] = numerical_gradient(
        case.f, case.x.copy()
    )
    expected = numerical_gradient(case.f, case.x.copy(), h=1e-3)
    return assert_close(
        "numerical_gradient [h=1e-3]", _learner_gradient(fn, case, h=1e-3), expected, mistakes
    )


def check_numerical_gradient_hidden(fn: Callable) -> None:
    """Hidden check of ``numerical_gradient``: 3-D and strided x, a view-returning f, h used."""
    errors = _numerical_gradient_errors(fn, _hidden_gradient_cases())
    report("numerical_gradient on the hidden cases", max(errors), FINITE_DIFFERENCE)
    report("numerical_gradient with h=1e-3 vs the centered difference", _step_error(fn))


def _hidden_batches() -> list[Case]:
    """A batch of two, a single feature, a square batch, non-contiguous x, an offset mean."""
    return [
        make_case((2, 1), 10, "x of shape (2, 1)"),
        make_case((3, 3), 11, "a square x of shape (3, 3)"),
        make_case((5, 4), 12, "a non-contiguous x of shape (5, 4)", layout="strided"),
        make_case((4, 3), 15, "a transposed x of shape (4, 3)", layout="transposed"),
        make_case((6, 2), 13, "x of shape (6, 2), mean offset 100", offset=100.0),
        make_case(
            (8, 5), 14, "x of shape (8, 5), gamma and beta far from 1 and 0", far_affine=True
        ),
    ]


def _hidden() -> On:
    return On(_hidden_batches(), " on the hidden cases")


check_scale_shift_forward_hidden = hidden_twin(check_scale_shift_forward, _hidden)
check_scale_shift_backward_hidden = hidden_twin(check_scale_shift_backward, _hidden)
check_center_forward_hidden = hidden_twin(check_center_forward, _hidden)
check_center_backward_hidden = hidden_twin(check_center_backward, _hidden)
