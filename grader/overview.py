"""The instructor's class overview: per lesson, how many students failed each test and the most
common named mistakes — what to re-teach next week. One HTML page, no script.

Read from the autograded notebooks the course keeps (``autograded/<student>/<assignment>/``),
whose test cells carry the grader's verdicts (``grader.feedback.VERDICT``); a hint is split by
``grader.summary.hint_of``, as on the students' feedback pages. A missing submission counts in
no lesson; a submission that could not be graded fails every test, with its reason as hint.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.course import Course
from grader.feedback import VERDICT
from grader.markup import grade_id_of
from grader.score import points_text
from grader.summary import hint_of
from grader.text import printable

TOP_MISTAKES = 10  # the class-wide list at the top of the page


@dataclass
class TestTally:
    """One autograded test of a lesson: ``failed`` students, and the hints they got (hint text
    -> students)."""

    test: str
    points: float
    failed: int = 0
    hints: Counter = field(default_factory=Counter)


@dataclass
class LessonTally:
    """One lesson: ``students`` who handed it in, its tests in notebook order, and its named
    mistakes (mistake -> students who made it, in any test)."""

    assignment: str
    students: int = 0
    tests: dict[str, TestTally] = field(default_factory=dict)
    mistakes: Counter = field(default_factory=Counter)


def class_overview(course: Course) -> list[LessonTally]:
    """One ``LessonTally`` per assignment with an autograded notebook, sorted by assignment."""
    lessons: dict[str, LessonTally] = {}
    autograded = course.course_dir / "autograded"
    for path in sorted(autograded.glob("*/*/*.ipynb")) if autograded.is_dir() else []:
        lesson = lessons.setdefault(path.parent.name, LessonTally(path.parent.name))
        _count(lesson, nbformat.read(path, as_version=4))
    return [lessons[a] for a in sorted(lessons)]


def _count(lesson: LessonTally, nb) -> None:
    """Add one student's autograded notebook ``nb`` to ``lesson``."""
    lesson.students += 1
    mistakes = set()
    for cell in nb.cells:
        verdict = cell.metadata.get(VERDICT)
        grade_id = grade_id_of(cell)
        if not verdict or not grade_id:
            continue
        top = float(verdict.get("max_score") or 0.0)
        tally = lesson.tests.setdefault(grade_id, TestTally(grade_id, top))
        score = verdict.get("score")
        if score is not None and score >= top:
            continue
        tally.failed += 1
        hint = hint_of(printable(verdict.get("message") or ""))
        tally.hints[hint.text or "(no message)"] += 1
        if hint.mistake:
            mistakes.add(hint.mistake)
    lesson.mistakes.update(mistakes)


def overview_html(lessons: list[LessonTally]) -> str:
    """The overview page: the class's most common named mistakes, then per lesson a table of
    its tests (points, failed, the hints the failing students got). Every string is escaped."""
    e = html.escape
    ranked = sorted(
        ((n, lesson.assignment, m) for lesson in lessons for m, n in lesson.mistakes.items()),
        key=lambda row: (-row[0], row[1], row[2]),
    )[:TOP_MISTAKES]
    top = "".join(
        f"<li><b>{n}</b> &times; {e(m)} <span class=muted>({e(a)})</span></li>"
        for n, a, m in ranked
    )
    sections = "".join(_lesson_html(lesson) for lesson in lessons)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Class overview</title><style>{STYLE}</style></head><body>"
        "<h1>Class overview</h1>"
        "<h2>What to re-teach: the most common named mistakes</h2>"
        f"<ol class=mistakes>{top or '<li>no named mistake in this class</li>'}</ol>"
        f"{sections}</body></html>"
    )


def _lesson_html(lesson: LessonTally) -> str:
    e = html.escape
    rows = "".join(
        f'<tr id="{e(lesson.assignment)}-{e(t.test)}"><td>{e(t.test)}</td>'
        f"<td>{points_text(t.points)}</td>"
        f'<td class="{"failed" if t.failed else "passed"}">{t.failed} of {lesson.students}</td>'
        f"<td><ul>{_counted(t.hints)}</ul></td></tr>"
        for t in lesson.tests.values()
    )
    mistakes = _counted(lesson.mistakes) or "<li>none</li>"
    return (
        f'<section id="{e(lesson.assignment)}"><h2>{e(lesson.assignment)}</h2>'
        f"<p>{lesson.students} submission(s) graded.</p>"
        "<table><thead><tr><th>Test</th><th>Points</th><th>Failed</th>"
        f"<th>Hints the failing students got</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h3>Named mistakes (students)</h3><ul>{mistakes}</ul></section>"
    )


def _counted(counter: Counter) -> str:
    return "".join(
        f"<li><b>{n}</b> &times; {html.escape(text)}</li>"
        for text, n in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    )


def write_overview(course: Course, out: Path | None = None) -> Path:
    """Write the overview page to ``out`` (default ``COURSE_DIR/overview.html``); returns it."""
    out = Path(out or course.course_dir / "overview.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(overview_html(class_overview(course)), encoding="utf-8")
    return out


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72em; margin: 1.5em auto; padding: 0 1em;
       line-height: 1.4; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top;
         overflow-wrap: anywhere; text-align: left; }
th:nth-child(1) { width: 22%; } th:nth-child(2) { width: 7%; } th:nth-child(3) { width: 9%; }
td ul { margin: 0; padding-left: 1.2em; }
td.failed { color: #a1261a; font-weight: bold; }
.muted { color: #666; }
"""
