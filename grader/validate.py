"""Check a course before it ships: the release is current, leaks nothing, fails every test,
and the instructor's solutions pass every test.

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
from grader.grade import run_jobs
from grader.markup import (
    HIDDEN_TESTS,
    SOLUTION,
    STUB_LINES,
    has_markers,
    lines_outside,
    region_lines,
)
from grader.worker import SubmissionResult


def validate(
    course: Course, workers: int = 2, timeout: int = 120, memory_limit: float = 4.0
) -> list[str]:
    """Every problem found, one readable line each; [] means the course is fit to ship."""
    assignments = course.assignments()
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


def _grading_problems(course, pairs, workers, timeout, memory_limit) -> list[str]:
    jobs = []
    for assignment, source in pairs:
        jobs.append((assignment, source, "solution"))
        release = course.release_notebook(assignment, source.stem)
        if release.exists():
            jobs.append((assignment, release, "release"))
    with tempfile.TemporaryDirectory(prefix="normlab-validate-") as tmp:
        template_db = make_template(course, Path(tmp), sorted({a for a, _ in pairs}))

        def job(item):
            assignment, path, _ = item
            return (course.root, assignment, "validate", path, template_db, timeout, memory_limit)

        problems = []
        for (_, path, kind), result in run_jobs(jobs, job, workers):
            problems += _judge(result, _label(course, path), kind)
    return sorted(problems)


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
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    return grade_id or cell.get("id") or f"#{index}"


def _label(course: Course, path: Path) -> str:
    try:
        return str(Path(path).relative_to(course.root))
    except ValueError:
        return str(path)
