"""The unit of grading: one submitted notebook in, one picklable result out.

``grade_submission`` is stateless, so it can run in a local process pool or on a Dask
worker alike. In a scratch directory holding only a private copy of the template gradebook and
the student's notebook (no other submitted file can shadow an import), it runs nbgrader's
autograde — restore cells from the release, overwrite locked and test cells from the gradebook
(hidden tests included), execute with a per-cell timeout in a sandboxed kernel, score — and
reads the scores back. Any failure (unreadable JSON, wrong notebook name, a kernel that dies)
comes back as a result with ``error`` set and 0 points, never as an exception.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
)
from traitlets.config import Config

from grader.build import template_release
from grader.course import COURSE_ID, Course, capture_log, ensure_venv_on_path, quiet_nbgrader
from grader.sandbox import SandboxedExecute
from grader.sanitize import RestoreCells
from grader.score import StrictSaveAutoGrades, failure_message

GIB = 2**30
KNOWN_ERRORS = {
    "DeadKernelError": "the kernel died (a crash, os._exit, or the memory limit)",
    "CellTimeoutError": "a cell ran past the time limit and could not be interrupted",
}


@dataclass(frozen=True)
class CellGrade:
    """One grade cell: ``score`` None means a human has yet to grade it (a written answer)."""

    grade_id: str
    score: float | None
    max_score: float
    message: str = ""
    manual: bool = False

    @property
    def passed(self) -> bool:
        return self.score is not None and self.score >= self.max_score


@dataclass
class SubmissionResult:
    """What grading one notebook produced; ``error`` set means 0 points and why."""

    student: str
    assignment: str
    notebook: str
    tests: list[CellGrade] = field(default_factory=list)
    error: str | None = None
    notebook_json: str | None = None
    comments: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(t.score or 0.0 for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)


def grade_submission(
    course_root,
    assignment: str,
    student: str,
    notebook_path,
    template_db,
    timeout: int = 60,
    memory_limit: float = 4.0,
) -> SubmissionResult:
    """Grade ``notebook_path`` as ``student``'s submission of ``assignment``.

    course_root: the source tree (its ``solutions/<assignment>/`` files other than notebooks are
    copied next to the notebook, as nbgrader does); template_db: a gradebook from
    ``build.make_template``, with its release beside it; timeout: seconds per cell;
    memory_limit: GiB for the kernel's data segment (0: none).
    """
    started = time.monotonic()
    notebook_path, template_db = Path(notebook_path), Path(template_db)
    with quiet_nbgrader():
        result = _grade(
            Path(course_root),
            assignment,
            student,
            notebook_path,
            template_db,
            timeout,
            memory_limit,
        )
    result.seconds = time.monotonic() - started
    return result


def notebooks_of(template_db: Path, assignment: str) -> list[str]:
    """Notebook names of ``assignment`` in the template's release."""
    folder = template_release(template_db, assignment, "_").parent
    return sorted(p.stem for p in folder.glob("*.ipynb"))


def grade_cells(release: Path) -> list[CellGrade]:
    """A zero-score CellGrade for every grade cell of a release notebook, in order."""
    nb = nbformat.read(release, as_version=4)
    tests = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            manual = bool(meta.get("solution")) or cell.cell_type != "code"
            tests.append(CellGrade(meta["grade_id"], 0.0, float(meta["points"]), "", manual))
    return tests


def _grade(course_root, assignment, student, notebook_path, template_db, timeout, memory_limit):
    expected = notebooks_of(template_db, assignment)
    name = notebook_path.stem
    if name not in expected:
        target = expected[0] if len(expected) == 1 else name
        wanted = " or ".join(f"{n}.ipynb" for n in expected)
        return _failed(
            template_db,
            student,
            assignment,
            target,
            f"wrong notebook name {notebook_path.name!r}: expected {wanted}",
        )
    problem = unreadable(notebook_path)
    if problem:
        return _failed(template_db, student, assignment, name, problem)
    with tempfile.TemporaryDirectory(prefix="normlab-grade-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp)
        try:
            autograded = _autograde(
                scratch,
                course_root,
                assignment,
                student,
                notebook_path,
                template_db,
                timeout,
                memory_limit,
            )
        except AutogradeError as exc:
            return _failed(template_db, student, assignment, name, str(exc))
        return _read_back(scratch / "gradebook.db", autograded, template_db, student, assignment)


def unreadable(path: Path) -> str | None:
    """Why ``path`` is not a notebook we can grade, or None."""
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {path.name}: {exc}"
    except json.JSONDecodeError as exc:
        return f"{path.name} is not valid notebook JSON (truncated or corrupted?): {exc}"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a malformed notebook
        return f"{path.name} is not a notebook nbformat can read: {type(exc).__name__}: {exc}"
    if not isinstance(nb.get("cells"), list):
        return f"{path.name} has no cell list"
    return None


class AutogradeError(RuntimeError):
    """nbgrader could not grade the notebook; the message says why in a line."""


def _autograde(
    scratch, course_root, assignment, student, notebook_path, template_db, timeout, memory_limit
) -> Path:
    """Run nbgrader's autograde in ``scratch``; returns the autograded notebook's path."""
    ensure_venv_on_path()
    db = scratch / "gradebook.db"
    shutil.copyfile(template_db, db)
    root = scratch / "course"
    notebook = notebook_path.stem
    submitted = root / "submitted" / student / assignment / f"{notebook}.ipynb"
    submitted.parent.mkdir(parents=True)
    shutil.copyfile(notebook_path, submitted)

    config = _autograde_config(root, course_root, db, assignment, student, timeout, memory_limit)
    config.RestoreCells.release = str(template_release(template_db, assignment, notebook))
    converter = Autograde(coursedir=CourseDirectory(config=config), config=config)
    errors = capture_log(converter, "grade")
    try:
        converter.start()
    except Exception as exc:  # nbgrader wraps whatever went wrong in NbGraderException
        raise AutogradeError(_explain(errors.messages, exc)) from exc
    autograded = root / "autograded" / student / assignment / f"{notebook}.ipynb"
    if not autograded.exists():
        raise AutogradeError(_explain(errors.messages, None))
    return autograded


def _autograde_config(root, course_root, db, assignment, student, timeout, memory_limit) -> Config:
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = str(Course(Path(course_root)).solutions_dir)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.CourseDirectory.assignment_id = assignment
    c.CourseDirectory.student_id = student
    c.Autograde.sanitize_preprocessors = [
        RestoreCells,
        ClearOutput,
        DeduplicateIds,
        OverwriteKernelspec,
        OverwriteCells,
        CheckCellMetadata,
    ]
    c.Autograde.autograde_preprocessors = [
        SandboxedExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        StrictSaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    c.Execute.timeout = int(timeout)
    c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]  # no start-up chatter
    c.Execute.shutdown_kernel = "immediate"  # nothing in a graded kernel is worth waiting for
    c.Execute.error_on_timeout = {
        "ename": "CellTimeoutError",
        "evalue": f"the cell ran longer than the {int(timeout)} s limit",
        "traceback": [f"CellTimeoutError: the cell ran longer than the {int(timeout)} s limit"],
    }
    c.SandboxKernelManager.memory_limit = int(memory_limit * GIB) if memory_limit else 0
    c.Application.log_level = "WARN"
    return c


def _explain(messages: list[str], exc: BaseException | None) -> str:
    detail = messages[-1] if messages else (f"{type(exc).__name__}: {exc}" if exc else "")
    for needle, meaning in KNOWN_ERRORS.items():
        if needle in detail:
            return f"{meaning} [{detail}]"
    return detail or "nbgrader produced no autograded notebook"


def _read_back(db: Path, autograded: Path, template_db, student, assignment) -> SubmissionResult:
    notebook = autograded.stem
    nb_json = autograded.read_text(encoding="utf-8")
    cells = {
        c.metadata["nbgrader"]["grade_id"]: c
        for c in nbformat.reads(nb_json, as_version=4).cells
        if "grade_id" in c.metadata.get("nbgrader", {})
    }
    with Gradebook(f"sqlite:///{db}", COURSE_ID) as gb:
        submitted = gb.find_submission_notebook(notebook, assignment, student)
        scores = {g.name: g.auto_score for g in submitted.grades}
        comments = {c.name: c.auto_comment for c in submitted.comments}
    tests = []
    for test in grade_cells(template_release(template_db, assignment, notebook)):
        score = scores.get(test.grade_id)
        if score is not None:
            score = min(max(float(score), 0.0), test.max_score)
        failed = score is not None and score < test.max_score and not test.manual
        message = failure_message(cells[test.grade_id]) if failed else ""
        tests.append(CellGrade(test.grade_id, score, test.max_score, message, test.manual))
    return SubmissionResult(student, assignment, notebook, tests, None, nb_json, comments)


def _failed(template_db, student, assignment, notebook, error) -> SubmissionResult:
    release = template_release(template_db, assignment, notebook)
    tests = grade_cells(release) if release.exists() else []
    return SubmissionResult(student, assignment, notebook, tests, error)
