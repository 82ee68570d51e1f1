"""The instructor's class overview (grader.overview): per lesson, how many students failed each
test and the most common named mistakes — counted from the autograded notebooks, checked against
what the sample class plan (samples/expected.yaml) implies."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader.cli import build_parser
from grader.course import Course
from grader.expected import grade_cells
from grader.feedback import VERDICT
from grader.grade import GradeOptions, grade
from grader.overview import class_overview, overview_html, write_overview
from utils.mistakes import DESCRIPTIONS, describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
import generate  # noqa: E402  (samples/generate.py, not a package)

EPS = (
    "CheckFailure: [visible case] out: relative error 2.8e-06 (must be below 1e-08). Likely "
    "mistake: it looks like eps is added outside the square root: use sqrt(var + eps)"
)


def _autograded(course_dir: Path, student: str, assignment: str, verdicts: dict) -> None:
    """An autograded notebook as ``grader.gradebook.record`` stores it: one test cell per
    entry of ``verdicts`` (grade_id -> (score, max_score, message))."""
    nb = new_notebook()
    for grade_id, (score, top, message) in verdicts.items():
        test = new_code_cell(f"check_{grade_id}()")
        test.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "points": top}
        test.metadata[VERDICT] = {"score": score, "max_score": top, "message": message}
        nb.cells.append(test)
    folder = course_dir / "autograded" / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{assignment}.ipynb")


def test_failures_and_named_mistakes_are_counted_per_student(tmp_path):
    course = Course(ROOT, tmp_path)
    _autograded(tmp_path, "ann", "02", {"fwd": (3.0, 3.0, ""), "cache": (1.0, 1.0, "")})
    _autograded(tmp_path, "bo", "02", {"fwd": (0.0, 3.0, EPS), "cache": (0.0, 1.0, EPS)})
    _autograded(
        tmp_path, "cy", "02", {"fwd": (0.0, 3.0, "NotImplementedError"), "cache": (1, 1, "")}
    )
    _autograded(tmp_path, "cy", "03", {"bwd": (0.0, 2.0, "<script>alert(1)</script>")})
    lesson02, lesson03 = class_overview(course)
    assert (lesson02.assignment, lesson02.students) == ("02", 3)
    assert [(t.test, t.failed) for t in lesson02.tests.values()] == [("fwd", 2), ("cache", 1)]
    hint = "eps is added outside the square root: use sqrt(var + eps)"
    assert lesson02.tests["fwd"].hints == {hint: 1, "NotImplementedError": 1}
    assert lesson02.mistakes == {hint: 1}  # one student, though two tests name it
    assert (lesson03.students, lesson03.mistakes) == (1, {})
    page = overview_html([lesson02, lesson03])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert ">2 of 3</td>" in page and "<b>1</b> &times; eps is added outside" in page


def test_overview_is_a_cli_command_with_an_out_option(tmp_path):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--out" in subparsers.choices["overview"].format_help()
    out = write_overview(Course(ROOT, tmp_path), tmp_path / "o" / "overview.html")
    assert "no named mistake in this class" in out.read_text()


# --- the sample class: counts the plan implies ----------------------------------------------

LESSON = "02_batchnorm_forward"  # five students: right, blank, three named mistakes


def planned_failures(plan: dict, assignment: str) -> tuple[int, dict[str, int]]:
    """(students who hand in ``assignment``, autograded test -> students planned to fail it)."""
    cells = grade_cells(ROOT / "solutions", assignment)
    specs = [
        spec or {}
        for entry in plan["students"].values()
        for a, spec in entry["assignments"].items()
        if a == assignment
    ]
    failed = {
        test: sum(1 for s in specs if s.get("fails") == "all" or test in s.get("fails", []))
        for test, (_, manual) in cells.items()
        if not manual
    }
    return len(specs), failed


def planned_hints(plan: dict, assignment: str) -> dict[tuple[str, str], int]:
    """(test, words its hint must contain) -> students the plan gives that hint."""
    counts: dict[tuple[str, str], int] = {}
    for entry in plan["students"].values():
        for test, words in (
            (entry["assignments"].get(assignment) or {}).get("hints") or {}
        ).items():
            counts[test, words] = counts.get((test, words), 0) + 1
    return counts


def planned_students(plan: dict, assignment: str, words: str) -> int:
    """Students whose plan gives, in any test of ``assignment``, a hint with ``words``."""
    return sum(
        any(
            w == words
            for w in ((e["assignments"].get(assignment) or {}).get("hints") or {}).values()
        )
        for e in plan["students"].values()
    )


def is_named(words: str) -> bool:
    """Whether ``words`` come from the mistake table (``utils.mistakes.DESCRIPTIONS``)."""
    return any(words in describe(key) for key in DESCRIPTIONS)


@pytest.fixture(scope="module")
def sample_lesson(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overview")
    for handed_in in (ROOT / "samples" / "class").glob(f"*/{LESSON}"):
        shutil.copytree(handed_in, tmp / "class" / handed_in.parent.name / LESSON)
    course = Course(course_dir=tmp / "course")
    run = grade(course, tmp / "class", [LESSON], GradeOptions(workers=2), False)
    assert run.problems == [] and not [r for r in run.results if r.error]
    (lesson,) = class_overview(course)
    return lesson


@pytest.mark.slow
def test_sample_class_failures_per_test_are_what_the_plan_implies(sample_lesson):
    students, failed = planned_failures(generate.class_plan(), LESSON)
    assert sample_lesson.students == students
    assert {t.test: t.failed for t in sample_lesson.tests.values()} == failed
    for tally in sample_lesson.tests.values():
        assert sum(tally.hints.values()) == tally.failed, tally


@pytest.mark.slow
def test_sample_class_hints_and_named_mistakes_are_counted_as_planned(sample_lesson):
    plan = generate.class_plan()
    hints = planned_hints(plan, LESSON)
    assert any(is_named(words) for _, words in hints), "the plan names no mistake here"
    for (test, words), count in hints.items():
        shown = {h: n for h, n in sample_lesson.tests[test].hints.items() if words in h}
        assert list(shown.values()) == [count], (test, words, sample_lesson.tests[test].hints)
        if is_named(words):
            named = [n for m, n in sample_lesson.mistakes.items() if words in m]
            students = planned_students(plan, LESSON, words)
            assert named and set(named) == {students}, (words, sample_lesson.mistakes)
