"""End to end: the instructor's round (`grader demo`) on the bundled sample class.

Every test of every sample submission is checked against ``samples/expected.yaml`` by the
grader's own comparison (``grader.expected``, which ``python -m grader demo`` runs too): full
points unless the submission's mistake is listed as failing that test, then zero. The point
values come from the solution notebooks' nbgrader metadata, never from the grader's output.
The comparison itself is tested, on made-up results, in tests/test_grader_expected.py.
"""

from __future__ import annotations

import csv
import html
import re
import sys
from pathlib import Path

import pytest

from grader.course import Course
from grader.demo import demo, describe
from grader.expected import differences, expected_scores
from grader.grade import GradeOptions
from utils.mistakes import DESCRIPTIONS
from utils.mistakes import describe as describe_mistake

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
import generate  # noqa: E402  (samples/generate.py, not a package)

pytestmark = pytest.mark.slow


PLAN = generate.class_plan()


def expected_rows() -> dict[tuple[str, str, str], float | None]:
    """(student, assignment, test) -> expected score (see ``grader.expected``)."""
    return expected_scores(PLAN, ROOT / "solutions")


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    course = Course(course_dir=tmp_path_factory.mktemp("course"))
    samples = ROOT / "samples"
    options = GradeOptions(workers=2)
    result = demo(course, samples / "class", options, False, samples / "expected.yaml")
    return course, result


def test_samples_are_generated_from_the_current_release():
    assert generate.stale_samples() == [], "samples/ is stale: run `make samples`"


def test_every_sample_is_graded_without_error(outcome):
    _, result = outcome
    assert result.run.problems == []
    assert [r for r in result.run.results if r.error] == []
    students = {r.student for r in result.run.results}
    assert students == set(generate.class_plan()["students"])
    assert result.stale == []


def test_every_test_of_every_sample_scores_as_expected_with_its_hint(outcome):
    _, result = outcome
    assert result.differences == []
    assert differences(result.run.results, PLAN, ROOT / "solutions") == []


def test_the_per_test_csv_holds_the_expected_scores(outcome):
    _, result = outcome
    with result.tests_csv.open() as f:
        got = {
            (r["student"], r["assignment"], r["test"]): float(r["score"]) if r["score"] else None
            for r in csv.DictReader(f)
        }
    assert got == expected_rows()


def test_grades_csv_totals_the_points_and_leaves_a_missing_submission_blank(outcome):
    course, result = outcome
    expected: dict[tuple[str, str], float | None] = {
        (s, a): None for s in generate.class_plan()["students"] for a in course.assignments()
    }
    for (student, assignment, _), score in expected_rows().items():
        expected[student, assignment] = (expected[student, assignment] or 0.0) + (score or 0.0)
    with result.grades_csv.open() as f:
        got = {
            (r["student"], r["assignment"]): float(r["score"]) if r["score"] else None
            for r in csv.DictReader(f)
        }
    assert got == expected
    assert None in got.values(), "the sample class should have a missing submission"


def test_feedback_shows_hints_but_never_hidden_test_source(outcome):
    _, result = outcome
    assert result.feedback, "no feedback written"
    carol = [p for p in result.feedback if "carol_eps_outside_sqrt" in str(p)]
    assert carol and "eps is added outside the square root" in carol[0].read_text()
    for page in result.feedback:
        html = page.read_text()
        assert "_hidden(" not in html, f"{page} shows a hidden check call"
        assert "BEGIN HIDDEN TESTS" not in html


def test_demo_report_names_every_student_and_where_the_feedback_is(outcome):
    course, result = outcome
    text = describe(course, result)
    for student in generate.class_plan()["students"]:
        assert student in text
    assert str(course.course_dir / "feedback") in text


def test_the_demo_writes_a_class_overview_with_every_planned_hint(outcome):
    course, result = outcome
    assert result.overview.is_file() and result.overview.parent == course.course_dir
    page = html.unescape(re.sub(r"<[^>]+>", " ", result.overview.read_text()))
    page = re.sub(r"\s+", " ", page)
    assert "What to re-teach" in page
    for assignment in {r.assignment for r in result.run.results}:
        assert f"{assignment} " in page
    hints = [
        words
        for entry in PLAN["students"].values()
        for lesson in entry["assignments"].values()
        for words in ((lesson or {}).get("hints") or {}).values()
    ]
    named = [w for w in hints if any(w in describe_mistake(key) for key in DESCRIPTIONS)]
    assert len(named) >= 5, "the sample plan names too few mistakes to test the overview"
    for words in named:  # the overview keeps a hint's named mistake, not its other advice
        assert words in page, f"the class overview does not show the mistake {words!r}"
