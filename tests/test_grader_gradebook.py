"""The single writer and the exports, fed hand-made results (no kernel runs here)."""

from __future__ import annotations

import csv

import nbformat
import pytest
from fixtures.toy import copy_course, points
from nbgrader.api import Gradebook

from grader.course import COURSE_ID
from grader.export import export
from grader.gradebook import record, recorder, register_assignments
from grader.results import CellGrade, SubmissionResult

P = points()  # grade_id -> points of the fixture: test_double 2, test_square 3, written 1


EMPTY_NOTEBOOK = nbformat.writes(nbformat.v4.new_notebook())


def result(
    student, double=True, square=True, written=None, error=None, notebook_json=EMPTY_NOTEBOOK
):
    """A worker result for the toy notebook; written: None (awaits a human) or a number."""
    tests = [
        CellGrade("test_double", P["test_double"] if double else 0.0, P["test_double"]),
        CellGrade("test_square", P["test_square"] if square else 0.0, P["test_square"]),
        CellGrade("written_linear", written, P["written_linear"], manual=True),
    ]
    return SubmissionResult(student, "toy", "toy", tests, error, None if error else notebook_json)


@pytest.fixture
def course(tmp_path):
    course = copy_course(tmp_path)
    register_assignments(course, ["toy"], tmp_path / "scratch")
    return course


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def grade_of(course, student, cell="written_linear"):
    with Gradebook(course.db_url, COURSE_ID) as gb:
        g = gb.find_grade(cell, "toy", "toy", student)
        return g.auto_score, g.manual_score, g.needs_manual_grade


def set_manual(course, student, score, cell="written_linear"):
    with Gradebook(course.db_url, COURSE_ID) as gb:
        g = gb.find_grade(cell, "toy", "toy", student)
        g.manual_score, g.needs_manual_grade = score, False
        gb.db.commit()


def test_export_rows_add_auto_and_manual_scores(course, tmp_path):
    record(course, result("ann", written=None))
    record(course, result("ben", double=False, written=0.0))
    record(course, result("cat", error="not valid notebook JSON"))
    set_manual(course, "ann", 1.0)
    grades, tests = export(course, tmp_path / "g.csv", tmp_path / "t.csv")
    total = sum(P.values())
    assert read_csv(grades) == [
        ["student", "assignment", "score", "max_score"],
        ["ann", "toy", f"{total:g}", f"{total:g}"],
        ["ben", "toy", f"{P['test_square']:g}", f"{total:g}"],
        ["cat", "toy", "0", f"{total:g}"],
    ]
    rows = read_csv(tests)
    assert rows[0] == ["student", "assignment", "notebook", "test", "score", "max_score", "comment"]
    assert rows[1:4] == [
        ["ann", "toy", "toy", "test_double", f"{P['test_double']:g}", f"{P['test_double']:g}", ""],
        ["ann", "toy", "toy", "test_square", f"{P['test_square']:g}", f"{P['test_square']:g}", ""],
        ["ann", "toy", "toy", "written_linear", "1", "1", ""],
    ]
    assert ["ben", "toy", "toy", "test_double", "0", f"{P['test_double']:g}", ""] in rows
    assert [r[4] for r in rows if r[0] == "cat"] == ["0", "0", "0"]
    assert len(rows) == 1 + 3 * 3


def test_an_unmarked_written_answer_has_an_empty_score(course, tmp_path):
    record(course, result("ann", written=None))
    _, tests = export(course, tmp_path / "g.csv", tmp_path / "t.csv")
    assert ["ann", "toy", "toy", "written_linear", "", "1", ""] in read_csv(tests)


def test_regrading_the_same_result_keeps_the_manual_grade_and_its_review_state(course):
    record(course, result("ann", written=None))
    set_manual(course, "ann", 0.5)
    record(course, result("ann", written=None))
    assert grade_of(course, "ann") == (None, 0.5, False)


def test_a_changed_auto_score_under_a_manual_grade_asks_for_review(course):
    record(course, result("ann"))
    set_manual(course, "ann", 2.0, cell="test_double")
    record(course, result("ann", double=False))
    assert grade_of(course, "ann", "test_double") == (0.0, 2.0, True)


def test_a_failed_regrade_zeroes_the_auto_scores_and_drops_the_old_notebook(course):
    record(course, result("ann"))
    autograded = course.state_path("autograded", "ann", "toy") / "toy.ipynb"
    assert nbformat.reads(autograded.read_text(), as_version=4).cells == []
    record(course, result("ann", error="the kernel died"))
    assert not autograded.exists()
    assert grade_of(course, "ann", "test_square")[0] == 0.0


def test_a_submitted_copy_and_a_formgrader_config_are_kept(course, tmp_path):
    sent = tmp_path / "toy.ipynb"
    sent.write_text('{"sent": 1}')
    record(course, result("ann"), submitted=sent, lms_user_id="1001")
    assert (
        course.state_path("submitted", "ann", "toy") / "toy.ipynb"
    ).read_text() == sent.read_text()
    assert str(course.db_path) in (course.course_dir / "nbgrader_config.py").read_text()
    with Gradebook(course.db_url, COURSE_ID) as gb:
        assert gb.find_student("ann").lms_user_id == "1001"


def test_a_run_that_opens_the_gradebook_once_records_what_one_at_a_time_records(course, tmp_path):
    one_at_a_time = copy_course(tmp_path / "other")
    register_assignments(one_at_a_time, ["toy"], tmp_path / "other-scratch")
    results = [result("ann", written=None), result("ben", double=False, written=0.0)]
    results.append(result("cat", error="not valid notebook JSON"))
    with recorder(course) as record_in_run:
        for r in results:
            record_in_run(r)
    for r in results:
        record(one_at_a_time, r)
    exported = [
        [read_csv(p) for p in export(c, tmp_path / f"{i}g.csv", tmp_path / f"{i}t.csv")]
        for i, c in enumerate([course, one_at_a_time])
    ]
    assert exported[0] == exported[1]
    assert ["ben", "toy", f"{P['test_square']:g}", f"{sum(P.values()):g}"] in exported[0][0]
    assert grade_of(course, "ann") == grade_of(one_at_a_time, "ann")
