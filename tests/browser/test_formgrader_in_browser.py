"""Formgrader as an instructor meets it: a written answer graded by hand in the browser keeps
its score and comment when the student is re-graded from the CLI, and the score reaches
``grader export``'s CSVs.

One sample student (ada_complete, lesson 02) is graded into a fresh course directory with the
CLI; JupyterLab, started in that directory, serves nbgrader's formgrader on its gradebook.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDENT, ASSIGNMENT = "ada_complete", "02_batchnorm_forward"
WRITTEN = "written_batch_dependence"  # the lesson's written answer, graded by hand
MANUAL_SCORE = 1.5
COMMENT = "Right idea; say what happens to a batch of one."

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def grader(*args: str, course_dir: Path) -> str:
    """Run ``python -m grader ARGS --course-dir COURSE_DIR``; its output (exit 0 asserted)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "grader", *args, "--course-dir", str(course_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def grade_student(submissions: Path, course_dir: Path) -> None:
    out = grader("grade", str(submissions), "--assignment", ASSIGNMENT, course_dir=course_dir)
    assert "0 could not be graded" in out, out


def manual_grade_and_comment(course_dir: Path) -> tuple[float | None, str | None]:
    from nbgrader.api import Gradebook

    from grader.course import COURSE_ID

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", COURSE_ID) as gb:
        grade = gb.find_grade(WRITTEN, ASSIGNMENT, ASSIGNMENT, STUDENT)
        comment = gb.find_comment(WRITTEN, ASSIGNMENT, ASSIGNMENT, STUDENT)
        return grade.manual_score, comment.manual_comment


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> tuple[Path, Path]:
    """(submissions, course_dir): one sample student graded from the CLI."""
    submissions = tmp_path_factory.mktemp("submissions")
    shutil.copytree(
        ROOT / "samples" / "class" / STUDENT / ASSIGNMENT, submissions / STUDENT / ASSIGNMENT
    )
    course_dir = tmp_path_factory.mktemp("course")
    grade_student(submissions, course_dir)
    return submissions, course_dir


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory, output_dir):
    from tests.browser.jupyter import JupyterLab

    _, course_dir = course
    log = output_dir / "formgrader.log"
    server = JupyterLab(course_dir, tmp_path_factory.mktemp("home"), log)
    yield server
    server.stop()


def wait_for_formgrader(page) -> None:
    """The grading page has fetched the grades and comments and bound its fields (typing
    earlier would save nothing)."""
    page.wait_for_function(
        "() => window.formgrader?.grades?.loaded && window.formgrader?.comments?.loaded",
        timeout=60_000,
    )


def grade_by_hand(page, formgrader, output_dir) -> None:
    """In formgrader: open the student's notebook, type a score and a comment for the written
    answer; each is saved (a PUT to formgrader's API) when its field loses focus."""
    # formgrader's API calls carry no token: log in through JupyterLab first (sets the cookie)
    page.goto(formgrader.url("lab"))
    page.goto(formgrader.url(f"formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}"))
    page.get_by_role("link", name="Submission #1").first.click()
    wait_for_formgrader(page)
    score = page.locator(f"input#{WRITTEN}")
    with page.expect_response(lambda r: "/api/grade/" in r.url and r.request.method == "PUT"):
        score.fill(str(MANUAL_SCORE))
        score.press("Tab")
    comment = page.locator(f"textarea#{WRITTEN}-comment")
    with page.expect_response(lambda r: "/api/comment/" in r.url and r.request.method == "PUT"):
        comment.fill(COMMENT)
        comment.press("Tab")
    score.scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "formgrader.png"))


def test_manual_grade_survives_regrading_and_reaches_the_export(
    course, formgrader, page, output_dir
):
    from playwright.sync_api import expect

    submissions, course_dir = course
    assert manual_grade_and_comment(course_dir) == (None, None)

    grade_by_hand(page, formgrader, output_dir)
    assert manual_grade_and_comment(course_dir) == (MANUAL_SCORE, COMMENT)

    grade_student(submissions, course_dir)
    assert manual_grade_and_comment(course_dir) == (MANUAL_SCORE, COMMENT)

    page.reload()  # formgrader, after the re-grade, still shows both
    wait_for_formgrader(page)
    expect(page.locator(f"input#{WRITTEN}")).to_have_value(f"{MANUAL_SCORE:g}")
    expect(page.locator(f"textarea#{WRITTEN}-comment")).to_have_value(COMMENT)

    grades_csv, tests_csv = course_dir / "out-grades.csv", course_dir / "out-tests.csv"
    grader("export", "--out", str(grades_csv), "--per-test", str(tests_csv), course_dir=course_dir)
    tests = {r["test"]: r for r in read_csv(tests_csv) if r["student"] == STUDENT}
    assert float(tests[WRITTEN]["score"]) == MANUAL_SCORE
    assert tests[WRITTEN]["comment"] == COMMENT
    auto = sum(float(r["score"]) for t, r in tests.items() if t != WRITTEN)
    (row,) = [r for r in read_csv(grades_csv) if r["student"] == STUDENT]
    assert row["assignment"] == ASSIGNMENT
    assert float(row["score"]) == pytest.approx(auto + MANUAL_SCORE)
