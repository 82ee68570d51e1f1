"""The toy class end to end through the CLI: grade, export, feedback, re-grade, check, validate,
an LMS zip and the demo. Expected points come from the fixture's notebook, never the grader."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest
from fixtures.toy import cell, copy_course, points, release, submission
from nbgrader.api import Gradebook

from grader.cli import main
from grader.course import COURSE_ID
from grader.markup import HIDDEN_TESTS, region_lines

pytestmark = pytest.mark.slow

P = points()
AUTO = P["test_double"] + P["test_square"]
TOTAL = sum(P.values())
# student -> points of (test_double, test_square, written_linear) the fixture class must get
EXPECTED = {
    "alice": (P["test_double"], P["test_square"], None),  # written answer awaits a human
    "bob": (0, 0, 0),
    "carol": (0, P["test_square"], 0),
    "dave": (0, 0, 0),  # truncated JSON
    "erin": (0, 0, 0),  # tests tampered with and deleted: they come back
    "frank": (P["test_double"], P["test_square"], 0),  # its numpy.py is never importable
    "gina": (0, P["test_square"], 0),  # fails the hidden case only
}


def _n(x) -> str:
    return "" if x is None else f"{x:g}"


def cli(*args) -> tuple[int, str]:
    """Run ``python -m grader ARGS`` in a subprocess; (exit code, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "grader", *map(str, args)], capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def run(capsys):
    """``grader.cli.main`` in this process (saves a Python start per call); (code, output)."""

    def run(*args) -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The fixture class (plus dave's truncated notebook) graded once: (course, grade output)."""
    course = copy_course(tmp_path_factory.mktemp("pipeline"))
    dave = submission(course.root / "submissions" / "dave" / "toy" / "toy.ipynb")
    dave.write_text(dave.read_text()[: len(dave.read_text()) // 2])
    code, out = cli(
        "grade", course.root / "submissions", "--workers", 2, "--timeout", 30, "--root", course.root
    )
    assert code == 0, out
    return course, out


def test_grade_prints_a_summary_and_what_it_could_not_map(graded):
    _, out = graded
    assert "not graded: ignored frank/toy/numpy.py: only notebooks are graded" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for student, expected in EXPECTED.items():
        assert f"{_n(sum(x or 0 for x in expected))}/{_n(TOTAL)}" in lines[student]
    assert "ERROR" in lines["dave"] and "not valid notebook JSON" in lines["dave"]
    assert "1 written answer(s) to grade by hand" in lines["alice"]
    assert "grading:" in out and "7/7" in out  # the progress bar


def test_export_writes_exact_grades_and_per_test_rows(graded, run, tmp_path):
    course, _ = graded
    code, out = run(
        "export",
        "--out",
        tmp_path / "g.csv",
        "--per-test",
        tmp_path / "t.csv",
        "--root",
        course.root,
    )
    assert code == 0, out
    assert read_csv(tmp_path / "g.csv") == [["student", "assignment", "score", "max_score"]] + [
        [s, "toy", _n(sum(x or 0 for x in e)), _n(TOTAL)] for s, e in sorted(EXPECTED.items())
    ]
    expected_tests = [
        ["student", "assignment", "notebook", "test", "score", "max_score", "comment"]
    ]
    for student, scores in sorted(EXPECTED.items()):
        for test, score in zip(
            ("test_double", "test_square", "written_linear"), scores, strict=True
        ):
            expected_tests.append([student, "toy", "toy", test, _n(score), _n(P[test]), ""])
    assert read_csv(tmp_path / "t.csv") == expected_tests


def test_feedback_shows_scores_and_hints_but_no_hidden_test(graded, run, tmp_path):
    course, _ = graded
    code, out = run("feedback", "--out", tmp_path / "fb", "--root", course.root)
    assert code == 0, out
    files = sorted(tmp_path.glob("fb/*/toy/toy.html"))
    assert [f.parent.parent.name for f in files] == sorted(EXPECTED)
    dave = (tmp_path / "fb" / "dave" / "toy" / "toy.html").read_text()
    assert "scores 0" in dave and "not valid notebook JSON" in dave
    solution = nbformat.read(course.source_notebook("toy", "toy"), as_version=4)
    hidden = [
        line.strip()
        for c in solution.cells
        for line in region_lines(c.source, HIDDEN_TESTS)
        if line.strip()
    ]
    for html in files:
        text = html.read_text()
        assert "HIDDEN-MARKER" not in text and "HIDDEN TESTS" not in text
        assert "Cell In[" not in text and "most recent call last" not in text  # no traceback
        assert not any(_escaped_code(line) in _plain(text) for line in hidden)
        if html.parent.parent.name != "dave":  # dave's feedback is the release with a note
            assert "hidden tests ran here" in text
    carol = (tmp_path / "fb" / "carol" / "toy" / "toy.html").read_text()
    assert f"Score: 0.0 / {P['test_double']}" in carol and "AssertionError" in carol
    assert f"toy (Score: {P['test_square']:.1f} / {TOTAL:.1f})" in carol


def _plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def _escaped_code(line: str) -> str:
    return (
        line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def test_hidden_test_source_never_reaches_the_kernel_nor_the_feedback(graded, run, tmp_path):
    course, _ = graded
    # The spy answers wrongly as soon as any cell the kernel ran holds the hidden line: with the
    # checker, a test cell's source stays in the grader, so the spy keeps its full points.
    spy = (
        "def double(x):\n"
        "    seen = 'HIDDEN-' + 'MARKER' in str(get_ipython().user_ns['In'])\n"
        "    print('SPY-' + 'OUTPUT', seen)\n"
        "    return 2 * np.asarray(x) + seen"
    )
    folder = tmp_path / "spy"
    submission(folder / "spy" / "toy" / "toy.ipynb", double=spy)
    state = tmp_path / "state"
    assert run("grade", folder, "--root", course.root, "--course-dir", state)[0] == 0
    assert run("feedback", "--root", course.root, "--course-dir", state)[0] == 0
    autograded = (state / "autograded" / "spy" / "toy" / "toy.ipynb").read_text()
    assert autograded.count("HIDDEN-MARKER") == 1  # the restored test source, no output
    assert (
        run(
            "export",
            "--per-test",
            tmp_path / "t.csv",
            "--out",
            tmp_path / "g.csv",
            "--root",
            course.root,
            "--course-dir",
            state,
        )[0]
        == 0
    )
    rows = {r[3]: r[4] for r in read_csv(tmp_path / "t.csv")[1:]}
    assert rows["test_double"] == _n(P["test_double"])  # the spy never saw the hidden line
    html = (state / "feedback" / "spy" / "toy" / "toy.html").read_text()
    assert "HIDDEN-MARKER" not in html and "SPY-OUTPUT" not in html


def test_regrading_is_idempotent_and_keeps_manual_grades(graded, run, tmp_path):
    course, _ = graded
    with Gradebook(course.db_url, COURSE_ID) as gb:
        grade = gb.find_grade("written_linear", "toy", "toy", "alice")
        grade.manual_score, grade.needs_manual_grade = P["written_linear"], False
        gb.db.commit()
    before = tmp_path / "before.csv"
    assert (
        run("export", "--per-test", before, "--out", tmp_path / "g0.csv", "--root", course.root)[0]
        == 0
    )
    code, out = run("grade", course.root / "submissions", "--workers", 2, "--root", course.root)
    assert code == 0, out
    after = tmp_path / "after.csv"
    assert (
        run("export", "--per-test", after, "--out", tmp_path / "g1.csv", "--root", course.root)[0]
        == 0
    )
    assert read_csv(after) == read_csv(before)
    assert ["alice", "toy", _n(TOTAL), _n(TOTAL)] in read_csv(tmp_path / "g1.csv")
    with Gradebook(course.db_url, COURSE_ID) as gb:
        grade = gb.find_grade("written_linear", "toy", "toy", "alice")
        assert (grade.manual_score, grade.needs_manual_grade) == (P["written_linear"], False)


def test_check_prints_each_test_with_its_hint_and_the_total(graded):
    course, _ = graded
    code, out = cli(
        "check", course.root / "submissions" / "carol" / "toy" / "toy.ipynb", "--root", course.root
    )
    assert code == 0, out
    lines = out.splitlines()
    assert f"FAIL  test_double     0/{_n(P['test_double'])}  AssertionError" in lines
    assert f"PASS  test_square     {_n(P['test_square'])}/{_n(P['test_square'])}" in lines
    assert any(line.startswith("HUMAN written_linear") for line in lines)
    assert f"total {_n(P['test_square'])}/{_n(AUTO)} auto-graded points" in out


def test_check_grades_a_renamed_copy_and_marks_written_answers_for_a_human(graded, run, tmp_path):
    course, _ = graded
    renamed = tmp_path / "toy-Copy1.ipynb"
    shutil.copyfile(course.root / "submissions" / "alice" / "toy" / "toy.ipynb", renamed)
    code, out = run("check", renamed, "--root", course.root)
    assert code == 0, out
    assert f"total {_n(AUTO)}/{_n(AUTO)} auto-graded points" in out
    assert "needs a human grader" in out


def test_a_canvas_zip_is_graded_and_unmapped_entries_are_reported(graded, run, tmp_path):
    course, _ = graded
    good = submission(tmp_path / "a.ipynb")
    blank = tmp_path / "b.ipynb"
    nbformat.write(release(), blank)
    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(good, "smithann_1001_501_toy.ipynb")
        zf.write(blank, "leebo_LATE_1002_502_toy-1.ipynb")
        zf.writestr("leebo_1002_503_homework.ipynb", "{}")
        zf.writestr("readme.txt", "hello")
    state = tmp_path / "state"
    code, out = run("grade", archive, "--root", course.root, "--course-dir", state)
    assert code == 0, out
    assert "not graded: cannot map leebo_1002_503_homework.ipynb" in out
    assert "not graded: ignored readme.txt" in out
    assert run("export", "--root", course.root, "--course-dir", state)[0] == 0
    assert read_csv(state / "grades.csv")[1:] == [
        ["leebo", "toy", "0", _n(TOTAL)],
        ["smithann", "toy", _n(AUTO), _n(TOTAL)],
    ]


def test_validate_passes_the_fixture_and_catches_a_planted_leak(graded, run):
    course, _ = graded
    code, out = run("validate", "--root", course.root)
    assert code == 0, out
    release_path = course.release_notebook("toy", "toy")
    nb = nbformat.read(release_path, as_version=4)
    solution = nbformat.read(course.source_notebook("toy", "toy"), as_version=4)
    hidden = region_lines(cell(solution, "test_square").source, HIDDEN_TESTS)[0]
    cell(nb, "test_square").source += "\n" + hidden
    nbformat.write(nb, release_path)
    code, out = run("validate", "--root", course.root)
    assert code == 1
    assert "reveals a hidden test" in out and "test_square" in out
    assert "release is stale" in out


def test_demo_grades_the_samples_and_says_where_everything_is(graded, run, tmp_path):
    course, _ = graded
    samples = tmp_path / "samples"
    for student in ("alice", "carol"):
        shutil.copytree(course.root / "submissions" / student, samples / student)
    state = tmp_path / "state"
    code, out = run("demo", "--samples", samples, "--root", course.root, "--course-dir", state)
    assert code == 0, out
    assert re.search(rf"alice\s+{_n(AUTO)}/{_n(TOTAL)}", out)
    assert re.search(rf"carol\s+{_n(P['test_square'])}/{_n(TOTAL)}", out)
    for shown in ("grades.csv", "tests.csv", "feedback", "gradebook.db"):
        assert shown in out
    assert (state / "feedback" / "carol" / "toy" / "toy.html").exists()
    assert (state / "grades.csv").exists() and (state / "build" / "release").is_dir()
