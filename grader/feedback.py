"""HTML feedback for every autograded notebook, without the hidden tests' source.

nbgrader's generate_feedback shows the test cells as graded, hidden tests included (its issues
#917 and #1363). Before its GetGrades step, ``RedactHiddenTests``:

* replaces each hidden-test region of a test cell with ``# hidden tests ran here``;
* reduces a test cell's error output to the exception's type and message (a traceback quotes
  the failing hidden line; the message is the check's hint, so it stays);
* removes any output line, in any cell, that quotes a hidden-test line (student code can read
  the running cell's source and print it).

Scores, visible tests and their messages stay.
"""

from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader import utils
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor

from grader.course import Course, capture_log, ensure_venv_on_path, quiet_nbgrader
from grader.markup import HIDDEN_TESTS, redact_hidden_tests, region_lines
from grader.score import strip_ansi

QUOTE_MIN_CHARS = 12  # shorter hidden lines ("x = 1") are too generic to hunt for in outputs
REDACTED = "[a line of a hidden test was removed]"


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


def redact_notebook(nb):
    """``nb`` with hidden tests, test tracebacks and quoted hidden lines removed (in place)."""
    quoted = hidden_lines(nb)
    for cell in nb.cells:
        if _is_test(cell):
            cell.source = redact_hidden_tests(cell.source)
        for output in cell.get("outputs", []):
            if output.output_type == "error" and _is_test(cell):
                output.traceback = [strip_ansi(f"{output.ename}: {output.evalue}")]
            _redact_output(output, quoted)
    return nb


def _redact_output(output, quoted: set[str]) -> None:
    if not quoted:
        return
    if "text" in output:
        output.text = _redact_text(output.text, quoted)
    if output.output_type == "error":
        output.evalue = _redact_text(output.evalue, quoted)
        output.traceback = [_redact_text(line, quoted) for line in output.traceback]
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            output.data[mime] = _redact_text(value, quoted)


def _redact_text(text: str, quoted: set[str]) -> str:
    return "\n".join(
        REDACTED if any(q in line for q in quoted) else line for line in text.split("\n")
    )


class RedactHiddenTests(NbGraderPreprocessor):
    """Feedback step applying ``redact_notebook``."""

    def preprocess(self, nb, resources):
        return redact_notebook(nb), resources


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
        RedactHiddenTests,
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
