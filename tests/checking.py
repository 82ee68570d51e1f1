"""Helpers the check-family tests (``tests/test_checks_*.py``) share."""

from __future__ import annotations

import pytest

from utils.diagnose import CheckFailure


def fails(check, *args, match: str) -> str:
    """``check(*args)`` must raise CheckFailure with ``match`` in its message; returns it."""
    with pytest.raises(CheckFailure) as info:
        check(*args)
    assert match in str(info.value), str(info.value)
    return str(info.value)


def frozen(forward):
    """``forward(x, gamma, beta, eps)`` that answers each (shape of x, gamma, beta, eps) once
    and then repeats itself: it ignores a perturbation of x, so its centered differences with
    respect to x are zero, which a backward check must catch."""
    memo = {}

    def frozen_forward(x, gamma, beta, eps=1e-5):
        key = (x.shape, gamma.tobytes(), beta.tobytes(), eps)
        if key not in memo:
            memo[key] = forward(x.copy(), gamma, beta, eps)
        return memo[key]

    return frozen_forward
