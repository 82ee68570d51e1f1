"""What a student reads first about a graded notebook: one row per test — points, PASS/FAIL and
the hint in plain words, the named mistake first and the numbers after — and the total.

The same rows make the table at the top of each feedback page (``summary_html``) and the lines
``grader check`` prints for self-study (``summary_lines``), so the two cannot drift. A check's
failure message reads ``CheckFailure: [case] out: relative error 2.8e-06 against the
reference (must be below 1e-08). Likely mistake: it looks like <mistake>``; ``hint_of`` splits
it into the hint (``<mistake>``) and the details (the case and the numbers).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from grader.results import CellGrade
from grader.score import points_text

LIKELY = "Likely mistake:"
NAMED = "it looks like "
_CHECK_FAILURE = re.compile(r"^CheckFailure:\s*")


@dataclass(frozen=True)
class Hint:
    """A failure message split for a reader: ``text`` in plain words (the named mistake when a
    known-wrong variant matched), ``details`` (which case, which output, the numbers; may be
    empty), and ``mistake`` (the named mistake alone, None when none matched)."""

    text: str
    details: str
    mistake: str | None


def hint_of(message: str) -> Hint:
    """``message`` (a test's failure message, any text) split into a ``Hint``; a message
    without ``Likely mistake:`` is all hint, on one line."""
    one_line = " ".join(line.strip() for line in (message or "").splitlines() if line.strip())
    one_line = _CHECK_FAILURE.sub("", one_line)
    before, found, after = one_line.partition(LIKELY)
    if not found:
        return Hint(one_line, "", None)
    text, details = after.strip(), before.strip()
    mistake = None
    if text.startswith(NAMED):
        text = text[len(NAMED) :]
        mistake = text.rstrip(".")
    return Hint(text, details, mistake)


def _points(test: CellGrade) -> str:
    score = "?" if test.score is None and test.manual else points_text(test.score or 0.0)
    return f"{score}/{points_text(test.max_score)}"


def _manual_state(test: CellGrade) -> str:
    if test.message:
        return test.message
    return "needs a human grader" if test.score is None else "no answer written"


def verdict_word(test: CellGrade) -> str:
    """``PASS``, ``FAIL``, or ``HUMAN`` for a written answer (graded by a person)."""
    if test.manual:
        return "HUMAN"
    return "PASS" if test.passed else "FAIL"


def total_text(tests: list[CellGrade]) -> str:
    """``total 3/7 auto-graded points``, then what the written answers add or await:
    ``; written answers: 2 points still to be graded by hand``."""
    auto = [t for t in tests if not t.manual]
    got, top = sum(t.score or 0 for t in auto), sum(t.max_score for t in auto)
    total = f"total {points_text(got)}/{points_text(top)} auto-graded points"
    scored = [t for t in tests if t.manual and t.score is not None]
    pending = sum(t.max_score for t in tests if t.manual and t.score is None)
    parts = []
    if scored:
        got_by_hand = points_text(sum(t.score for t in scored))
        parts.append(f"{got_by_hand}/{points_text(sum(t.max_score for t in scored))} points")
    if pending:
        parts.append(f"{points_text(pending)} points still to be graded by hand")
    if parts:
        total += f"; written answers: {', '.join(parts)}"
    return total


def summary_lines(tests: list[CellGrade]) -> list[str]:
    """One line per test — ``FAIL  test_x  0/3  <hint>`` — the details indented on the next
    line, then the total."""
    width = max((len(t.grade_id) for t in tests), default=0)
    lines = []
    for t in tests:
        head = f"{verdict_word(t):<5} {t.grade_id:<{width}}  {_points(t)}"
        if t.manual:
            lines.append(f"{head}  {_manual_state(t)}")
        elif t.passed:
            lines.append(head)
        else:
            hint = hint_of(t.message)
            lines.append(f"{head}  {hint.text}".rstrip())
            if hint.details:
                lines.append(f"{'':<{width + 8}}{hint.details}")
    lines.append(total_text(tests))
    return lines


def summary_html(student: str, assignment: str, notebook: str, tests: list[CellGrade]) -> str:
    """The top of a feedback page: who and what, the total, and a table with one row per test
    (points, PASS/FAIL, the hint) linking to the test's cell (``#<grade_id>``). Every string
    is escaped."""
    e = html.escape
    rows = "".join(_html_row(t) for t in tests)
    return (
        '<section class="normlab-summary" id="summary">'
        f"<h1>Feedback on {e(assignment)}</h1>"
        f'<p class="normlab-who">Student <b>{e(student)}</b> &middot; lesson <b>{e(assignment)}'
        f"</b> &middot; notebook {e(notebook)}.ipynb</p>"
        f'<p class="normlab-total">{e(_sentence(total_text(tests)))}</p>'
        '<table class="normlab-tests"><thead><tr><th>Test</th><th>Points</th><th>Result</th>'
        f"<th>What to fix</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _html_row(test: CellGrade) -> str:
    e = html.escape
    word = verdict_word(test)
    if test.manual:
        hint = e(_manual_state(test))
    elif test.passed:
        hint = ""
    else:
        found = hint_of(test.message)
        hint = f'<span class="normlab-hint">{e(found.text)}</span>'
        if found.details:
            hint += f'<br><span class="normlab-details">{e(found.details)}</span>'
    return (
        f'<tr class="normlab-{word.lower()}">'
        f'<td><a href="#{e(test.grade_id, quote=True)}">{e(test.grade_id)}</a></td>'
        f"<td>{e(_points(test))}</td><td>{word}</td><td>{hint}</td></tr>"
    )
