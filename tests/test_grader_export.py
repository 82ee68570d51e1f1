"""Every export format, read back with the format's own rules, on a gradebook made here.

The class (toy course, 6 points: test_double 2, test_square 3, written_linear 1):
ann    everything right, written answer marked 1 by hand; Canvas SIS Login ID "ann"
=1+1   a hostile id; double wrong (hint from its autograded notebook); came from a Canvas zip
ben    could not be graded (0 everywhere, the reason as every test's hint); in no roster
zed    in the gradebook with names that start formulas, but no submission
"""

from __future__ import annotations

import csv
import datetime
import json

import jsonschema
import nbformat
import pytest
from fixtures.toy import copy_course, points, release
from nbgrader.api import Gradebook
from nbgrader.plugins.export import CsvExportPlugin

from grader.cli import main
from grader.course import COURSE_ID
from grader.export import export_as, spreadsheet_safe
from grader.gradebook import record, register_assignments
from grader.results import CellGrade, SubmissionResult

P = points()
TOTAL = sum(P.values())
EVIL = "=1+1"
DUE = datetime.datetime(2025, 1, 31, 17, 0)
HINT = "AssertionError: double(3) returned 9, expected 6"
REASON = "ben.ipynb is not valid notebook JSON"


def _autograded(double_error: tuple[str, str] | None = None, note: str | None = None) -> str:
    """The toy release as an autograded notebook: test_double failed with ``double_error``;
    ``note``: grader.worker's first cell for a notebook that could not be graded."""
    nb = release()
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_double" and double_error:
            ename, evalue = double_error
            cell.outputs = [
                nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])
            ]
    if note:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    return nbformat.writes(nb)


def _result(student, double=True, written=None, error=None, notebook_json=None):
    tests = [
        CellGrade("test_double", P["test_double"] if double else 0.0, P["test_double"]),
        CellGrade("test_square", 0.0 if error else P["test_square"], P["test_square"]),
        CellGrade("written_linear", written, P["written_linear"], manual=True),
    ]
    return SubmissionResult(student, "toy", "toy", tests, error, notebook_json)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    course = copy_course(tmp)
    register_assignments(course, ["toy"], tmp / "scratch")
    record(course, _result("ann", written=None, notebook_json=_autograded()))
    record(
        course,
        _result(
            EVIL, double=False, written=0.0, notebook_json=_autograded(("AssertionError", "x"))
        ),
        lms_user_id="102",
    )
    note = f"**Not graded: this notebook scores 0.** Reason: {REASON}"
    record(
        course, _result("ben", double=False, error=REASON, notebook_json=_autograded(None, note))
    )
    # a hint that starts a formula, in the hostile student's notebook
    hostile = course.state_path("autograded", EVIL, "toy") / "toy.ipynb"
    hostile.write_text(_autograded(("=cmd", "|' /C calc'!A0")), encoding="utf-8")
    with Gradebook(course.db_url, COURSE_ID) as gb:
        gb.update_or_create_student("ann", first_name="Ann", last_name="Lee", email="ann@uni.edu")
        gb.update_or_create_student("zed", first_name="@SUM(1)", last_name="-2", email="\tz@x")
        gb.find_assignment("toy").duedate = DUE
        grade = gb.find_grade("written_linear", "toy", "toy", "ann")
        grade.manual_score, grade.needs_manual_grade = P["written_linear"], False
        gb.find_comment("written_linear", "toy", "toy", "ann").manual_comment = COMMENT
        gb.find_comment("written_linear", "toy", "toy", EVIL).manual_comment = "=HYPERLINK(1)"
        gb.db.commit()
    return course


COMMENT = "Right idea; say why the scale is learned too."


def read_dicts(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _n(x: float) -> str:
    return f"{x:g}"


def test_formula_leading_text_is_neutralized_and_plain_text_kept():
    assert [spreadsheet_safe(v) for v in ("=A1", "+1", "-2", "@SUM(1)", "\tx", "\rx")] == [
        "'=A1",
        "'+1",
        "'-2",
        "'@SUM(1)",
        "'\tx",
        "'\rx",
    ]
    assert [spreadsheet_safe(v) for v in ("ann", "2.5", "", "a=b")] == ["ann", "2.5", "", "a=b"]


# ---- nbgrader -----------------------------------------------------------------------------


def test_nbgrader_format_matches_nbgrader_export_but_leaves_missing_scores_empty(course, tmp_path):
    done = export_as(course, "nbgrader", tmp_path / "nb.csv", tmp_path / "t.csv")
    header, ours = read_dicts(done.grades)
    theirs_path = tmp_path / "nbgrader.csv"
    with Gradebook(course.db_url, COURSE_ID) as gb:
        CsvExportPlugin(to=str(theirs_path)).export(gb)
    theirs_header, theirs = read_dicts(theirs_path)
    assert (
        header
        == theirs_header
        == [
            "assignment",
            "duedate",
            "timestamp",
            "student_id",
            "last_name",
            "first_name",
            "email",
            "raw_score",
            "late_submission_penalty",
            "score",
            "max_score",
        ]
    )
    by_student = {r["student_id"]: r for r in ours}
    assert set(by_student) == {"ann", "ben", spreadsheet_safe(EVIL), "zed"}
    for row in theirs:
        expected = {k: spreadsheet_safe(v) for k, v in row.items()}
        if row["student_id"] == "zed":  # no submission: nbgrader says 0.0, we say nothing
            expected |= {"raw_score": "", "late_submission_penalty": "", "score": ""}
        assert by_student[expected["student_id"]] == expected
    assert by_student["ann"]["score"] == str(TOTAL) and by_student["ann"]["duedate"] == str(DUE)
    assert by_student["'=1+1"]["score"] == str(P["test_square"])
    assert by_student["ben"]["score"] == "0.0"
    zed = by_student["zed"]
    assert (zed["first_name"], zed["last_name"], zed["email"]) == ("'@SUM(1)", "'-2", "'\tz@x")
    assert done.left_out == []


def test_grades_csv_has_a_row_with_an_empty_score_for_no_submission(course, tmp_path):
    done = export_as(course, out=tmp_path / "g.csv", per_test=tmp_path / "t.csv")
    header, rows = read_dicts(done.grades)
    assert header == ["student", "assignment", "score", "max_score"]
    assert [(r["student"], r["score"]) for r in rows] == [
        ("'=1+1", _n(P["test_square"])),
        ("ann", _n(TOTAL)),
        ("ben", "0"),
        ("zed", ""),
    ]


def test_the_per_test_csv_stays_with_every_format(course, tmp_path):
    export_as(course, "moodle", tmp_path / "m.csv", tmp_path / "t.csv")
    header, rows = read_dicts(tmp_path / "t.csv")
    assert header == ["student", "assignment", "notebook", "test", "score", "max_score", "comment"]
    assert {r["student"] for r in rows} == {"ann", "ben", "'=1+1"}
    assert [r["score"] for r in rows if r["student"] == "ann"] == ["2", "3", "1"]
    comments = {(r["student"], r["test"]): r["comment"] for r in rows if r["comment"]}
    assert comments == {
        ("ann", "written_linear"): COMMENT,
        ("'=1+1", "written_linear"): "'=HYPERLINK(1)",
    }


# ---- Canvas -------------------------------------------------------------------------------

CANVAS_ROSTER = (
    "Student,ID,SIS User ID,SIS Login ID,Section,toy (4321),other (99),Current Score\n"
    "    Points Possible,,,,,6,10,(read only)\n"
    '"Lee, Ann",101,S-1,ann,Sec 1,,,\n'
    '"Hacker, Eve",102,S-2,eve,Sec 2,,,\n'
    '"Zed, Zoe",103,S-3,zoe,Sec 1,,,\n'
    '"Absent, Al",104,S-4,al,Sec 2,,,\n'
)


@pytest.fixture
def roster(tmp_path):
    """Canvas's own gradebook export, with a ``student`` column added for zed only."""
    lines = CANVAS_ROSTER.splitlines()
    with_ids = [lines[0] + ",student", *(line + "," for line in lines[1:4])]
    with_ids += [lines[4] + ",zed", lines[5] + ","]
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(with_ids) + "\n", encoding="utf-8")
    return path


def test_canvas_import_maps_students_through_the_roster_and_reports_the_rest(
    course, roster, tmp_path
):
    done = export_as(course, "canvas", tmp_path / "canvas.csv", tmp_path / "t.csv", roster)
    with open(done.grades, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "toy (4321)"]
    assert rows[1] == ["    Points Possible", "", "", "", "", _n(TOTAL)]
    assert rows[2:] == [
        ["Hacker, Eve", "102", "S-2", "eve", "Sec 2", _n(P["test_square"])],  # by Canvas user id
        ["Lee, Ann", "101", "S-1", "ann", "Sec 1", _n(TOTAL)],  # by SIS Login ID
        ["Zed, Zoe", "103", "S-3", "zoe", "Sec 1", ""],  # by `student`; no submission
        ["Absent, Al", "104", "S-4", "al", "Sec 2", ""],  # only in Canvas
    ]
    assert done.left_out == ["'ben': not in the roster and no Canvas user id"]


def test_canvas_without_roster_keeps_zip_students_and_names_a_new_assignment(course, tmp_path):
    done = export_as(course, "canvas", tmp_path / "canvas.csv", tmp_path / "t.csv")
    with open(done.grades, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][-1] == "toy"  # Canvas creates it, with the points of the next row
    assert rows[2:] == [["'=1+1", "102", "", "", "", _n(P["test_square"])]]
    assert {line.split(":")[0] for line in done.left_out} == {"'ann'", "'ben'", "'zed'"}


def test_the_cli_writes_canvas_and_exits_1_naming_who_was_left_out(
    course, roster, tmp_path, capsys
):
    out = tmp_path / "c.csv"
    args = ["export", "--format", "canvas", "--roster", roster, "--out", out]
    code = main([str(a) for a in [*args, "--per-test", tmp_path / "t.csv", "--root", course.root]])
    printed = capsys.readouterr().out
    assert code == 1 and out.exists()
    assert "left out of c.csv: 'ben': not in the roster and no Canvas user id" in printed


def test_an_unreadable_roster_cannot_run(course, tmp_path, capsys):
    code = main(
        ["export", "--format", "canvas", "--roster", str(tmp_path / "nope.csv")]
        + ["--out", str(tmp_path / "c.csv"), "--root", str(course.root)]
    )
    assert code == 2 and "cannot read the roster" in capsys.readouterr().err


# ---- Moodle -------------------------------------------------------------------------------


def test_moodle_by_username_has_every_student_with_empty_score_for_no_submission(course, tmp_path):
    done = export_as(course, "moodle", tmp_path / "moodle.csv", tmp_path / "t.csv")
    header, rows = read_dicts(done.grades)
    assert header == ["username", "toy"]
    assert rows == [
        {"username": "'=1+1", "toy": _n(P["test_square"])},
        {"username": "ann", "toy": _n(TOTAL)},
        {"username": "ben", "toy": "0"},
        {"username": "zed", "toy": ""},
    ]
    assert done.left_out == []


def test_moodle_by_email_uses_the_roster_then_the_gradebook(course, tmp_path):
    roster = tmp_path / "moodle-roster.csv"
    roster.write_text("student,email\nben,ben@uni.edu\n", encoding="utf-8")
    done = export_as(
        course, "moodle", tmp_path / "moodle.csv", tmp_path / "t.csv", roster, moodle_id="email"
    )
    header, rows = read_dicts(done.grades)
    assert header == ["email", "toy"]
    assert rows == [
        {"email": "ann@uni.edu", "toy": _n(TOTAL)},
        {"email": "ben@uni.edu", "toy": "0"},
        {"email": "'\tz@x", "toy": ""},
    ]
    assert done.left_out == ["'=1+1': no Moodle email"]


# ---- Gradescope ---------------------------------------------------------------------------

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
GRADESCOPE_RESULTS = {  # Gradescope's documented results.json, no extra keys allowed
    "type": "object",
    "additionalProperties": False,
    "required": ["tests"],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "max_score"],
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def gradescope(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("gs") / "gradescope"
    done = export_as(course, "gradescope", out, out.parent / "t.csv")
    assert done.grades == out and done.left_out == []
    return out


def _results(folder, student):
    return json.loads((folder / "toy" / student / "results.json").read_text(encoding="utf-8"))


def test_gradescope_writes_one_valid_results_json_per_student_and_assignment(gradescope):
    files = sorted(p.relative_to(gradescope).as_posix() for p in gradescope.rglob("*.json"))
    assert files == [f"toy/{s}/results.json" for s in ("=1+1", "ann", "ben", "zed")]
    for path in gradescope.rglob("results.json"):
        jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), GRADESCOPE_RESULTS)


def test_gradescope_tests_carry_scores_manual_grades_and_hints(gradescope):
    ann = _results(gradescope, "ann")
    assert ann["score"] == TOTAL
    assert [(t["name"], t["score"], t["max_score"], t["status"]) for t in ann["tests"]] == [
        ("toy: test_double", P["test_double"], P["test_double"], "passed"),
        ("toy: test_square", P["test_square"], P["test_square"], "passed"),
        ("toy: written_linear", P["written_linear"], P["written_linear"], "passed"),
    ]
    assert all(t["visibility"] == "visible" for t in ann["tests"])
    evil = _results(gradescope, "=1+1")
    double = evil["tests"][0]
    assert (double["score"], double["status"]) == (0.0, "failed")
    assert double["output"] == "'=cmd: |' /C calc'!A0"  # the hint, neutralized
    assert evil["score"] == P["test_square"]
    assert ann["tests"][2]["output"] == f"Grader's comment: {COMMENT}"
    assert evil["tests"][2]["output"] == "Grader's comment: =HYPERLINK(1)"


def test_gradescope_gives_the_reason_a_notebook_was_not_graded(gradescope):
    ben = _results(gradescope, "ben")
    assert ben["score"] == 0
    assert all(REASON in t["output"] and t["score"] == 0 for t in ben["tests"][:2])


def test_gradescope_has_no_score_for_a_student_who_submitted_nothing(gradescope):
    zed = _results(gradescope, "zed")
    assert "score" not in zed and "No submission of toy" in zed["output"]
    assert [t["output"] for t in zed["tests"]] == ["no submission"] * 3
    assert all("score" not in t for t in zed["tests"])


def test_gradescope_leaves_an_unmarked_written_answer_unscored(tmp_path):
    course = copy_course(tmp_path)
    register_assignments(course, ["toy"], tmp_path / "scratch")
    record(course, _result("amy", written=None, notebook_json=_autograded()))
    export_as(course, "gradescope", tmp_path / "gs", tmp_path / "t.csv")
    written = _results(tmp_path / "gs", "amy")["tests"][2]
    assert "score" not in written and written["output"] == "awaits a human grader"
