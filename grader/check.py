"""Self-study: grade one notebook with the full tests (hidden included), no course set-up.

The notebook is matched to an assignment by its graded cells (so a renamed copy such as
``toy-Copy1.ipynb`` still works), graded by the same worker as a class would be, in a scratch
directory, and reported one test per line with the check's hint for each failure.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat

from grader.build import make_template
from grader.course import Course
from grader.grade import confinement_summary
from grader.markup import grade_id_of
from grader.results import SubmissionResult
from grader.summary import summary_lines
from grader.worker import grade_submission, unreadable

SELF_STUDY_STUDENT = "self-study"


class CheckError(RuntimeError):
    """The notebook cannot be checked (unreadable, or it belongs to no assignment)."""


def _grade_ids(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    return {grade_id_of(c) for c in nb.cells if grade_id_of(c) is not None}


def match_notebook(course: Course, path: Path) -> tuple[str, str]:
    """(assignment, notebook name) whose graded cells ``path`` shares most; the file name
    breaks ties. Raises CheckError for an unreadable notebook or one that matches nothing."""
    problem = unreadable(path)
    if problem:
        raise CheckError(problem)
    ids = _grade_ids(path)
    candidates = [
        (len(ids & _grade_ids(source)), source.stem == path.stem, a, source.stem)
        for a in course.assignments()
        for source in course.source_notebooks(a)
    ]
    best = max(candidates, default=None)
    if best is None or best[0] == 0:
        known = ", ".join(course.assignments()) or "none"
        raise CheckError(
            f"{path} matches no assignment of the course (assignments: {known}); "
            "is it a NormLab notebook with its graded cells kept?"
        )
    return best[2], best[3]


def check(
    course: Course, path: Path, timeout: int = 60, memory_limit: float = 4.0
) -> SubmissionResult:
    """Grade ``path`` against its assignment's full tests in a scratch directory."""
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"no such notebook: {path}")
    assignment, notebook = match_notebook(course, path)
    with tempfile.TemporaryDirectory(prefix="normlab-check-") as tmp:
        scratch = Path(tmp)
        template_db = make_template(course, scratch / "template", [assignment])
        staged = scratch / "submission" / f"{notebook}.ipynb"
        staged.parent.mkdir()
        shutil.copyfile(path, staged)
        # one notebook: a warm zygote would cost as much as the one kernel it saves
        return grade_submission(
            course.root,
            assignment,
            SELF_STUDY_STUDENT,
            staged,
            template_db,
            timeout,
            memory_limit,
            warm=False,
        )


def report(result: SubmissionResult) -> str:
    """One line per test, PASS/FAIL with points and the hint (``grader.summary``, the table a
    feedback page opens with), then the total and the confinement the kernel ran under."""
    lines = [f"{result.assignment}/{result.notebook}.ipynb, graded with the hidden tests"]
    if result.error:
        lines.append(f"ERROR: {result.error}")
    lines += summary_lines(result.tests)
    if result.confinement:
        lines.append(confinement_summary([result]))
    return "\n".join(lines)
