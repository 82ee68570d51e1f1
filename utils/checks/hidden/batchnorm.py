"""Lessons 02 and 03's hidden checks (the visible ones: ``utils.checks.batchnorm``)."""

from __future__ import annotations

from collections.abc import Callable

from utils.checks.batchnorm import (
    STAGED_RULE,
    _cache_error,
    _check_backward_on,
    _check_closed_form_on,
    _forward_error,
    _name,
    _statistics_error,
    run_forward,
)
from utils.checks.hidden.cases import hidden_cases
from utils.diagnose import on_cases
from utils.diagnose import report as report_line
from utils.guard import names_refused


def check_batch_statistics_hidden(batch_statistics: Callable) -> None:
    """Hidden check of ``batch_statistics`` on every hidden case."""
    cases = hidden_cases()
    err = on_cases(cases, lambda c: _statistics_error(batch_statistics, c))
    report_line(f"{_name(batch_statistics)} on {len(cases)} hidden cases", err)


def check_batchnorm_forward_hidden(forward: Callable) -> None:
    """Hidden check of ``batchnorm_forward`` on every hidden case."""
    cases = hidden_cases()
    err = on_cases(cases, lambda c: _forward_error(forward, c))
    report_line(f"{_name(forward)} on {len(cases)} hidden cases", err)


def check_batchnorm_cache_hidden(forward: Callable) -> None:
    """Hidden check of ``forward``'s cache on every hidden case."""
    cases = hidden_cases()
    err = on_cases(cases, lambda c: _cache_error(run_forward(forward, c)[1], c))
    report_line(f"{_name(forward)} cache on {len(cases)} hidden cases", err)


def check_batchnorm_backward_hidden(backward: Callable, forward: Callable) -> None:
    """Hidden check of a backward on every hidden case."""
    cases = hidden_cases()
    _check_backward_on(backward, forward, cases, f" on {len(cases)} hidden cases")


def check_batchnorm_backward_staged_hidden(backward: Callable, forward: Callable) -> None:
    """``check_batchnorm_backward_hidden`` with the learner's ``batchnorm_backward`` refused."""
    with names_refused((backward, forward), ("batchnorm_backward",), STAGED_RULE):
        check_batchnorm_backward_hidden(backward, forward)


def check_batchnorm_backward_closed_form_hidden(backward: Callable) -> None:
    """Hidden check of the closed form's cache use on every hidden case."""
    cases = hidden_cases()
    _check_closed_form_on(backward, cases, f" on {len(cases)} hidden cases")
