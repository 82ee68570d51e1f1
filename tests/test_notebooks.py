"""Every solution and release notebook is clean and carries the markup nbgrader and the grader
rely on: no outputs, no magics, unique cell ids and grade ids, grade cells that open with a
docstring, solutions and hidden tests fenced (in the solution) and gone (from the release)."""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.harness import ROOT, lessons

NOTEBOOKS = [
    pytest.param(kind, lesson, id=f"{kind}/{lesson}")
    for lesson in lessons()
    for kind in ("solutions", "notebooks")
]


def _read(kind: str, lesson: str):
    nb = nbformat.read(ROOT / kind / lesson / f"{lesson}.ipynb", as_version=4)
    nbformat.validate(nb)
    return nb


def _nbgrader(cell) -> dict | None:
    return cell.metadata.get("nbgrader")


def test_every_lesson_has_a_solution_and_a_release():
    assert lessons() == sorted(p.name for p in (ROOT / "notebooks").iterdir() if p.is_dir())
    # the README's lesson table lists the course: DESIGN.md's ten plus lesson 11 (Triton)
    readme = (ROOT / "README.md").read_text()
    assert lessons() == sorted(re.findall(r"^\| `(\d\d_\w+)` \|", readme, re.M))
    assert len(lessons()) == 12


@pytest.mark.parametrize(("kind", "lesson"), NOTEBOOKS)
def test_notebook_is_format_4_5_without_outputs_or_magics(kind, lesson):
    nb = _read(kind, lesson)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
            assert "get_ipython" not in cell.source, cell.id
            assert not any(
                line.lstrip().startswith(("!", "%")) for line in cell.source.splitlines()
            )


@pytest.mark.parametrize(("kind", "lesson"), NOTEBOOKS)
def test_cell_ids_and_grade_ids_are_unique(kind, lesson):
    nb = _read(kind, lesson)
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids))
    grade_ids = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c)]
    assert len(grade_ids) == len(set(grade_ids))


@pytest.mark.parametrize(("kind", "lesson"), NOTEBOOKS)
def test_grade_cells_have_points_and_open_with_a_docstring(kind, lesson):
    nb = _read(kind, lesson)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta and meta["grade"]:
            assert meta["points"] >= 1, cell.id
            if cell.cell_type == "code":
                assert cell.source.startswith('"""'), f"{cell.id} opens without a docstring"


@pytest.mark.parametrize("lesson", lessons())
def test_solution_fences_its_solutions_and_hidden_tests(lesson):
    for cell in _read("solutions", lesson).cells:
        meta = _nbgrader(cell)
        if meta and meta["solution"]:
            assert "### BEGIN SOLUTION" in cell.source, cell.id
        if meta and meta["grade"] and cell.cell_type == "code":
            assert "### BEGIN HIDDEN TESTS" in cell.source, cell.id


@pytest.mark.parametrize("lesson", lessons())
def test_release_keeps_the_grade_ids_and_drops_solutions_and_hidden_tests(lesson):
    release = _read("notebooks", lesson)
    solution = _read("solutions", lesson)
    ids = {_nbgrader(c)["grade_id"] for c in release.cells if _nbgrader(c)}
    assert ids == {_nbgrader(c)["grade_id"] for c in solution.cells if _nbgrader(c)}
    for cell in release.cells:
        assert "### BEGIN SOLUTION" not in cell.source, cell.id
        assert "### BEGIN HIDDEN TESTS" not in cell.source, cell.id


@pytest.mark.parametrize("lesson", lessons())
def test_no_wrapped_formula_line_reads_as_a_list_item(lesson):
    """A formula wrapped so that a line opens with "+ ", "- " or "* " becomes a list item in
    Markdown, and the formula is cut in two on the page (and in the feedback's MathML)."""
    nb = _read("solutions", lesson)
    broken = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        in_math = False
        for line in cell.source.splitlines():
            if in_math and re.match(r"\s*[-+*] ", line):
                broken.append((cell.id, line.strip()[:60]))
            if len(re.findall(r"(?<!\\)\$", line.replace("$$", ""))) % 2:
                in_math = not in_math
    assert not broken
