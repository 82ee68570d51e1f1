"""Check pairs from one definition: a visible check and its twins share their code.

A lesson's visible test cell calls ``check_x(fn)``; its hidden test cell calls
``check_x_hidden(fn)``, which runs the same code on other cases and labels its report line
as hidden. Both are made from one *body*, written once, whose first argument says what it
runs on (an ``On``, or whatever the family's body takes) and whose other arguments are the
check's own (the learner's functions or classes, passed positionally)::

    @paired(lambda: On([visible_case()], " (mean, var)"))
    def check_batch_statistics(on: On, batch_statistics: Callable) -> None:
        err = on_cases(on.cases, lambda c: _statistics_error(batch_statistics, c))
        report(f"{_name(batch_statistics)}{on.label}", err)

``check_batch_statistics(fn)`` then runs the body on what the lambda returns, built at call
time. ``utils.checks.hidden`` makes the twin with one declaration that names only its cases
(``hidden_twin(check_batch_statistics, lambda: On(hidden_cases(), ...))``, through ``twin``
here), so the hidden cases never sit in, nor are imported by, a visible module. Both keep the
body's signature without its first argument, so a caller passes the same arguments to either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class On(NamedTuple):
    """What one side of a pair runs on: its cases, the label (or label suffix) of its report
    line, and whether that line calls the cases hidden (for the engines that word it so)."""

    cases: Sequence
    label: str = ""
    hidden: bool = False


def counted(cases: Sequence, label: str, hidden: bool = False) -> On:
    """``On(cases, label)`` with ``{n}`` in ``label`` replaced by the number of cases."""
    cases = list(cases)
    return On(cases, label.format(n=len(cases)), hidden)


def paired(cases: Callable[[], Any]) -> Callable[[Callable], Callable]:
    """Decorator: ``body(on, *args)`` becomes the check ``name(*args)``, run on ``cases()``.

    The check keeps the body's name, docstring and module; ``twin`` makes its twins.
    """

    def decorate(body: Callable) -> Callable:
        return _bound(body, cases, body.__name__, body.__doc__, body.__module__)

    return decorate


def twin(check: Callable, cases: Callable[[], Any], suffix: str, doc: str) -> Callable:
    """The check ``check.__name__ + suffix``: ``check``'s body run on ``cases()``.

    Its module is the one ``cases`` was written in (the module that declares the twin).
    """
    body = getattr(check, "body", None)
    if body is None:
        raise TypeError(f"{check!r} was not made by @paired: it has no body to share")
    made = _bound(body, cases, check.__name__ + suffix, doc, cases.__module__)
    made.twin_of = check
    return made


def _bound(body: Callable, cases: Callable[[], Any], name: str, doc, module: str) -> Callable:
    def check(*args, **kwargs):
        return body(cases(), *args, **kwargs)

    signature = inspect.signature(body)
    check.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    check.__name__ = check.__qualname__ = name
    check.__doc__, check.__module__ = doc, module
    check.body = body
    return check
