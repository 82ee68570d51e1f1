"""Cells a lesson tags ``learner-only`` are not run in grading; the release decides which.

Each test adds a cell to the toy course's solution (and rebuilds its release), so what grading
and ``grader validate`` do with it is seen end to end.
"""

from __future__ import annotations

import nbformat
import pytest
from fixtures.toy import cell, copy_course, submission

from grader.build import build, make_template
from grader.markup import LEARNER_ONLY, is_learner_only, learner_only_sources
from grader.validate import validate
from grader.worker import grade_submission

BREAKS_DOUBLE = "double = lambda x: 0 * x  # an experiment that would fail test_double"


def _tagged(source: str, tags=(LEARNER_ONLY,)):
    new = nbformat.v4.new_code_cell(source)
    new.metadata["tags"] = list(tags)
    return new


def _course_with(tmp_path, edit):
    """The toy course with ``edit(solution notebook)`` applied and its release rebuilt."""
    course = copy_course(tmp_path)
    path = course.source_notebook("toy", "toy")
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)
    build(course)
    return course


def _after_exercises(nb, new_cell):
    """Insert ``new_cell`` after the double exercise, before its test."""
    index = nb.cells.index(cell(nb, "test_double"))
    nb.cells.insert(index, new_cell)


def _grade(course, tmp_path, edit=None):
    template_db = make_template(course, tmp_path / "template", ["toy"])
    notebook = submission(tmp_path / "submitted" / "toy.ipynb", edit=edit)
    return grade_submission(course.root, "toy", "s", notebook, template_db, timeout=30)


def _scores(result):
    return {t.grade_id: t.score for t in result.tests if not t.manual}


def test_only_plain_code_cells_of_the_instructors_notebook_are_learner_only():
    nb = nbformat.v4.new_notebook()
    owned = _tagged("x = 1")
    owned.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "solution": False}
    nb.cells = [_tagged("y = 2"), owned, _tagged("z = 3", tags=()), _tagged("w = 4", ("other",))]
    sources = learner_only_sources(nb)
    assert sources == {"y = 2"}
    assert is_learner_only(_tagged("y = 2", tags=()), sources)  # the submission's tags don't count
    assert not is_learner_only(owned, frozenset({"x = 1"}))
    assert not is_learner_only(nbformat.v4.new_markdown_cell("y = 2"), sources)


@pytest.mark.slow
def test_a_tagged_cell_is_not_run_in_grading(tmp_path):
    course = _course_with(tmp_path, lambda nb: _after_exercises(nb, _tagged(BREAKS_DOUBLE)))
    release = nbformat.read(course.release_notebook("toy", "toy"), as_version=4)
    assert BREAKS_DOUBLE in learner_only_sources(release)
    result = _grade(course, tmp_path)
    assert result.error is None and _scores(result)["test_double"] > 0


@pytest.mark.slow
def test_a_tag_the_student_adds_is_ignored_and_the_cell_runs(tmp_path):
    course = copy_course(tmp_path)

    def tag_own_cell_and_a_test(nb):
        _after_exercises(nb, _tagged(BREAKS_DOUBLE))
        cell(nb, "test_square").metadata["tags"] = [LEARNER_ONLY]
        cell(nb, "test_square").source = "pass"

    result = _grade(course, tmp_path, edit=tag_own_cell_and_a_test)
    assert result.error is None
    scores = _scores(result)
    assert scores["test_double"] == 0  # the student's tagged cell ran
    assert scores["test_square"] > 0  # the test ran, restored from the gradebook


@pytest.fixture(scope="module")
def misused_tags(tmp_path_factory):
    """validate's problems for the toy course with a tagged cell test_double depends on and
    the tag on the square exercise (a solution cell)."""
    tmp_path = tmp_path_factory.mktemp("learner-only")

    def edit(nb):
        _after_exercises(nb, _tagged("double = lambda x: 2 * np.asarray(x)"))
        cell(nb, "double").source = "double = None\n### BEGIN SOLUTION\n### END SOLUTION\n"
        cell(nb, "square").metadata["tags"] = [LEARNER_ONLY]

    return validate(_course_with(tmp_path, edit), workers=2, timeout=30)


@pytest.mark.slow
def test_validate_fails_a_tagged_cell_that_a_test_depends_on(misused_tags):
    differing = [p for p in misused_tags if "cells skipped" in p]
    assert differing and all("test_double" in p for p in differing), misused_tags
    assert any("solutions/toy/toy.ipynb" in p for p in differing), misused_tags


@pytest.mark.slow
def test_validate_reports_the_tag_on_a_cell_nbgrader_owns(misused_tags):
    owned = [p for p in misused_tags if "nbgrader owns it" in p]
    assert len(owned) == 1 and "cell square" in owned[0], misused_tags


@pytest.mark.slow
def test_grading_draws_no_figures(tmp_path):
    course = copy_course(tmp_path)
    probe = "import matplotlib\nprint('backend:', matplotlib.get_backend())"
    result = _grade(course, tmp_path, edit=lambda nb: _after_exercises(nb, _tagged(probe, ())))
    graded = nbformat.reads(result.notebook_json, as_version=4)
    printed = next(c for c in graded.cells if c.source == probe).outputs[0]["text"]
    assert printed.strip() == "backend: agg"
