"""HTML feedback for every autograded notebook: the student's source and, under each test cell,
the grader's own verdict — never an output that submitted code produced while graded.

Output of a graded notebook is the student's to shape (a hidden test once left base64-encoded
in a display), so the feedback page shows none of it. ``stored_notebook`` (the autograded copy
the course keeps, for formgrader and for feedback) carries each test cell's verdict — score,
points and hint from the grading result (``CellGrade``) — in cell metadata the grader writes
after the student's own metadata is dropped, and its student content cleaned by
``grader.safehtml``. Before nbgrader's GetGrades step, ``FeedbackView``:

* removes every output of every cell and puts one trusted output under each test cell: its
  verdict, points, the hint and after it the numbers (hint lines quoting a hidden-test line
  removed);
* replaces each hidden-test region of a test cell with ``# hidden tests ran here`` (nbgrader
  shows hidden tests in feedback, its issues #917 and #1363);
* cleans markdown and raw cells again (``grader.safehtml``), whatever wrote the notebook, and
  writes markdown's LaTeX as MathML (``safehtml.static_markdown``).

After GetGrades (``GetGradesAndReview``, which also notes which written answers a person has
graded), ``FeedbackSummary`` builds the table the page opens with (``grader.summary``, the same
rows ``grader check`` prints). The page template (``templates/normlab_feedback``, on top of
nbgrader's) loads no script and nothing from the network, and wraps text at the page width.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import nbgrader
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor

from grader.course import Course
from grader.markup import HIDDEN_TESTS, grade_id_of, redact_hidden_tests, region_lines
from grader.nbgrader_glue import capture_log, ensure_venv_on_path, quiet_nbgrader
from grader.results import CellGrade, SubmissionResult
from grader.safehtml import safe_notebook, static_markdown
from grader.score import points_text, strip_ansi
from grader.summary import hint_of, summary_html
from grader.text import printable

QUOTE_MIN_CHARS = 12  # shorter hidden lines ("x = 1") are too generic to hunt for in outputs
REDACTED = "[a line of a hidden test was removed]"
VERDICT = "normlab_verdict"  # cell metadata key the grader writes; a student's is dropped
REVIEW = "normlab_review"  # a written answer's state, from the gradebook, for the summary
TO_GRADE = "to be graded by hand"
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE, TEMPLATE_FILE = "normlab_feedback", "normlab.html.j2"  # extends nbgrader's "feedback"
NBGRADER_TEMPLATES = (
    Path(nbgrader.__file__).resolve().parent / "server_extensions/formgrader/templates"
)


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
        test = verdicts.get(grade_id_of(cell))
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
        if cell.cell_type == "markdown":
            cell.source = static_markdown(cell.source)
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if _is_test(cell):
            cell.source = redact_hidden_tests(cell.source)
            if verdict:
                cell.metadata[VERDICT] = shown = _shown_verdict(verdict, quoted)
                cell.outputs = [verdict_output(shown)]
    return nb


def _shown_verdict(verdict: dict, quoted: set[str]) -> dict:
    """``verdict`` with its message as a page may show it: control characters escaped,
    hidden-test lines removed."""
    message = _redact_text(printable(strip_ansi(verdict.get("message") or "")), quoted)
    return {
        "score": verdict.get("score"),
        "max_score": verdict.get("max_score"),
        "message": message,
    }


def verdict_output(verdict: dict):
    """The one output a test cell shows in feedback: ``passed``/``failed``, points, then the
    hint (the named mistake) and after it the details (case and numbers)."""
    score, top = verdict.get("score"), verdict.get("max_score") or 0.0
    passed = score is not None and score >= top
    verdict_word = "passed" if passed else "failed"
    head = f"{verdict_word}: {points_text(score or 0.0)} / {points_text(top)} points"
    hint = hint_of(verdict.get("message") or "")
    lines = [head] if passed else [head, hint.text, hint.details]
    text = "".join(f"{line}\n" for line in lines if line.strip())
    return new_output("stream", name="stdout" if passed else "stderr", text=text)


def notebook_tests(nb) -> list[CellGrade]:
    """Every grade cell of a feedback notebook (after ``FeedbackView`` and nbgrader's
    ``GetGrades``), in order: a test with its verdict, a written answer with the score a person
    gave it (None: not graded yet)."""
    tests = []
    for cell in nb.cells:
        if not utils.is_grade(cell):
            continue
        meta = cell.metadata.nbgrader
        verdict = cell.metadata.get(VERDICT)
        if _is_test(cell) and verdict:
            top = float(verdict.get("max_score") or 0.0)
            tests.append(CellGrade(meta["grade_id"], verdict.get("score"), top, verdict["message"]))
        elif not _is_test(cell):
            top = float(meta.get("points") or 0.0)
            state = cell.metadata.get(REVIEW, TO_GRADE)
            score = None if state == TO_GRADE else meta.get("score")
            tests.append(CellGrade(meta["grade_id"], score, top, state, manual=True))
    return tests


def _redact_text(text: str, quoted: set[str]) -> str:
    return "\n".join(
        REDACTED if any(q in line for q in quoted) else line for line in text.split("\n")
    )


class FeedbackView(NbGraderPreprocessor):
    """Feedback step applying ``feedback_notebook``."""

    def preprocess(self, nb, resources):
        return feedback_notebook(nb), resources


class GetGradesAndReview(GetGrades):
    """nbgrader's GetGrades, also noting in each grade cell's ``REVIEW`` metadata whether a
    person graded it (GetGrades' score is 0 for a written answer nobody has graded yet)."""

    def _get_score(self, cell, resources) -> None:
        super()._get_score(cell, resources)
        grade = self.gradebook.find_grade(
            grade_id_of(cell),
            self.notebook_id,
            self.assignment_id,
            self.student_id,
        )
        if grade.manual_score is not None:
            cell.metadata[REVIEW] = "graded by hand"
        elif grade.auto_score is not None:
            cell.metadata[REVIEW] = "no answer written"  # nbgrader scores an unchanged answer 0
        else:
            cell.metadata[REVIEW] = TO_GRADE


class FeedbackSummary(NbGraderPreprocessor):
    """Feedback step after ``GetGradesAndReview``: the summary table (``grader.summary``) the page
    template puts on top, in ``resources["normlab_summary"]``."""

    def preprocess(self, nb, resources):
        who = resources["nbgrader"]
        resources["normlab_summary"] = summary_html(
            who["student"], who["assignment"], who["notebook"], notebook_tests(nb)
        )
        return nb, resources


def write_feedback(course: Course, out: Path | None = None, workers: int = 1) -> list[Path]:
    """One HTML file per autograded notebook, under ``out/<student>/<assignment>/`` (default:
    the course directory's ``feedback/``). Returns the files written, sorted.

    workers: processes that write pages at once, each for its own share of the students (this
    process is one of them); a page costs about a third of a CPU-second (nbconvert's HTML), so a
    large class wants one per core."""
    out = Path(out or course.course_dir / "feedback").resolve()
    autograded = course.course_dir / "autograded"
    notebooks = sorted(autograded.glob("*/*/*.ipynb")) if autograded.is_dir() else []
    _remove_stale(out, autograded)
    if not notebooks:
        return []
    students = sorted({path.parent.parent.name for path in notebooks})
    workers = max(1, workers)
    shares = [share for k in range(workers) if (share := students[k::workers])]
    if len(shares) == 1:
        _write_pages(course, out, None)
    else:
        context = multiprocessing.get_context("spawn")  # no forked copies of sqlite state
        with ProcessPoolExecutor(len(shares) - 1, mp_context=context) as pool:
            others = [pool.submit(_write_pages, course, out, share) for share in shares[1:]]
            _write_pages(course, out, shares[0])
            for future in others:
                future.result()
    return sorted(out.glob("*/*/*.html"))


def _write_pages(course: Course, out: Path, students: list[str] | None) -> None:
    """nbgrader's GenerateFeedback with our page, for every student or only ``students`` (a
    folder of links to their autograded folders stands in for ``autograded/``)."""
    ensure_venv_on_path()
    config = course.nbgrader_config()
    config.CourseDirectory.feedback_directory = str(out)
    config.CourseDirectory.assignment_id = "*"
    config.CourseDirectory.student_id = "*"
    config.GenerateFeedback.force = True
    config.GenerateFeedback.preprocessors = [
        FeedbackView,
        GetGradesAndReview,
        FeedbackSummary,
        CSSHTMLHeaderPreprocessor,
    ]
    config.HTMLExporter.template_name = TEMPLATE
    config.HTMLExporter.template_file = TEMPLATE_FILE
    config.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), str(NBGRADER_TEMPLATES)]
    with tempfile.TemporaryDirectory(prefix="feedback-") as tmp:
        if students is not None:
            share = Path(tmp) / "autograded"
            share.mkdir()
            for student in students:  # names of the course's own folders, not submitted text
                (share / student).symlink_to(course.course_dir / "autograded" / student)
            config.CourseDirectory.autograded_directory = str(share)
        converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
        errors = capture_log(converter, "feedback")
        try:
            with quiet_nbgrader():
                converter.start()
        except Exception as exc:
            detail = "\n  ".join(errors.messages) or str(exc)
            raise FeedbackError(f"nbgrader could not write the feedback:\n  {detail}") from exc


def _remove_stale(out: Path, autograded: Path) -> None:
    """Delete feedback whose autograded notebook is gone (a later submission failed to grade),
    so no student reads feedback on a grade that no longer stands."""
    if not out.is_dir():
        return
    for html in out.glob("*/*/*.html"):
        graded = autograded / html.parent.parent.name / html.parent.name
        if graded.is_dir() and not (graded / f"{html.stem}.ipynb").exists():
            html.unlink()
