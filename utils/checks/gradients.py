"""Checks for lesson 00_gradient_checking: the relative error, the numerical gradient, and two
small forward/backward pairs (scale-and-shift, centering) that prepare BatchNorm.

    check_relative_error(relative_error)            check_relative_error_hidden(...)
    check_numerical_gradient(numerical_gradient)    check_numerical_gradient_hidden(...)
    check_scale_shift_forward(forward)              check_scale_shift_forward_hidden(...)
    check_scale_shift_backward(backward, forward)   check_scale_shift_backward_hidden(...)
    check_center_forward(forward)                   check_center_forward_hidden(...)
    check_center_backward(backward, forward)        check_center_backward_hidden(...)

The visible checks run small fixed cases; the hidden ones random shapes including N=2, D=1
and N == D (where a sum over the wrong axis keeps the right shape), non-contiguous input,
large offsets and scales. The reference is PyTorch in float64 (``utils.reference``); every
backward is also compared with a centered finite difference of the learner's own forward.
A passing check prints one line per part; a failing one raises CheckFailure naming the mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import Case, copy_with_layout, make_case, strided_view
from utils.diagnose import FINITE_DIFFERENCE, CheckFailure, as_float_array, assert_close, report
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import call_without_torch
from utils.reference import as_tensor, to_numpy

RESTORED = 1e-12
"""How far numerical_gradient may leave x from where it started (the roundoff of x + h - h)."""

WRONG_AXIS = "a sum over axis 1 (the features) instead of axis 0 (the batch)"
BATCH_MEAN = "the mean over the batch instead of the sum"
GRADIENT_NAMES = ("dx", "dgamma", "dbeta")


# --- shared helpers ------------------------------------------------------------------------


def _torch_gradients(fn: Callable, inputs: Sequence[np.ndarray], dout=None) -> list[np.ndarray]:
    """PyTorch autograd's gradients of ``sum(fn(*inputs) * dout)`` for each input (float64)."""
    leaves = [as_tensor(a, requires_grad=True) for a in inputs]
    weight = None if dout is None else as_tensor(dout)
    return [to_numpy(g) for g in torch.autograd.grad(fn(*leaves), leaves, grad_outputs=weight)]


def _guarded_call(name: str, fn: Callable, args: tuple, arg_names: Sequence[str], **kwargs):
    """``fn(*args, **kwargs)`` with PyTorch forbidden; CheckFailure if it changed an argument."""
    named = list(zip(arg_names, args, strict=True))
    before = {n: a.copy() for n, a in named if isinstance(a, np.ndarray)}
    result = call_without_torch(fn, *args, name=name, **kwargs)
    for arg_name, arg in named:
        if arg_name in before and not np.array_equal(arg, before[arg_name], equal_nan=True):
            raise CheckFailure(
                f"{name} changed its argument {arg_name} in place (for example with "
                f"{arg_name} -= ... or {arg_name} *= ..., which write into the caller's array). "
                "Compute a new array instead: the caller still needs the original."
            )
    return result


def _unpack(result, count: int, name: str, spelled: str) -> tuple:
    """The learner's tuple result, or a CheckFailure saying what came back instead."""
    if not isinstance(result, (tuple, list)) or len(result) != count:
        got = f"a {type(result).__name__}"
        if isinstance(result, (tuple, list)):
            got += f" of length {len(result)}"
        raise CheckFailure(f"{name} must return a tuple {spelled}; it returned {got}.")
    return tuple(result)


def _own_forward_gradient(name: str, forward: Callable, at: np.ndarray, dout) -> np.ndarray:
    """Centered difference of ``sum(forward(z)[0] * dout)`` at a copy of ``at``, torch forbidden.

    The copy matters: a lambda that ignored z and closed over the original array would see no
    change and give a zero gradient, instead of passing by accident.
    """
    return call_without_torch(
        numerical_gradient, lambda z: forward(z)[0], at.copy(), dout, name=name
    )


def _agrees_with_own_forward(name: str, got, numerical: np.ndarray) -> float:
    """Compare an analytic gradient with a finite difference of the learner's own forward."""
    try:
        return assert_close(name, got, numerical, tol=FINITE_DIFFERENCE)
    except CheckFailure as failure:
        raise CheckFailure(
            f"{failure} Your backward matches PyTorch but not your own forward: the forward is "
            "the one to fix (run its check above)."
        ) from None


def _visible_batches() -> list[Case]:
    return [make_case((4, 3), 0, "x of shape (4, 3)")]


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


def _check_param_gradient_shape(name: str, value, n: int, d: int) -> None:
    """A parameter of shape (D,) gets a gradient of shape (D,); name the usual wrong shapes."""
    shape = np.shape(value)
    if shape == (d,):
        return
    if shape == (n, d):
        hint = (
            "one gradient per row. The parameter is shared by all N rows of the batch, so its "
            "gradient is the sum of the rows' contributions: sum over axis 0."
        )
    elif shape == (1, d):
        hint = "a sum with keepdims=True; drop keepdims to get shape (D,)."
    elif shape == (n,):
        hint = f"{WRONG_AXIS}."
    else:
        hint = "the parameter has shape (D,), and so must its gradient."
    raise CheckFailure(f"{name} has shape {shape}, expected ({d},): {hint}")


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


def check_numerical_gradient(fn: Callable) -> None:
    """Visible check of ``numerical_gradient(f, x, dout=None, h=1e-5)`` against autograd."""
    errors = _numerical_gradient_errors(fn, _visible_gradient_cases())
    report("numerical_gradient vs PyTorch autograd", max(errors), FINITE_DIFFERENCE)


def check_numerical_gradient_hidden(fn: Callable) -> None:
    """Hidden check of ``numerical_gradient``: 3-D and strided x, a view-returning f, h used."""
    errors = _numerical_gradient_errors(fn, _hidden_gradient_cases())
    report("numerical_gradient on the hidden cases", max(errors), FINITE_DIFFERENCE)
    report("numerical_gradient with h=1e-3 vs the centered difference", _step_error(fn))


# --- exercise 3: scale_shift_forward / scale_shift_backward --------------------------------


def _run_scale_shift_forward(forward: Callable, case: Case) -> tuple:
    result = _guarded_call(
        "scale_shift_forward", forward, (case.x, case.gamma, case.beta), ("x", "gamma", "beta")
    )
    return _unpack(result, 2, "scale_shift_forward", "(out, cache)")


def _scale_shift_forward_error(forward: Callable, case: Case) -> float:
    out, _ = _run_scale_shift_forward(forward, case)
    expected = to_numpy(as_tensor(case.x) * as_tensor(case.gamma) + as_tensor(case.beta))
    mistakes = {
        "gamma and beta swapped (x * beta + gamma)": case.x * case.beta + case.gamma,
        "beta is missing (x * gamma)": case.x * case.gamma,
        "gamma is missing (x + beta)": case.x + case.beta,
    }
    return assert_close(f"scale_shift_forward [{case.label}]", out, expected, mistakes)


def check_scale_shift_forward(forward: Callable) -> None:
    """Visible check of ``scale_shift_forward(x, gamma, beta) -> (out, cache)``."""
    report("scale_shift_forward", _scale_shift_forward_error(forward, _visible_batches()[0]))


def check_scale_shift_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``scale_shift_forward`` on every hidden batch."""
    errors = [_scale_shift_forward_error(forward, case) for case in _hidden_batches()]
    report("scale_shift_forward on the hidden cases", max(errors))


def _scale_shift_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma, dbeta for out = x * gamma + beta."""
    dout, x = case.dout, case.x
    return {
        "dx": {
            "dx is missing the factor gamma (dx = dout)": dout,
            "dx was multiplied by x instead of gamma": dout * x,
        },
        "dgamma": {
            "dgamma and dbeta swapped (dgamma = sum of dout)": dout.sum(axis=0),
            BATCH_MEAN: (dout * x).mean(axis=0),
            WRONG_AXIS: (dout * x).sum(axis=1),
            "dgamma summed dout * out instead of dout * x": (
                dout * (x * case.gamma + case.beta)
            ).sum(axis=0),
        },
        "dbeta": {
            "dgamma and dbeta swapped (dbeta = sum of dout * x)": (dout * x).sum(axis=0),
            BATCH_MEAN: dout.mean(axis=0),
            WRONG_AXIS: dout.sum(axis=1),
        },
    }


def _scale_shift_backward_errors(backward: Callable, forward: Callable, case: Case):
    """(error vs autograd, error vs finite differences of the learner's forward) on one case."""
    n, d = case.x.shape
    _, cache = _run_scale_shift_forward(forward, case)
    result = _guarded_call("scale_shift_backward", backward, (case.dout, cache), ("dout", "cache"))
    got = dict(
        zip(
            GRADIENT_NAMES,
            _unpack(result, 3, "scale_shift_backward", "(dx, dgamma, dbeta)"),
            strict=True,
        )
    )
    _check_param_gradient_shape(f"dgamma [{case.label}]", got["dgamma"], n, d)
    _check_param_gradient_shape(f"dbeta [{case.label}]", got["dbeta"], n, d)
    expected = _torch_gradients(
        lambda x, g, b: x * g + b, [case.x, case.gamma, case.beta], case.dout
    )
    mistakes = _scale_shift_mistakes(case)
    against_torch = max(
        assert_close(f"scale_shift_backward: {part} [{case.label}]", got[part], ref, mistakes[part])
        for part, ref in zip(GRADIENT_NAMES, expected, strict=True)
    )
    # Each lambda perturbs its own argument z, which is handed a copy.
    name, x, gamma, beta = "scale_shift_forward", case.x, case.gamma, case.beta
    numerical = [
        _own_forward_gradient(name, lambda z: forward(z, gamma, beta), x, case.dout),
        _own_forward_gradient(name, lambda z: forward(x, z, beta), gamma, case.dout),
        _own_forward_gradient(name, lambda z: forward(x, gamma, z), beta, case.dout),
    ]
    against_fd = max(
        _agrees_with_own_forward(
            f"scale_shift_backward: {part} vs finite differences [{case.label}]", got[part], num
        )
        for part, num in zip(GRADIENT_NAMES, numerical, strict=True)
    )
    return against_torch, against_fd


def _report_backward(name: str, errors: list[tuple[float, float]]) -> None:
    report(f"{name} vs PyTorch autograd", max(e[0] for e in errors))
    report(
        f"{name} vs finite differences of your forward",
        max(e[1] for e in errors),
        FINITE_DIFFERENCE,
    )


def check_scale_shift_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``scale_shift_backward(dout, cache) -> (dx, dgamma, dbeta)``."""
    errors = [_scale_shift_backward_errors(backward, forward, c) for c in _visible_batches()]
    _report_backward("scale_shift_backward", errors)


def check_scale_shift_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``scale_shift_backward`` on every hidden batch."""
    errors = [_scale_shift_backward_errors(backward, forward, c) for c in _hidden_batches()]
    _report_backward("scale_shift_backward on the hidden cases", errors)


# --- exercise 4: center_forward / center_backward ------------------------------------------


def _centered(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def _center_forward_mistakes(x: np.ndarray) -> dict[str, np.ndarray]:
    mistakes = {
        "each row's mean (axis=1) was subtracted instead of each feature's mean over the batch "
        "(axis=0)": x - x.mean(axis=1, keepdims=True),
        "the mean of the whole array (np.mean without axis) was subtracted": x - x.mean(),
    }
    if x.shape[0] == x.shape[1]:
        rows_broadcast = (
            "the row means (axis=1, no keepdims) were subtracted, and broadcasting lined them up "
            "with the columns"
        )
        mistakes[rows_broadcast] = x - x.mean(axis=1)
    return mistakes


def _center_backward_mistakes(dout: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "the '- mean of dout' term is missing (dx = dout): every output row depends on every "
        "input row through the batch mean": dout,
        "the mean of dout was taken over axis 1 instead of over the batch (axis 0)": (
            dout - dout.mean(axis=1, keepdims=True)
        ),
        "the mean of the whole dout was subtracted (np.mean without axis)": dout - dout.mean(),
        "the mean term was added instead of subtracted": dout + dout.mean(axis=0),
    }


def _run_center_forward(forward: Callable, case: Case) -> tuple:
    result = _guarded_call("center_forward", forward, (case.x,), ("x",))
    return _unpack(result, 2, "center_forward", "(out, cache)")


def _center_forward_error(forward: Callable, case: Case) -> float:
    out, _ = _run_center_forward(forward, case)
    expected = to_numpy(_centered(as_tensor(case.x)))
    mistakes = _center_forward_mistakes(case.x)
    return assert_close(f"center_forward [{case.label}]", out, expected, mistakes)


def check_center_forward(forward: Callable) -> None:
    """Visible check of ``center_forward(x) -> (out, cache)``."""
    report("center_forward", _center_forward_error(forward, _visible_batches()[0]))


def check_center_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``center_forward`` on every hidden batch."""
    errors = [_center_forward_error(forward, case) for case in _hidden_batches()]
    report("center_forward on the hidden cases", max(errors))


def _center_backward_errors(backward: Callable, forward: Callable, case: Case):
    """(error vs autograd, error vs finite differences of the learner's forward) on one case."""
    _, cache = _run_center_forward(forward, case)
    dx = _guarded_call("center_backward", backward, (case.dout, cache), ("dout", "cache"))
    (expected,) = _torch_gradients(_centered, [case.x], case.dout)
    against_torch = assert_close(
        f"center_backward [{case.label}]", dx, expected, _center_backward_mistakes(case.dout)
    )
    numerical = _own_forward_gradient("center_forward", forward, case.x, case.dout)
    against_fd = _agrees_with_own_forward(
        f"center_backward vs finite differences [{case.label}]", dx, numerical
    )
    return against_torch, against_fd


def check_center_backward(backward: Callable, forward: Callable) -> None:
    """Visible check of ``center_backward(dout, cache) -> dx``."""
    errors = [_center_backward_errors(backward, forward, c) for c in _visible_batches()]
    _report_backward("center_backward", errors)


def check_center_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of ``center_backward`` on every hidden batch."""
    errors = [_center_backward_errors(backward, forward, c) for c in _hidden_batches()]
    _report_backward("center_backward on the hidden cases", errors)
