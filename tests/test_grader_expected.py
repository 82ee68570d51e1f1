"""grader.expected: the comparison `grader demo` and tests/test_samples.py make between a
grading run and samples/expected.yaml, on made-up results for the toy course."""

from __future__ import annotations

import pytest
from fixtures.toy import COURSE

from grader import cli
from grader.expected import differences, expected_scores
from grader.results import CellGrade, SubmissionResult

SOLUTIONS = COURSE / "solutions"
PLAN = {
    "students": {
        "ann": {"assignments": {"toy": {}}},
        "bob": {
            "assignments": {"toy": {"fails": ["test_double"], "hints": {"test_double": "times 3"}}}
        },
        "cid": {"assignments": {"toy": {"blank": True, "fails": "all"}}},
    }
}


def _result(student, double, square, written, message="", error=None) -> SubmissionResult:
    tests = [
        CellGrade("test_double", double, 2.0, message),
        CellGrade("test_square", square, 3.0),
        CellGrade("written_linear", written, 1.0, "", manual=True),
    ]
    return SubmissionResult(student, "toy", "toy", tests, error)


def _as_expected() -> list[SubmissionResult]:
    return [
        _result("ann", 2.0, 3.0, None),
        _result("bob", 0.0, 3.0, None, "AssertionError: double returned x times 3"),
        _result("cid", 0.0, 0.0, 0.0),
    ]


def test_the_expected_scores_come_from_the_plan_and_the_solution_points():
    assert expected_scores(PLAN, SOLUTIONS) == {
        ("ann", "toy", "test_double"): 2.0,
        ("ann", "toy", "test_square"): 3.0,
        ("ann", "toy", "written_linear"): None,
        ("bob", "toy", "test_double"): 0.0,
        ("bob", "toy", "test_square"): 3.0,
        ("bob", "toy", "written_linear"): None,
        ("cid", "toy", "test_double"): 0.0,
        ("cid", "toy", "test_square"): 0.0,
        ("cid", "toy", "written_linear"): 0.0,
    }


def test_a_run_as_expected_has_no_differences():
    assert differences(_as_expected(), PLAN, SOLUTIONS) == []


def test_every_difference_names_student_assignment_test_expected_and_got():
    results = _as_expected()
    results[0] = _result("ann", 0.0, 3.0, 1.0)  # lost a test; a written answer got a score
    results[1] = _result("bob", 0.0, 3.0, None, "AssertionError: wrong")  # hint lacks its words
    results[2] = _result("cid", 0.0, 0.0, 0.0, error="the kernel died")
    results.append(_result("dee", 2.0, 3.0, None))  # a student the plan does not know
    assert differences(results, PLAN, SOLUTIONS) == [
        "cid/toy: not graded: the kernel died",
        "ann/toy/test_double: expected 2, got 0",
        "ann/toy/written_linear: expected no score (a human grades it), got 1",
        "bob/toy/test_double: hint should contain 'times 3', got 'AssertionError: wrong'",
        "dee/toy/test_double: graded but not in expected.yaml",
        "dee/toy/test_square: graded but not in expected.yaml",
        "dee/toy/written_linear: graded but not in expected.yaml",
    ]


def test_a_sample_that_was_not_graded_is_a_difference_per_test():
    lines = differences(_as_expected()[:2], PLAN, SOLUTIONS)
    assert lines == [
        "cid/toy/test_double: expected 0, got no score (not graded)",
        "cid/toy/test_square: expected 0, got no score (not graded)",
        "cid/toy/written_linear: expected 0, got no score (not graded)",
    ]


def test_a_plan_naming_an_unknown_test_is_refused():
    plan = {"students": {"ann": {"assignments": {"toy": {"fails": ["test_cube"]}}}}}
    with pytest.raises(ValueError, match="ann/toy names unknown test_cube"):
        expected_scores(plan, SOLUTIONS)


@pytest.mark.parametrize("found, status", [([], 0), (["ann/toy/test_double: x"], 1)])
def test_demo_exits_1_when_a_sample_scores_otherwise(monkeypatch, tmp_path, found, status):
    """The exit status is wired to the comparison (the real round: tests/test_samples.py)."""
    samples = tmp_path / "samples"
    (samples / "class").mkdir(parents=True)
    (samples / "expected.yaml").write_text("students: {}\n")
    seen = {}

    class Outcome:
        differences = found

    def fake_demo(course, folder, options, expected=None):
        seen["expected"] = expected
        return Outcome()

    monkeypatch.setattr("grader.demo.demo", fake_demo)
    monkeypatch.setattr("grader.demo.describe", lambda course, outcome: "report")
    args = ["demo", "--samples", str(samples / "class"), "--course-dir", str(tmp_path / "c")]
    assert cli.main(args) == status
    assert seen["expected"] == samples / "expected.yaml"
