"""The machinery lesson 07's four variants share: forward and backward comparisons, the
named mistakes (the hidden cases are in ``utils.checks.hidden.normalization_variants``)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np

from utils.cases import Case
from utils.checks.batchnorm import STEP_PER_SPREAD
from utils.checks.normalization_variants.cases import visible_case
from utils.checks.normalization_variants.forms import (
    Variant,
    _name,
    forward_reference,
    gradients_reference,
)
from utils.checks.normalization_variants.wrong import (
    _distinct,
    _float64,
    _plausible,
    backward_mistakes,
    forward_mistakes,
)
from utils.checks.twins import On
from utils.diagnose import (
    CheckFailure,
    assert_close,
    assert_default_eps,
    assert_unchanged,
    check_backward_on,
    compare_gradients,
    compare_with_differences,
    forward_first,
    on_cases,
)
from utils.diagnose import report as report_line
from utils.gradcheck import numerical_gradient
from utils.guard import call_without_torch

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
    _, cache = forward_first(_name(forward), lambda: _checked_forward(variant, forward, case))
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


def _visible(variant: Variant) -> On:
    return On([visible_case(variant)])
