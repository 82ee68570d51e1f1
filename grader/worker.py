"""The unit of grading: one submitted notebook in, one picklable result out.

``grade_submission`` is stateless, so it can run in a local process pool or on a Dask
worker alike. In a scratch directory holding only a private copy of the template gradebook and
the student's notebook (no other submitted file can shadow an import), it runs nbgrader's
autograde — restore cells from the release, overwrite locked and test cells from the gradebook
(hidden tests included), execute in a sandboxed kernel (per-cell timeout, a wall-clock cap of
``NOTEBOOK_TIMEOUT_FACTOR`` x the per-cell timeout for the notebook, a memory limit, a file and
process fence, an integrity probe after every test cell), score — and reads the scores back.

Any failure (unreadable JSON, wrong notebook name, a kernel that dies, tampering with what the
tests rely on) comes back as a result with ``error`` set and 0 points, never as an exception;
its notebook for feedback is then the graded one (tampering) or the release, headed by a note
that says why it scored 0.

Scratch directories live under ``grading_root()``, which the kernel may not read: a
submission sees neither its own gradebook copy nor other students' scratch directories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, fields
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
from nbgrader.utils import is_grade, is_solution
from traitlets.config import Config

from grader import confine
from grader.build import template_release
from grader.course import COURSE_ID, NOTEBOOK_TIMEOUT_FACTOR, Course
from grader.feedback import stored_notebook
from grader.markup import grade_id_of, learner_only_sources
from grader.nbgrader_glue import capture_log, ensure_venv_on_path, quiet_nbgrader
from grader.policy import policy_for
from grader.results import CellGrade, SubmissionResult
from grader.sandbox import SandboxedExecute
from grader.sanitize import RestoreCells
from grader.score import StrictSaveAutoGrades, failure_message
from grader.text import printable

GIB = 2**30
MIB = 2**20
WORKING_COPY_LIMIT = 256 * MIB
"""Bytes a kernel's working copy may hold (the notebook, its home and caches, every file its
code writes): a lesson writes a few MiB at most; a loop writing 2 GiB once filled the disk
that every other notebook of the run was graded on."""
KNOWN_ERRORS = {
    "DeadKernelError": "the kernel died (a crash, os._exit, or the memory limit)",
    "CellTimeoutError": "a cell ran past the time limit and could not be interrupted",
    "NotebookTimeoutError": "the notebook ran past its wall-clock limit",
    "SizeLimitError": "the notebook wrote more files than its working folder may hold; "
    "write less, or delete files you no longer need",
}
TAMPERING = "tampering detected"


def grading_root() -> Path:
    """The folder every grading scratch directory of this user on this machine lives in."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    root = Path(tempfile.gettempdir()) / f"normlab-grading-{uid}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def grade_submission(
    course_root,
    assignment: str,
    student: str,
    notebook_path,
    template_db,
    timeout: int = 60,
    memory_limit: float = 4.0,
    private: tuple = (),
    size_limit: int = WORKING_COPY_LIMIT,
    run_learner_only: bool = False,
    warm: bool = True,
) -> SubmissionResult:
    """Grade ``notebook_path`` as ``student``'s submission of ``assignment``.

    course_root: the source tree (its ``solutions/<assignment>/`` files other than notebooks are
    copied next to the notebook, as nbgrader does); template_db: a gradebook from
    ``build.make_template``, with its release beside it; timeout: seconds per cell;
    memory_limit: GiB for the kernel's data segment (0: none); private: more folders the
    kernel may not read (the course directory, the submissions); size_limit: bytes the
    kernel's working copy may hold while it runs (0: no cap); run_learner_only: run the cells
    the release tags ``learner-only`` too (``grader validate`` compares both ways); warm: fork
    the kernel from this process's warm zygote (``grader.zygote``; pays off from the second
    notebook a process grades).
    """
    started = time.monotonic()
    one_thread_per_pool()
    notebook_path, template_db = Path(notebook_path), Path(template_db)
    private = tuple(str(p) for p in private)
    limits = Limits(timeout, memory_limit, private, size_limit, run_learner_only, warm)
    with quiet_nbgrader():
        result = _grade(Path(course_root), assignment, student, notebook_path, template_db, limits)
    if result.error:
        result.notebook_json = _noted(result, template_db)
    if result.notebook_json is not None:
        result.stored_json = stored_notebook(result)
    result.confinement = confine.describe()
    result.seconds = time.monotonic() - started
    return result


def one_thread_per_pool() -> None:
    """Size this grading process's own thread pools as its kernels' are: the checker computes
    references with torch and numpy on tiny arrays, where a pool of one thread per core only
    spins on the cores that the other workers' kernels need (measured: 2-9 CPU-s a notebook of
    lessons 05 and 08). Set before torch or BLAS first load; torch's pool is resized if it
    already has."""
    for name, value in confine.GRADING_THREADS.items():
        os.environ.setdefault(name, value)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@dataclass(frozen=True)
class GradeJob:
    """One notebook to grade, by name: what a local worker process or a Dask worker receives
    (``grade_job``); the arguments of ``grade_submission``."""

    course_root: Path
    assignment: str
    student: str
    notebook_path: Path
    template_db: Path
    timeout: int = 60
    memory_limit: float = 4.0
    private: tuple = ()
    size_limit: int = WORKING_COPY_LIMIT
    run_learner_only: bool = False
    warm: bool = True

    def crashed(self, exc: BaseException) -> SubmissionResult:
        """The result of this job when grading it failed outside the notebook (a bug of ours,
        a worker process that died): this submission only, with the reason."""
        return SubmissionResult(
            self.student,
            self.assignment,
            Path(self.notebook_path).stem,
            error=f"grading crashed: {type(exc).__name__}: {exc}",
        )


def grade_job(job: GradeJob) -> SubmissionResult:
    """``grade_submission`` of ``job``'s fields (module level, so pools and Dask can pickle it)."""
    return grade_submission(**{f.name: getattr(job, f.name) for f in fields(job)})


@dataclass(frozen=True)
class Limits:
    timeout: int
    memory_limit: float
    private: tuple[str, ...]
    size_limit: int = WORKING_COPY_LIMIT
    run_learner_only: bool = False
    warm: bool = True


def notebooks_of(template_db: Path, assignment: str) -> list[str]:
    """Notebook names of ``assignment`` in the template's release."""
    folder = template_release(template_db, assignment, "_").parent
    return sorted(p.stem for p in folder.glob("*.ipynb"))


def grade_cells(release: Path) -> list[CellGrade]:
    """A zero-score CellGrade for every grade cell of a release notebook, in order."""
    nb = nbformat.read(release, as_version=4)
    tests = []
    for cell in nb.cells:
        if is_grade(cell):
            manual = is_solution(cell) or cell.cell_type != "code"
            points = float(cell.metadata.nbgrader["points"])
            tests.append(CellGrade(grade_id_of(cell), 0.0, points, "", manual))
    return tests


def _grade(course_root, assignment, student, notebook_path, template_db, limits):
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
    problem = unreadable(notebook_path) or foreign(
        notebook_path, template_release(template_db, assignment, name)
    )
    if problem:
        return _failed(template_db, student, assignment, name, problem)
    with tempfile.TemporaryDirectory(
        prefix="grade-", dir=grading_root(), ignore_cleanup_errors=True
    ) as tmp:
        scratch = Path(tmp)
        try:
            autograded = _autograde(
                scratch, course_root, assignment, student, notebook_path, template_db, limits
            )
        except AutogradeError as exc:
            return _failed(template_db, student, assignment, name, str(exc))
        policy = lesson_policy(template_db, assignment, name)
        record = _record(scratch / "record.json", policy)
        result = _read_back(
            scratch / "gradebook.db", autograded, template_db, student, assignment, record
        )
        findings = json.loads((scratch / "integrity.json").read_text(encoding="utf-8"))
        if findings:
            result = _tampered(result, findings)
        return result


def _tampered(result: SubmissionResult, findings: list[str]) -> SubmissionResult:
    """``result`` scored 0 everywhere, with the tampering as its error."""
    reason = f"{TAMPERING} ({'; '.join(findings)}); the notebook scores 0"
    tests = [CellGrade(t.grade_id, 0.0, t.max_score, reason, t.manual) for t in result.tests]
    result.tests, result.error = tests, reason
    return result


def _noted(result: SubmissionResult, template_db: Path) -> str | None:
    """The notebook feedback is made from for a failed result: the graded notebook if there is
    one, else the release, with a first cell saying why it scored 0."""
    if result.notebook_json is not None:
        nb = nbformat.reads(result.notebook_json, as_version=4)
    else:
        release = template_release(template_db, result.assignment, result.notebook)
        if not release.exists():
            return None
        nb = nbformat.read(release, as_version=4)
    # the reason quotes student file names: a fenced block shows it as text (no HTML, no
    # markdown links, no MathJax), with a fence longer than any backtick run in it
    reason = printable(result.error)
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall("`+", reason)), default=0))
    note = nbformat.v4.new_markdown_cell(
        f"**Not graded: this notebook scores 0.** Reason:\n\n{fence}text\n{reason}\n{fence}"
    )
    note.pop("id", None)
    if nb.get("nbformat_minor", 0) >= 5:
        note.id = "normlab-grading-note"
    nb.cells.insert(0, note)
    return nbformat.writes(nb)


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


def foreign(path: Path, release: Path) -> str | None:
    """Why ``path`` is not a copy of ``release`` (it shares none of its graded cells), or None."""
    wanted = {grade_id_of(c) for c in nbformat.read(release, as_version=4).cells} - {None}
    found = {grade_id_of(c) for c in nbformat.read(path, as_version=4).cells} - {None}
    if wanted and not wanted & found:
        return (
            f"{path.name} has none of the cells of {release.stem}.ipynb: a notebook of "
            "another assignment, or one rebuilt from scratch? Hand in the release notebook"
        )
    return None


class AutogradeError(RuntimeError):
    """nbgrader could not grade the notebook; the message says why in a line."""


def _autograde(scratch, course_root, assignment, student, notebook_path, template_db, limits):
    """Run nbgrader's autograde in ``scratch``; returns the autograded notebook's path."""
    ensure_venv_on_path()
    db = scratch / "gradebook.db"
    shutil.copyfile(template_db, db)
    root = scratch / "course"
    notebook = notebook_path.stem
    submitted = root / "submitted" / student / assignment / f"{notebook}.ipynb"
    submitted.parent.mkdir(parents=True)
    shutil.copyfile(notebook_path, submitted)

    config = _autograde_config(root, course_root, db, assignment, student, limits)
    config.SandboxedExecute.integrity_report = str(scratch / "integrity.json")
    policy = lesson_policy(template_db, assignment, notebook)
    config.SandboxedExecute.checker = policy.checker
    config.SandboxedExecute.record_path = str(scratch / "record.json")
    private = [str(course_root), str(grading_root()), str(Path(template_db).parent)]
    rules = {"private": private + [*limits.private], "assignment": assignment, "figures": False}
    config.SandboxKernelManager.jail_rules = json.dumps({**rules, "policy": policy.as_dict()})
    release = template_release(template_db, assignment, notebook)
    config.RestoreCells.release = str(release)
    if not limits.run_learner_only:
        learner_only = learner_only_sources(nbformat.read(release, as_version=4))
        config.SandboxedExecute.learner_only = sorted(learner_only)
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


def _autograde_config(root, course_root, db, assignment, student, limits: Limits) -> Config:
    timeout = int(limits.timeout)
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
    c.Execute.timeout = timeout
    c.SandboxedExecute.notebook_timeout = timeout * NOTEBOOK_TIMEOUT_FACTOR
    c.SandboxedExecute.size_limit = int(limits.size_limit)
    c.Execute.extra_arguments = [
        "--IPKernelApp.log_level=ERROR",  # no start-up chatter
        "--HistoryManager.hist_file=:memory:",  # the kernel may write its working copy only
    ]
    c.Execute.shutdown_kernel = "immediate"  # nothing in a graded kernel is worth waiting for
    c.Execute.error_on_timeout = {
        "ename": "CellTimeoutError",
        "evalue": f"the cell ran longer than the {int(timeout)} s limit",
        "traceback": [f"CellTimeoutError: the cell ran longer than the {int(timeout)} s limit"],
    }
    memory = limits.memory_limit
    c.SandboxKernelManager.memory_limit = int(memory * GIB) if memory else 0
    c.SandboxKernelManager.warm = limits.warm
    c.Application.log_level = "WARN"
    return c


def _explain(messages: list[str], exc: BaseException | None) -> str:
    detail = messages[-1] if messages else (f"{type(exc).__name__}: {exc}" if exc else "")
    for needle, meaning in KNOWN_ERRORS.items():
        if needle in detail:
            return f"{meaning} [{detail}]"
    return detail or "nbgrader produced no autograded notebook"


def lesson_policy(template_db: Path, assignment: str, notebook: str):
    """The policy of ``assignment`` (``grader.policy``), its release notebook's metadata
    consulted for an assignment NormLab's table does not know."""
    release = template_release(template_db, assignment, notebook)
    metadata = nbformat.read(release, as_version=4).metadata if release.exists() else {}
    return policy_for(assignment, metadata)


def _record(path: Path, policy) -> dict[str, str] | None:
    """grade_id -> the checker's failure message ("" for a pass), for a lesson whose test cells
    ran in the checker; None for a lesson still graded in the kernel."""
    if not policy.checker:
        return None
    verdicts = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {g: "" if v["passed"] else _verdict_message(v) for g, v in verdicts.items()}


def _verdict_message(verdict: dict) -> str:
    name, value = verdict.get("ename", ""), verdict.get("evalue", "")
    return f"{name}: {value}".strip().rstrip(":") if name else "the check failed"


def _read_back(
    db: Path, autograded: Path, template_db, student, assignment, record=None
) -> SubmissionResult:
    notebook = autograded.stem
    nb_json = autograded.read_text(encoding="utf-8")
    cells = {
        grade_id_of(c): c
        for c in nbformat.reads(nb_json, as_version=4).cells
        if grade_id_of(c) is not None
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
        message = ""
        if failed and record is not None:
            message = record.get(test.grade_id, "this test cell never ran while graded")
        elif failed:
            message = failure_message(cells[test.grade_id])
        tests.append(CellGrade(test.grade_id, score, test.max_score, message, test.manual))
    return SubmissionResult(student, assignment, notebook, tests, None, nb_json, comments)


def _failed(template_db, student, assignment, notebook, error) -> SubmissionResult:
    release = template_release(template_db, assignment, notebook)
    tests = grade_cells(release) if release.exists() else []
    return SubmissionResult(student, assignment, notebook, tests, error)
