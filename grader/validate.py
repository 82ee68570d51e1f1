"""Check a course before it ships: the release is current, leaks nothing, fails every test,
and the instructor's solutions pass every test.

Grading skips the cells a lesson tags ``learner-only`` (``grader.markup``); validation grades
the solution, the release and every planted bug (the samples that ``samples/expected.yaml``
edits) a second time with those cells run and reports every test whose score differs, so a
tagged cell that a test depends on fails validation, as does the tag on a cell nbgrader owns.

Tests are run by the real grading pipeline (the same worker a class is graded with): every
auto-graded test must give full points on ``solutions/`` and no points on ``notebooks/``.
Written answers (graded by hand) are left out of both. The leak check compares line by line:
a release line equal to a line inside a solution fence or a hidden-test region of the source —
and found nowhere outside them — is a leak, as is any fence or hidden-test marker.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat

from grader.build import make_template, stale_files
from grader.course import Course
from grader.expected import load_plan
from grader.grade import run_jobs
from grader.markup import (
    HIDDEN_TESTS,
    LEARNER_ONLY,
    SOLUTION,
    STUB_LINES,
    grade_id_of,
    has_markers,
    is_tagged_learner_only,
    learner_only_sources,
    lines_outside,
    region_lines,
)
from grader.results import SubmissionResult
from grader.worker import GradeJob


def validate(
    course: Course,
    workers: int = 2,
    timeout: int = 120,
    memory_limit: float = 4.0,
    assignments: list[str] | None = None,
) -> list[str]:
    """Every problem found, one readable line each; [] means the course (or only
    ``assignments`` of it) is fit to ship."""
    assignments = [a for a in course.assignments() if not assignments or a in assignments]
    if not assignments:
        return [f"no assignments: {course.solutions_dir} holds no <assignment>/<notebook>.ipynb"]
    problems = [
        f"release is stale ({p}); run `python -m grader build`" for p in stale_files(course)
    ]
    pairs = [(a, source) for a in assignments for source in course.source_notebooks(a)]
    for assignment, source in pairs:
        release = course.release_notebook(assignment, source.stem)
        if release.exists():
            problems += leaks(source, release, _label(course, release))
        problems += owned_learner_only(source, _label(course, source))
    problems += _grading_problems(course, pairs, workers, timeout, memory_limit)
    return problems


def leaks(source: Path, release: Path, label: str) -> list[str]:
    """Lines of ``release`` that reveal solution code or hidden tests of ``source``."""
    src = nbformat.read(source, as_version=4)
    visible = {
        line.strip()
        for c in src.cells
        for line in lines_outside(c.source, (SOLUTION, HIDDEN_TESTS))
    }
    secrets = {}
    for kind, region in (("solution code", SOLUTION), ("a hidden test", HIDDEN_TESTS)):
        for cell in src.cells:
            for line in region_lines(cell.source, region):
                if line.strip() and line.strip() not in visible | STUB_LINES:
                    secrets.setdefault(line.strip(), kind)
    problems = []
    for index, cell in enumerate(nbformat.read(release, as_version=4).cells):
        where = f"{label} cell {_cell_name(cell, index)}"
        for marker in has_markers(cell.source):
            problems.append(f"{where}: contains the marker {marker!r}")
        for number, line in enumerate(cell.source.splitlines(), 1):
            if line.strip() in secrets:
                problems.append(
                    f"{where} line {number}: reveals {secrets[line.strip()]}: {line.strip()!r}"
                )
        if cell.get("outputs"):
            problems.append(f"{where}: has outputs (a release is committed without outputs)")
    return problems


def owned_learner_only(source: Path, label: str) -> list[str]:
    """The ``learner-only`` tags of ``source`` on cells nbgrader owns: grading runs them anyway."""
    return [
        f"{label} cell {_cell_name(cell, index)}: tagged {LEARNER_ONLY!r} but nbgrader owns it "
        "(a graded, solution or locked cell is always run); untag it"
        for index, cell in enumerate(nbformat.read(source, as_version=4).cells)
        if is_tagged_learner_only(cell) and cell.metadata.get("nbgrader")
    ]


def planted_bugs(course: Course, assignment: str) -> list[Path]:
    """The sample submissions of ``assignment`` that ``samples/expected.yaml`` plants a bug in
    (an ``edit`` of the solution); [] for a course without samples."""
    plan = course.root / "samples" / "expected.yaml"
    if not plan.exists():
        return []
    students = load_plan(plan).get("students", {})
    folders = [
        course.root / "samples" / "class" / student / assignment
        for student, spec in students.items()
        if (spec.get("assignments", {}).get(assignment) or {}).get("edit")
    ]
    return sorted(path for folder in folders for path in folder.glob("*.ipynb"))


def _grading_problems(course, pairs, workers, timeout, memory_limit) -> list[str]:
    tagged = {a for a, source in pairs if learner_only_sources(nbformat.read(source, 4))}
    jobs = []
    for assignment, source in pairs:
        jobs.append((assignment, source, "solution"))
        release = course.release_notebook(assignment, source.stem)
        if release.exists():
            jobs.append((assignment, release, "release"))
        if assignment in tagged:
            jobs += [(assignment, path, "planted bug") for path in planted_bugs(course, assignment)]
    runs = [(item, False) for item in jobs]
    runs += [(item, True) for item in jobs if item[0] in tagged]
    with tempfile.TemporaryDirectory(prefix="normlab-validate-") as tmp:
        template_db = make_template(course, Path(tmp), sorted({a for a, _ in pairs}))

        def job(run) -> GradeJob:
            (assignment, path, _), learner_only = run
            return GradeJob(
                course.root,
                assignment,
                "validate",
                path,
                template_db,
                timeout=timeout,
                memory_limit=memory_limit,
                run_learner_only=learner_only,
            )

        problems, results = [], {}
        for ((_, path, kind), learner_only), result in run_jobs(runs, job, workers):
            results[path, learner_only] = result
            if not learner_only and kind != "planted bug":
                problems += _judge(result, _label(course, path), kind)
    for _, path, _ in jobs:
        if (path, True) in results:
            skipped, ran = results[path, False], results[path, True]
            problems += learner_only_differences(skipped, ran, _label(course, path))
    return sorted(problems)


def learner_only_differences(skipped: SubmissionResult, run: SubmissionResult, label: str):
    """The tests of one notebook that score differently with its learner-only cells skipped
    (``skipped``) and run (``run``), one line each."""
    if bool(skipped.error) != bool(run.error):
        return [
            f"{label}: graded with the {LEARNER_ONLY} cells skipped: {skipped.error or 'no error'}"
            f"; with them run: {run.error or 'no error'}"
        ]
    scores = {t.grade_id: t.score for t in run.tests if not t.manual}
    return [
        f"{label}: test {t.grade_id} gives {t.score:g} with the {LEARNER_ONLY} cells skipped and "
        f"{scores.get(t.grade_id)} with them run: a test depends on a cell tagged "
        f"{LEARNER_ONLY!r}; untag it"
        for t in skipped.tests
        if not t.manual and t.score != scores.get(t.grade_id)
    ]


def _judge(result: SubmissionResult, label: str, kind: str) -> list[str]:
    if result.error:
        return [f"{label}: could not be graded: {result.error}"]
    problems = []
    for t in result.tests:
        if t.manual:
            continue
        if kind == "solution" and not t.passed:
            problems.append(
                f"{label}: test {t.grade_id} gives {t.score:g}/{t.max_score:g} on "
                f"the instructor's solution: {t.message}"
            )
        if kind == "release" and (t.score or 0) > 0:
            problems.append(
                f"{label}: test {t.grade_id} gives {t.score:g}/{t.max_score:g} on "
                "the unfilled release (it must fail until the exercise is done)"
            )
    return problems


def _cell_name(cell, index: int) -> str:
    return grade_id_of(cell) or cell.get("id") or f"#{index}"


def _label(course: Course, path: Path) -> str:
    try:
        return str(Path(path).relative_to(course.root))
    except ValueError:
        return str(path)
