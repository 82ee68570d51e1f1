"""The hidden cases and hidden checks of every lesson: read by the trusted checker only.

A lesson's hidden test cells (in the gradebook, never in the release) import their checks from
here: ``from utils.checks.hidden.batchnorm import check_batchnorm_forward_hidden``. Each module
is named after the check family it completes (``utils.checks.<family>`` holds the visible
checks and the engine both share; this package holds only which cases the hidden checks run and
how they are labelled). A grading kernel cannot read ``utils.checks`` at all (Landlock, see
``grader.policy``) and the student bundle (``grader.bundle``) leaves this package out, so the
hidden inputs reach a learner only as the arguments of a graded call, and their expected values
and the checks' code never do.

A hidden check is the twin of a visible one (``utils.checks.twins``): the visible check is
written once with ``@paired`` and its twin is one declaration naming only the hidden cases,

    check_layernorm_forward_hidden = hidden_twin(
        check_layernorm_forward, lambda: _hidden(LAYERNORM)
    )

so the two cannot drift apart. The few hidden checks whose code genuinely differs (more steps
than the visible check, not just other cases) are written out by hand and listed in
``tests/test_checks_twins.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from utils.checks.twins import twin


def hidden_twin(check: Callable, cases: Callable[[], Any]) -> Callable:
    """``check``'s hidden twin, ``<check>_hidden``: the same code run on ``cases()``, which
    returns what ``check``'s body takes first (usually ``utils.checks.twins.On``)."""
    doc = (
        f"Hidden check: ``{check.__name__}``'s code on the hidden cases "
        f"(its twin, made by ``hidden_twin``)."
    )
    return twin(check, cases, "_hidden", doc)
