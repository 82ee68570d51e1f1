"""Checks for lessons 02 and 03: batch statistics, the BatchNorm forward, its cache, and the
staged and closed-form backward.

Each check runs the learner's function (through ``call_without_torch``) on seeded cases from
``utils.cases``, compares with the PyTorch references of ``utils.reference`` in float64 and
prints one line per passing part. A failure raises ``CheckFailure`` whose message names the
case and, through the variants of ``utils.mistakes``, the likely mistake. Gradients are
checked twice: against autograd and against centered differences of the learner's own forward.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import mistakes, reference
from utils.cases import Case, visible_case
from utils.checks.twins import On, paired
from utils.diagnose import (
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
from utils.gradcheck import numerical_gradient
from utils.guard import call_without_torch, names_refused

CACHE_KEYS = ("x", "gamma", "beta", "eps", "mean", "var", "x_hat", "inv_std")
"""What every batchnorm_forward cache holds (DESIGN.md); later lessons rely on these keys."""

STEP_PER_SPREAD = 1e-4
"""Finite-difference step for x, as a fraction of the smallest sqrt(var + eps) of the batch:
large enough to beat roundoff, small enough that a near-constant feature stays smooth."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


def _per_feature(value, what: str, case: Case) -> np.ndarray:
    """``value`` as a (D,) float64 array; (1, D) (keepdims) is accepted too."""
    n, d = case.x.shape
    arr = as_float_array(value, what)
    if arr.shape in ((d,), (1, d)):
        return arr.reshape(d)
    hint = " (one value per sample: reduce over the batch, axis=0)" if arr.shape == (n,) else ""
    raise CheckFailure(f"{what} has shape {arr.shape}; expected one per feature, ({d},){hint}.")


GRADIENTS = ("dx", "dgamma", "dbeta")


# --- batch statistics (warm-up of lesson 02) ------------------------------------------------


def _statistics_error(batch_statistics: Callable, case: Case) -> float:
    given = case.fresh()
    result = call_without_torch(batch_statistics, given.x, name=_name(batch_statistics))
    assert_unchanged(case.x, given.x, _name(batch_statistics), "x")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{_name(batch_statistics)} must return a tuple (mean, var).")
    mean, var = (_per_feature(v, k, case) for v, k in zip(result, ("mean", "var"), strict=True))
    expected_mean, expected_var = reference.batch_statistics_reference(case.x)
    wrong = mistakes.statistics_mistakes(case)
    return max(
        assert_close("mean", mean, expected_mean),
        assert_close("var", var, expected_var, mistakes=wrong["var"]),
    )


@paired(lambda: On([visible_case()], " (mean, var)"))
def check_batch_statistics(on: On, batch_statistics: Callable) -> None:
    """Visible check of ``batch_statistics(x) -> (mean, var)`` on the small fixed case."""
    err = on_cases(on.cases, lambda c: _statistics_error(batch_statistics, c))
    report_line(f"{_name(batch_statistics)}{on.label}", err)


# --- forward --------------------------------------------------------------------------------


def run_forward(forward: Callable, case: Case) -> tuple[np.ndarray, dict]:
    """The learner's ``forward(x, gamma, beta, eps)`` on fresh copies of ``case``: (out, cache).

    Raises CheckFailure when it returns something other than (out, cache) or modifies x.
    """
    given = case.fresh()
    result = call_without_torch(
        forward, given.x, given.gamma, given.beta, given.eps, name=_name(forward)
    )
    assert_unchanged(case.x, given.x, _name(forward), "x")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{_name(forward)} must return a tuple (out, cache).")
    out, cache = result
    return as_float_array(out, "out", case.x.shape), cache


def _forward_error(forward: Callable, case: Case) -> float:
    out, _ = run_forward(forward, case)
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    return assert_close("out", out, expected, mistakes=mistakes.forward_mistakes(case))


DEFAULT_EPS = 1e-5
"""The contract's (and PyTorch's) default eps of every batch-norm forward."""


def check_default_eps(forward: Callable, case: Case, reference_forward: Callable) -> None:
    """Called without eps, ``forward`` must use the contract's default, ``DEFAULT_EPS``.

    Every other call passes eps explicitly, so a wrong default in the signature would go
    unnoticed. reference_forward(x, gamma, beta, eps) -> out is the PyTorch reference.
    """
    given = case.fresh()
    result = call_without_torch(forward, given.x, given.gamma, given.beta, name=_name(forward))
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{_name(forward)} must return a tuple (out, cache).")
    out = as_float_array(result[0], "out", case.x.shape)
    expected = reference_forward(case.x, case.gamma, case.beta, DEFAULT_EPS)
    assert_default_eps(_name(forward), out, expected, DEFAULT_EPS)


def check_batchnorm_forward(forward: Callable) -> None:
    """Visible check of ``batchnorm_forward`` against F.batch_norm on the small fixed case,
    called with eps and without it (the default)."""
    err = on_cases([visible_case()], lambda c: _forward_error(forward, c))
    check_default_eps(forward, visible_case(), reference.batchnorm_forward_reference)
    report_line(_name(forward), err)


# --- cache ----------------------------------------------------------------------------------


def _cache_error(cache, case: Case) -> float:
    """Check a forward's cache on ``case`` against the contract and the reference."""
    if not isinstance(cache, dict):
        raise CheckFailure(f"the cache must be a dict, got {type(cache).__name__}.")
    missing = [key for key in CACHE_KEYS if key not in cache]
    if missing:
        raise CheckFailure(
            f"the cache is missing {', '.join(map(repr, missing))}; it must hold at least "
            f"{', '.join(CACHE_KEYS)}."
        )
    if not np.array_equal(cache["eps"], case.eps):
        raise CheckFailure(f"cache['eps'] is {cache['eps']!r}, not the eps that was passed.")
    expected = reference.batchnorm_statistics_reference(case.x, case.eps)
    wrong = mistakes.statistics_mistakes(case)
    errors = [
        assert_close("cache['x']", cache["x"], case.x),
        assert_close("cache['gamma']", cache["gamma"], case.gamma),
        assert_close("cache['beta']", cache["beta"], case.beta),
        assert_close("cache['x_hat']", cache["x_hat"], expected["x_hat"], mistakes=wrong["x_hat"]),
    ]
    for key in ("mean", "var", "inv_std"):
        value = _per_feature(cache[key], f"cache[{key!r}]", case)
        errors.append(
            assert_close(f"cache[{key!r}]", value, expected[key], mistakes=wrong.get(key))
        )
    return max(errors)


@paired(lambda: On([visible_case()], f" ({', '.join(CACHE_KEYS)})"))
def check_batchnorm_cache(on: On, forward: Callable) -> None:
    """Visible check that ``forward``'s cache holds the contract's keys with correct values."""
    err = on_cases(on.cases, lambda c: _cache_error(run_forward(forward, c)[1], c))
    report_line(f"{_name(forward)} cache{on.label}", err)


# --- backward -------------------------------------------------------------------------------


def reference_cache(case: Case) -> dict:
    """A cache with exactly the contract's keys, made from the reference statistics."""
    return {
        "x": case.x.copy(),
        "gamma": case.gamma.copy(),
        "beta": case.beta.copy(),
        "eps": case.eps,
        **reference.batchnorm_statistics_reference(case.x, case.eps),
    }


def _forward_problem(forward: Callable, case: Case) -> tuple[str | None, dict | None]:
    """(None, the learner's cache) when ``forward`` is right on ``case``, else (why, None)."""
    try:
        out, cache = run_forward(forward, case)
        expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
        assert_close("out", out, expected, mistakes=mistakes.forward_mistakes(case))
        _cache_error(cache, case)
    except CheckFailure as failure:
        return str(failure), None
    return None, cache


def _run_backward(backward: Callable, case: Case, cache: dict) -> tuple[np.ndarray, ...]:
    """The learner's ``backward(dout, cache)`` as three float64 arrays (dx, dgamma, dbeta)."""
    dout = case.dout.copy()
    result = call_without_torch(backward, dout, cache, name=_name(backward))
    assert_unchanged(case.dout, dout, _name(backward), "dout")
    if not (isinstance(result, tuple) and len(result) == 3):
        raise CheckFailure(f"{_name(backward)} must return a tuple (dx, dgamma, dbeta).")
    shapes = (case.x.shape, case.gamma.shape, case.beta.shape)
    return tuple(
        as_float_array(g, n, s)
        for g, n, s in zip(result, ("dx", "dgamma", "dbeta"), shapes, strict=True)
    )


def _finite_differences(forward: Callable, case: Case) -> tuple[np.ndarray, ...]:
    """Centered differences of ``sum(forward(x, gamma, beta, eps)[0] * dout)`` with respect
    to x, gamma and beta. Each lambda perturbs its own argument, never a captured array."""
    x, gamma, beta = case.fresh().x, case.gamma.copy(), case.beta.copy()
    spread = np.sqrt(np.min(case.x.var(axis=0)) + case.eps)
    h_x = STEP_PER_SPREAD * min(1.0, spread)
    return (
        numerical_gradient(lambda x_: forward(x_, gamma, beta, case.eps)[0], x, case.dout, h_x),
        numerical_gradient(lambda g_: forward(x, g_, beta, case.eps)[0], gamma, case.dout),
        numerical_gradient(lambda b_: forward(x, gamma, b_, case.eps)[0], beta, case.dout),
    )


def _reference_forward(x, gamma, beta, eps):
    """PyTorch's forward in the shape of a learner's: (out, no cache)."""
    return reference.batchnorm_forward_reference(x, gamma, beta, eps), None


def _backward_errors(backward: Callable, forward: Callable, case: Case) -> tuple:
    """(error against autograd, error against finite differences, note or None) of
    ``backward`` on ``case``.

    The backward runs on the cache of the learner's forward. When that forward is wrong, it
    runs on a reference cache and is compared with differences of PyTorch's forward instead;
    only when it fails there too is the forward blamed ("fix batchnorm_forward first").
    """
    problem, cache = _forward_problem(forward, case)
    if problem is not None:
        cache = reference_cache(case)
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    try:
        grads = _run_backward(backward, case, cache)
        err_autograd = compare_gradients(
            GRADIENTS, grads, expected, mistakes.backward_mistakes(case)
        )
    except (CheckFailure, KeyError) as failure:
        if problem is None:
            raise
        raise CheckFailure(
            f"fix {_name(forward)} first: {problem} (The backward is checked on the cache your "
            f"forward makes; on a reference cache {_name(backward)} gave "
            f"{type(failure).__name__}: {failure})"
        ) from None
    if problem is None:
        numeric = call_without_torch(_finite_differences, forward, case, name=_name(forward))
        differenced = f"your {_name(forward)}"
    else:
        numeric, differenced = _finite_differences(_reference_forward, case), "PyTorch's forward"
    err_fd = compare_with_differences(GRADIENTS, grads, numeric, differenced)
    note = None
    if problem is not None:
        note = (
            f"note: {_name(forward)} is wrong, so {_name(backward)} was checked on a reference "
            f"cache; fix the forward too. {problem}"
        )
    return err_autograd, err_fd, note


def _check_backward_on(backward: Callable, forward: Callable, cases: list[Case], label: str):
    check_backward_on(
        cases,
        lambda case: _backward_errors(backward, forward, case),
        f"{_name(backward)}{label}",
        "dx, dgamma, dbeta",
        "the forward",
    )


@paired(lambda: On([visible_case()]))
def check_batchnorm_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of a backward ``(dout, cache) -> (dx, dgamma, dbeta)`` (staged or closed
    form) on the small fixed case, with the cache made by ``forward``."""
    _check_backward_on(backward, forward, on.cases, on.label)


# --- staged and closed form: what each exercise asks for -------------------------------------

CLOSED_FORM_KEYS = ("gamma", "x_hat", "inv_std")
"""The cache entries the closed-form backward needs; lesson 03 says so, its check enforces it."""

STAGED_RULE = (
    "the staged backward walks the chain of stages itself; it may not call the closed form."
)
CLOSED_FORM_RULE = "the closed form is one expression of its own, not the staged backward."


@paired(lambda: On([visible_case()]))
def check_batchnorm_backward_staged(on: On, backward: Callable, forward: Callable) -> None:
    """``check_batchnorm_backward`` with the learner's ``batchnorm_backward`` refused."""
    with names_refused((backward, forward), ("batchnorm_backward",), STAGED_RULE):
        check_batchnorm_backward.body(on, backward, forward)


def _closed_form_error(backward: Callable, case: Case) -> float:
    """Error of ``backward`` on a cache holding only ``CLOSED_FORM_KEYS`` (reference values)."""
    cache = {key: value for key, value in reference_cache(case).items() if key in CLOSED_FORM_KEYS}
    try:
        grads = _run_backward(backward, case, cache)
    except KeyError as missing:
        key = str(missing.args[0] if missing.args else "").strip("'\"")  # graded: a message
        raise CheckFailure(
            f"{_name(backward)} read cache[{key!r}]; the closed form needs only "
            f"{', '.join(CLOSED_FORM_KEYS)} from the cache (and N = dout.shape[0]): write dx "
            "with x_hat and inv_std instead of x, mean or var."
        ) from None
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    return compare_gradients(GRADIENTS, grads, expected, mistakes.backward_mistakes(case))


def _check_closed_form_on(backward: Callable, cases: list[Case], label: str) -> None:
    with names_refused((backward,), ("batchnorm_backward_staged",), CLOSED_FORM_RULE):
        err = on_cases(cases, lambda case: _closed_form_error(backward, case))
    report_line(f"{_name(backward)} from {', '.join(CLOSED_FORM_KEYS)} alone{label}", err)


@paired(lambda: On([visible_case()]))
def check_batchnorm_backward_closed_form(on: On, backward: Callable) -> None:
    """Visible check that ``backward`` is a closed form: right from a cache that holds only
    gamma, x_hat and inv_std, without calling the staged backward."""
    _check_closed_form_on(backward, on.cases, on.label)
