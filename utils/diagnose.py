"""Compare a learner's result with the reference and, when it is wrong, name the likely mistake.

A check computes the reference (PyTorch, float64) and a set of known-wrong variants of the
same computation on the same input (``utils.mistakes``). When the learner's array is not
close to the reference, the variant it *is* close to names the mistake in the message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from utils.gradcheck import relative_error

TIGHT = 1e-8
"""Tolerance for float64 results against PyTorch. Correct code lands near 1e-15; the
classic eps-outside-the-sqrt mistake is off by about 1e-6 to 1e-5, so 1e-8 separates them."""

FINITE_DIFFERENCE = 1e-6
"""Tolerance for an analytic gradient against a centered finite difference (h=1e-5)."""

MATCH = 1e-6
"""How close the learner's result must be to a known-wrong variant to name it."""


class CheckFailure(AssertionError):
    """A check failed; the message says what was expected, what came back and why."""


def as_float_array(value, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The learner's ``value`` as a float64 array, or a CheckFailure that says what is wrong."""
    if value is None:
        raise CheckFailure(f"{name} is None: did the function forget to return it?")
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):  # a float cast would warn on stderr and drop the imaginary part
            raise CheckFailure(f"{name} is complex: a square root of a negative number?")
        arr = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckFailure(
            f"{name} is not a numeric array ({type(value).__name__}): {exc}"
        ) from None
    if shape is not None and arr.shape != tuple(shape):
        hint = " (transposed?)" if arr.shape == tuple(shape)[::-1] else ""
        raise CheckFailure(f"{name} has shape {arr.shape}, expected {tuple(shape)}{hint}.")
    if not np.all(np.isfinite(arr)):
        raise CheckFailure(f"{name} contains NaN or inf: a division by a zero variance?")
    return arr


def name_mistake(got: np.ndarray, mistakes: Mapping[str, np.ndarray]) -> str | None:
    """The description of the known-wrong variant closest to ``got``, if one is within MATCH."""
    best, best_err = None, MATCH
    for description, wrong in mistakes.items():
        wrong = np.asarray(wrong, dtype=np.float64)
        if wrong.shape != got.shape:
            continue
        err = relative_error(got, wrong)
        if err <= best_err:
            best, best_err = description, err
    return best


def generic_hint(got: np.ndarray, expected: np.ndarray) -> str:
    """A hint from the shape of the error when no known mistake matches."""
    if not np.any(got) and np.any(expected):
        return "the result is all zeros (an array created but never filled?)."
    if np.allclose(got, -expected, rtol=1e-6, atol=1e-12) and np.any(expected):
        return "the sign is flipped."
    ratio = np.divide(got, expected, out=np.full_like(got, np.nan), where=np.abs(expected) > 1e-9)
    finite = ratio[np.isfinite(ratio)]
    if finite.size and np.allclose(finite, finite[0], rtol=1e-6) and abs(finite[0] - 1) > 1e-6:
        factor = f"{finite[0]:.4g}"
        return f"off by a constant factor {factor} (a missing 1/N or a sum instead of a mean?)."
    return "no known mistake matches; compare your formula with the lesson's step by step."


def assert_close(
    name: str, got, expected, mistakes: Mapping[str, np.ndarray] | None = None, tol: float = TIGHT
) -> float:
    """Check ``got`` against ``expected`` (float64, same shape) within relative error ``tol``.

    Returns the relative error. Raises CheckFailure naming the likely mistake otherwise.
    """
    expected = np.asarray(expected, dtype=np.float64)
    got = as_float_array(got, name, expected.shape)
    err = relative_error(got, expected)
    if err <= tol:
        return err
    mistake = name_mistake(got, mistakes or {})
    hint = f"it looks like {mistake}" if mistake else generic_hint(got, expected)
    raise CheckFailure(
        f"{name}: relative error {err:.1e} against the reference (must be below {tol:.0e}). "
        f"Likely mistake: {hint}"
    )


def report(what: str, err: float, tol: float = TIGHT) -> None:
    """Print the one line a learner sees after a passing check."""
    print(f"{what}: max relative error {err:.1e} (below {tol:.0e}) — correct")


def report_gradients(what: str, errors: Iterable[tuple[float, float]], differenced: str) -> None:
    """The two lines after a passing gradient check: the largest error against autograd and
    against the centered differences of ``differenced``, over (autograd, differences) pairs."""
    errors = list(errors)
    report(f"{what} vs PyTorch autograd", max(e[0] for e in errors))
    report(f"{what} vs {differenced}", max(e[1] for e in errors), FINITE_DIFFERENCE)


def noted(note: str, check: Callable, *args, **kwargs):
    """``check(*args, **kwargs)``; a CheckFailure it raises is raised again with ``note``
    after its message (say, what the comparison that failed means here)."""
    try:
        return check(*args, **kwargs)
    except CheckFailure as failure:
        raise CheckFailure(f"{failure} {note}") from None


def on_cases(cases: Iterable, check_one: Callable) -> float:
    """Run ``check_one`` on each case; a failure names the case (its ``label``).

    Returns the largest error ``check_one`` reported.
    """
    worst = 0.0
    for case in cases:
        try:
            worst = max(worst, check_one(case))
        except CheckFailure as failure:
            raise CheckFailure(f"[{case.label}] {failure}") from None
    return worst


def assert_unchanged(before, after, what: str, argument: str) -> None:
    """Fail when the learner's function ``what`` changed its input ``argument`` in place."""
    if not np.array_equal(before, after, equal_nan=True):
        raise CheckFailure(
            f"{what} changed its input {argument} in place; the caller still needs it. "
            "Work on new arrays (x - mean makes one) instead of -= or *=."
        )


def compare_gradients(names, grads, expected, wrong=None, tol: float = TIGHT) -> float:
    """``assert_close`` for each named gradient (``dx``, ``dgamma``, ...) in turn, naming a
    known-wrong variant from ``wrong`` (name -> {hint: array}); returns the largest error."""
    wrong = wrong or {}
    return max(
        assert_close(n, g, e, mistakes=wrong.get(n), tol=tol)
        for n, g, e in zip(names, grads, expected, strict=True)
    )


def compare_with_differences(names, grads, numeric, differenced: str) -> float:
    """``compare_gradients`` of the learner's gradients with centered differences ``numeric``
    of ``differenced`` (a forward), at ``FINITE_DIFFERENCE``. It runs after autograd agreed, so
    a failure points at that forward being inconsistent."""
    note = (
        f"(This compares with centered differences of {differenced}, while PyTorch's autograd "
        "agreed with your gradients: is that forward consistent?)"
    )
    return noted(note, compare_gradients, names, grads, numeric, tol=FINITE_DIFFERENCE)


def forward_first(forward_name: str, run: Callable, made: str = "the cache"):
    """``run()``, the learner's forward whose output (``made``) a backward check runs on; its
    failure becomes "fix <forward> first: ..." (a wrong forward is blamed before the backward,
    since the cache is the learner's own design and no reference cache can replace it)."""
    try:
        return run()
    except CheckFailure as failure:
        raise CheckFailure(
            f"fix {forward_name} first: the backward is checked on {made} your forward "
            f"makes. {failure}"
        ) from None


def check_backward_on(
    cases: Iterable,
    errors_of: Callable,
    name: str,
    compared: str,
    differenced: str,
    run: Callable = on_cases,
) -> None:
    """Run ``errors_of(case) -> (error vs autograd, error vs finite differences[, note])`` on
    every case through ``run`` (``on_cases``: a failure names its case), print the first note
    any case left, then one report line for autograd (of the gradients ``compared``) and one
    for the centered differences of ``differenced``."""
    results = []

    def check_one(case) -> float:
        results.append(errors_of(case))
        return results[-1][0]

    run(cases, check_one)
    notes = {r[2] for r in results if len(r) > 2 and r[2]}
    if notes:
        print(sorted(notes)[0])
    report(f"{name} vs PyTorch autograd ({compared})", max(r[0] for r in results))
    report(
        f"{name} vs centered differences of {differenced}",
        max(r[1] for r in results),
        FINITE_DIFFERENCE,
    )


def assert_default_eps(name: str, out, expected, default: float) -> None:
    """``out`` of the learner's ``name`` called without eps must equal ``expected``, the
    reference at the contract's ``default``: every other call passes eps explicitly, so a wrong
    default in the signature would otherwise go unnoticed."""
    if not relative_error(out, expected) <= TIGHT:
        raise CheckFailure(
            f"called without eps, {name} gives a different output than with eps={default:g}: "
            f"the default must be eps={default:g}, as in the contract (and PyTorch)."
        )
