"""The one writer of a course's gradebook, and the reads that export and feedback need.

Workers grade against private copies of a template gradebook; only ``record`` (called in one
process, one result at a time) writes the course's gradebook, through nbgrader's Gradebook API,
so formgrader sees students, submissions, auto scores and the autograded notebooks.

Re-grading is idempotent and keeps manual grades: ``manual_score`` is never written here, and a
grade whose auto score did not change keeps its ``needs_manual_grade`` flag; a changed auto score
follows nbgrader's rule (review needed when a manual grade exists or no auto score is possible).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from grader.build import generate
from grader.course import COURSE_ID, Course
from grader.feedback import stored_notebook
from grader.markup import grade_id_of
from grader.nbgrader_glue import create_gradebook, quiet_nbgrader
from grader.results import SubmissionResult


def open_gradebook(course: Course) -> Gradebook:
    create_gradebook(course.db_path)
    return Gradebook(course.db_url, COURSE_ID)


def register_assignments(course: Course, assignments: list[str], scratch: Path) -> None:
    """Record ``assignments`` (notebooks, cells, hidden tests) in the course gradebook.

    nbgrader refuses to add or remove cells of a notebook that already has submissions; that
    error reaches the caller as a BuildError naming the assignment.
    """
    course.write_formgrader_config()
    create_gradebook(course.db_path)
    generate(course, scratch / "course-release", course.db_url, assignments)


@contextlib.contextmanager
def recorder(course: Course) -> Iterator[Callable[..., None]]:
    """``record`` with the course gradebook opened once, for a whole grading run (opening it,
    with nbgrader's schema checks, cost about as much as writing one result)."""
    with quiet_nbgrader(), open_gradebook(course) as gb:
        yield functools.partial(record, course, gb=gb)


def record(
    course: Course,
    result: SubmissionResult,
    submitted: Path | None = None,
    lms_user_id: str | None = None,
    gb: Gradebook | None = None,
) -> None:
    """Write one grading result into the course: gradebook rows, the autograded notebook under
    ``autograded/<student>/<assignment>/``, and a copy of the submitted file under ``submitted/``.
    ``gb``: the course gradebook, already open (``recorder``); else it is opened for this one.
    """
    if gb is None:
        with quiet_nbgrader(), open_gradebook(course) as opened:
            record(course, result, submitted, lms_user_id, opened)
        return
    with quiet_nbgrader():
        extra = {"lms_user_id": lms_user_id} if lms_user_id else {}
        gb.update_or_create_student(result.student, **extra)
        gb.update_or_create_submission(result.assignment, result.student)
        try:
            notebook = gb.find_submission_notebook(
                result.notebook, result.assignment, result.student
            )
        except MissingEntry:  # a wrongly named notebook of a many-notebook assignment
            notebook = None
        if notebook is not None:
            _record_grades(gb, notebook, result)
        gb.db.commit()
    _store_files(course, result, submitted, known=notebook is not None)


def _record_grades(gb: Gradebook, notebook, result: SubmissionResult) -> None:
    tests = {t.grade_id: t for t in result.tests}
    for grade in notebook.grades:
        test = tests.get(grade.name)
        auto = test.score if test and result.error is None else 0.0
        if grade.auto_score != auto:
            grade.auto_score = auto
            grade.needs_manual_grade = grade.manual_score is not None or auto is None
    for comment in notebook.comments:
        comment.auto_comment = result.comments.get(comment.name)


def _store_files(
    course: Course, result: SubmissionResult, submitted: Path | None, known: bool = True
) -> None:
    """The autograded notebook formgrader and feedback read — cleaned for a browser, with the
    grader's verdicts (``feedback.stored_notebook``) — only under a notebook name the
    gradebook knows (a student's file name never names a page); and the submitted file."""
    autograded = course.state_path("autograded", result.student, result.assignment)
    target = autograded / f"{result.notebook}.ipynb"
    if result.notebook_json is None or not known:
        if known:
            target.unlink(missing_ok=True)  # never leave an older run's notebook behind
    else:
        autograded.mkdir(parents=True, exist_ok=True)
        stored = result.stored_json if result.stored_json is not None else stored_notebook(result)
        target.write_text(stored, encoding="utf-8")
    if submitted is not None:
        folder = course.state_path("submitted", result.student, result.assignment)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(submitted, folder / submitted.name)


@dataclass(frozen=True)
class GradeRow:
    student: str
    assignment: str
    notebook: str
    test: str
    score: float | None
    max_score: float
    comment: str = ""  # the grader's comment on the cell (formgrader), "" when none


def grade_rows(course: Course) -> list[GradeRow]:
    """Every grade cell of every submission, in notebook order: score is the manual score if
    given, else the auto score (None while a written answer awaits a human); comment is what
    a human wrote on that cell in formgrader."""
    rows = []
    with quiet_nbgrader(), open_gradebook(course) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for nb in submission.notebooks:
                    order = _cell_order(course, assignment.name, nb.notebook.name)
                    comments = {c.name: c.manual_comment or "" for c in nb.comments}
                    for grade in sorted(nb.grades, key=lambda g: order(g.name)):
                        manual = grade.manual_score
                        rows.append(
                            GradeRow(
                                submission.student.id,
                                assignment.name,
                                nb.notebook.name,
                                grade.name,
                                manual if manual is not None else grade.auto_score,
                                float(grade.max_score),
                                comments.get(grade.name, ""),
                            )
                        )
    return sorted(rows, key=lambda r: (r.student, r.assignment, r.notebook))


def _cell_order(course: Course, assignment: str, notebook: str):
    """Sort key for grade ids: their position in the release notebook (the gradebook keeps no
    cell order); ids it does not know sort last, by name."""
    path = course.release_notebook(assignment, notebook)
    ids = []
    if path.exists():
        ids = [grade_id_of(c) for c in nbformat.read(path, as_version=4).cells]
    positions = {grade_id: i for i, grade_id in enumerate(ids) if grade_id}
    return lambda grade_id: (positions.get(grade_id, len(positions)), grade_id)


def assignment_scores(course: Course) -> list[tuple[str, str, float, float]]:
    """(student, assignment, score, max_score) for every student and assignment in the
    gradebook — nbgrader's totals (manual score where given, else auto) — 0 when a student has
    no submission of an assignment."""
    rows = []
    with quiet_nbgrader(), open_gradebook(course) as gb:
        for student in sorted(gb.students, key=lambda s: s.id):
            for assignment in sorted(gb.assignments, key=lambda a: a.name):
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                    score = float(sub.score)
                except MissingEntry:
                    score = 0.0
                rows.append((student.id, assignment.name, score, float(assignment.max_score)))
    return rows
