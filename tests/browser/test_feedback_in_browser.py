"""A feedback page as a student opens it: from disk, in Chromium at 1280 px, with no network and
no script. The sample student who put eps outside the square root (lesson 02) must read the
named mistake in the first screen, never scroll sideways (nor in a half-width window), and see
the lesson's formulas as math (MathML), with no raw ``$`` left in the prose.

Only that one notebook is graded, into a fresh course directory (not the whole demo).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grader.course import Course
from grader.feedback import write_feedback
from grader.grade import GradeOptions, grade

ROOT = Path(__file__).resolve().parents[2]
STUDENT, ASSIGNMENT = "carol_eps_outside_sqrt", "02_batchnorm_forward"
TEST = "test_batchnorm_forward"
HINT = "eps is added outside the square root: use sqrt(var + eps)"
FIRST_SCREEN = 900  # px: conftest's viewport height

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Elements whose content is wider than their box, as a browser lays them out (the 1 px allows
# for sub-pixel rounding). Inline elements report 0 for both widths.
OVERFLOWING = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => `${e.tagName.toLowerCase()}.${e.className} ${e.scrollWidth} > ${e.clientWidth}`)"""
PROSE = (
    "() => [...document.querySelectorAll('.text_cell_render')].map(e => e.innerText).join('\\n')"
)


@pytest.fixture(scope="module")
def feedback_page(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("feedback")
    submissions = tmp / "submissions" / STUDENT
    shutil.copytree(ROOT / "samples" / "class" / STUDENT / ASSIGNMENT, submissions / ASSIGNMENT)
    course = Course(course_dir=tmp / "course")
    run = grade(course, submissions.parent, [ASSIGNMENT], GradeOptions(workers=1), False)
    assert [r.error for r in run.results] == [None], run
    (page,) = write_feedback(course)
    return page


@pytest.fixture
def student_view(page, feedback_page, output_dir):
    """The page opened from disk with every network request refused (as offline)."""
    requests = []
    page.route("**/*", lambda route: _refuse_remote(route, requests))
    page.goto(feedback_page.as_uri())
    page.screenshot(path=str(output_dir / "feedback-carol-02-first-screen.png"))
    yield page
    assert requests == [], f"the page asked the network for {requests}"


def _refuse_remote(route, requests: list[str]) -> None:
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        requests.append(route.request.url)
        route.abort()


def test_the_named_mistake_is_read_in_the_first_screen(student_view):
    hint = student_view.get_by_text(HINT).first
    assert hint.is_visible()
    box = hint.bounding_box()
    assert box is not None and box["y"] + box["height"] <= FIRST_SCREEN, box
    row = student_view.locator("tr", has=student_view.locator(f"a[href='#{TEST}']"))
    assert "FAIL" in row.inner_text() and "0/3" in row.inner_text()


def test_a_summary_row_links_to_its_test_cell_with_the_hint_under_it(student_view):
    student_view.click(f"a[href='#{TEST}']")
    verdict = student_view.locator(".output_stderr").first
    assert verdict.is_visible() and verdict.bounding_box()["y"] < FIRST_SCREEN
    text = verdict.inner_text()
    assert text.index(HINT) < text.index("relative error"), text


@pytest.mark.parametrize("width", [1280, 760])  # and a window beside another on that screen
def test_nothing_needs_horizontal_scrolling(student_view, width):
    student_view.set_viewport_size({"width": width, "height": FIRST_SCREEN})
    assert student_view.evaluate(OVERFLOWING) == []
    assert student_view.evaluate("() => document.documentElement.scrollWidth") <= width


def test_formulas_render_as_math_without_scripts(student_view, output_dir):
    assert student_view.locator("script").count() == 0
    formula = student_view.locator("math").first
    assert student_view.locator("math").count() > 10
    assert formula.bounding_box()["width"] > 0  # laid out as MathML, not hidden markup
    prose = student_view.evaluate(PROSE)
    assert "$" not in prose and "\\frac" not in prose and "\\gamma" not in prose
    student_view.locator("math[display='block']").first.scroll_into_view_if_needed()
    student_view.screenshot(path=str(output_dir / "feedback-carol-02-formula.png"))
