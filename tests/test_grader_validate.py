"""grader.validate's leak check: a release that shows a hidden test, solution code or a
marker is reported."""

from __future__ import annotations

import nbformat
from fixtures.toy import COURSE, cell, clone, release

from grader.markup import HIDDEN_TESTS, region_lines
from grader.validate import leaks

SOURCE = COURSE / "solutions" / "toy" / "toy.ipynb"


def _release_with(tmp_path, change):
    nb = clone(release())
    change(nb)
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_fixture_release_leaks_nothing():
    assert leaks(SOURCE, COURSE / "notebooks" / "toy" / "toy.ipynb", "toy") == []


def test_a_hidden_line_left_in_the_release_is_a_leak(tmp_path):
    hidden = region_lines(
        cell(nbformat.read(SOURCE, as_version=4), "test_double").source, HIDDEN_TESTS
    )[0]

    def plant(nb):
        cell(nb, "test_double").source += "\n" + hidden

    problems = leaks(SOURCE, _release_with(tmp_path, plant), "toy")
    assert len(problems) == 1 and "reveals a hidden test" in problems[0]
    assert "test_double" in problems[0]


def test_solution_code_and_markers_in_the_release_are_leaks(tmp_path):
    def plant(nb):
        cell(
            nb, "square"
        ).source = (
            "def square(x):\n    ### BEGIN SOLUTION\n    y = np.asarray(x) ** 2\n    return y\n"
        )

    problems = leaks(SOURCE, _release_with(tmp_path, plant), "toy")
    assert any("reveals solution code" in p and "y = np.asarray(x) ** 2" in p for p in problems)
    assert any("BEGIN SOLUTION" in p for p in problems)
