"""HTML feedback for every autograded notebook: the student's source and, under each test cell,
the grader's own verdict — never an output that submitted code produced while graded.

Output of a graded notebook is the student's to shape (a hidden test once left base64-encoded
in a display), so the feedback page shows none of it. ``stored_notebook`` (the autograded copy
the course keeps, for formgrader and for feedback) carries each test cell's verdict — score,
points and hint from the grading result (``CellGrade``) — in cell metadata the grader writes
after the student's own metadata is dropped, and its student content cleaned by
``grader.safehtml``. Before nbgrader's GetGrades step, ``FeedbackView``:

* removes every output of every cell and puts one trusted output under each test cell: its
  verdict, points and hint (hint lines quoting a hidden-test line removed);
* replaces each hidden-test region of a test cell with ``# hidden tests ran here`` (nbgrader
  shows hidden tests in feedback, its issues #917 and #1363);
* cleans markdown and raw cells again (``grader.safehtml``), whatever wrote the notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor

from grader.course import Course, capture_log, ensure_venv_on_path, quiet_nbgrader
from grader.markup import HIDDEN_TESTS, redact_hidden_tests, region_lines
from grader.safehtml import safe_notebook
from grader.score import points_text, strip_ansi
from grader.text import printable
from grader.worker import CellGrade, SubmissionResult

QUOTE_MIN_CHARS = 12  # shorter hidden lines ("x = 1") are too generic to hunt for in outputs
REDACTED = "[a line of a hidden test was removed]"
VERDICT = "normlab_verdict"  # cell metadata key the grader writes; a student's is dropped


class FeedbackError(RuntimeError):
    """nbgrader could not write the feedback; the message names the problem."""


def _is_test(cell) -> bool:
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


def hidden_lines(nb) -> set[str]:
    """The hidden-test lines of a notebook's test cells worth searching outputs for (stripped)."""
    lines = set()
    for cell in nb.cells:
        if _is_test(cell):
            lines |= {line.strip() for line in region_lines(cell.source, HIDDEN_TESTS)}
    return {line for line in lines if len(line) >= QUOTE_MIN_CHARS}


def with_verdicts(nb, tests: list[CellGrade]):
    """``nb`` (in place) with each test cell's verdict from ``tests`` in its metadata, and no
    verdict anywhere else (a student may have written one)."""
    verdicts = {t.grade_id: t for t in tests}
    for cell in nb.cells:
        cell.metadata.pop(VERDICT, None)
        test = verdicts.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if test is not None and _is_test(cell):
            cell.metadata[VERDICT] = {
                "score": test.score,
                "max_score": test.max_score,
                "message": test.message,
            }
    return nb


def stored_notebook(result: SubmissionResult) -> str:
    """The autograded notebook the course keeps for ``result``: its student content cleaned
    for a browser (``safehtml.safe_notebook``), its verdicts from ``result.tests``."""
    nb = nbformat.reads(result.notebook_json, as_version=4)
    return nbformat.writes(with_verdicts(safe_notebook(nb), result.tests))


def feedback_notebook(nb):
    """``nb`` (in place) as the feedback page shows it (see module doc)."""
    quoted = hidden_lines(nb)
    verdicts = [cell.metadata.get(VERDICT) for cell in nb.cells]
    safe_notebook(nb)
    for cell, verdict in zip(nb.cells, verdicts, strict=True):
        if cell.cell_type != "code":
            continue
        if _is_test(cell):
            cell.source = redact_hidden_tests(cell.source)
        cell.outputs = [verdict_output(verdict, quoted)] if verdict and _is_test(cell) else []
        cell.execution_count = None
    return nb


def verdict_output(verdict: dict, quoted: set[str]):
    """The one output a test cell shows in feedback: ``passed``/``failed``, points, and the
    hint (control characters escaped, hidden-test lines removed)."""
    score, top = verdict.get("score"), verdict.get("max_score") or 0.0
    passed = score is not None and score >= top
    verdict_word = "passed" if passed else "failed"
    head = f"{verdict_word}: {points_text(score or 0.0)} / {points_text(top)} points"
    hint = _redact_text(printable(strip_ansi(verdict.get("message") or "")), quoted)
    text = f"{head}\n{hint}\n" if hint.strip() and not passed else f"{head}\n"
    return new_output("stream", name="stdout" if passed else "stderr", text=text)


def _redact_text(text: str, quoted: set[str]) -> str:
    return "\n".join(
        REDACTED if any(q in line for q in quoted) else line for line in text.split("\n")
    )


class FeedbackView(NbGraderPreprocessor):
    """Feedback step applying ``feedback_notebook``."""

    def preprocess(self, nb, resources):
        return feedback_notebook(nb), resources


def write_feedback(course: Course, out: Path | None = None) -> list[Path]:
    """One HTML file per autograded notebook, under ``out/<student>/<assignment>/`` (default:
    the course directory's ``feedback/``). Returns the files written, sorted."""
    out = Path(out or course.course_dir / "feedback").resolve()
    autograded = course.course_dir / "autograded"
    notebooks = sorted(autograded.glob("*/*/*.ipynb")) if autograded.is_dir() else []
    _remove_stale(out, autograded)
    if not notebooks:
        return []
    ensure_venv_on_path()
    config = course.nbgrader_config()
    config.CourseDirectory.feedback_directory = str(out)
    config.CourseDirectory.assignment_id = "*"
    config.CourseDirectory.student_id = "*"
    config.GenerateFeedback.force = True
    config.GenerateFeedback.preprocessors = [
        FeedbackView,
        GetGrades,
        CSSHTMLHeaderPreprocessor,
    ]
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    errors = capture_log(converter, "feedback")
    try:
        with quiet_nbgrader():
            converter.start()
    except Exception as exc:
        detail = "\n  ".join(errors.messages) or str(exc)
        raise FeedbackError(f"nbgrader could not write the feedback:\n  {detail}") from exc
    return sorted(out.glob("*/*/*.html"))


def _remove_stale(out: Path, autograded: Path) -> None:
    """Delete feedback whose autograded notebook is gone (a later submission failed to grade),
    so no student reads feedback on a grade that no longer stands."""
    if not out.is_dir():
        return
    for html in out.glob("*/*/*.html"):
        graded = autograded / html.parent.parent.name / html.parent.name
        if graded.is_dir() and not (graded / f"{html.stem}.ipynb").exists():
            html.unlink()
