"""Lessons 02 and 03's hidden checks (the visible ones: ``utils.checks.batchnorm``)."""

from __future__ import annotations

from collections.abc import Callable

from utils.checks.batchnorm import (
    _forward_error,
    _name,
    check_batch_statistics,
    check_batchnorm_backward,
    check_batchnorm_backward_closed_form,
    check_batchnorm_backward_staged,
    check_batchnorm_cache,
)
from utils.checks.hidden import hidden_twin
from utils.checks.hidden.cases import hidden_cases
from utils.checks.twins import On, counted
from utils.diagnose import on_cases
from utils.diagnose import report as report_line


def _hidden() -> On:
    return counted(hidden_cases(), " on {n} hidden cases")


check_batch_statistics_hidden = hidden_twin(check_batch_statistics, _hidden)
check_batchnorm_cache_hidden = hidden_twin(check_batchnorm_cache, _hidden)
check_batchnorm_backward_hidden = hidden_twin(check_batchnorm_backward, _hidden)
check_batchnorm_backward_staged_hidden = hidden_twin(check_batchnorm_backward_staged, _hidden)
check_batchnorm_backward_closed_form_hidden = hidden_twin(
    check_batchnorm_backward_closed_form, _hidden
)


def check_batchnorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``batchnorm_forward`` on every hidden case (unlike the visible check,
    without a call that leaves eps at its default)."""
    cases = hidden_cases()
    err = on_cases(cases, lambda c: _forward_error(forward, c))
    report_line(f"{_name(forward)} on {len(cases)} hidden cases", err)
