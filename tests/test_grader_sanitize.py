"""grader.sanitize: deleted, re-tagged, unknown and repeated cells of a submission restored
from the release."""

from __future__ import annotations

import json

import nbformat
from fixtures.toy import cell, clone, grade_id, release
from nbformat.v4 import new_code_cell

from grader.sanitize import restore_cells


def _ids(nb) -> list[str | None]:
    return [grade_id(c) for c in nb.cells]


def test_a_deleted_test_cell_comes_back_after_its_exercise():
    nb = clone(release())
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_double"]
    restored = restore_cells(nb, release())
    assert _ids(restored) == _ids(release())


def test_deleted_neighbours_come_back_in_release_order():
    nb = clone(release())
    nb.cells = [c for c in nb.cells if grade_id(c) not in ("setup", "double", "test_double")]
    assert _ids(restore_cells(nb, release())) == _ids(release())


def test_retagged_cells_get_the_release_metadata_back():
    nb = clone(release())
    meta = cell(nb, "test_double").metadata.nbgrader
    meta.update(grade=False, points=100, locked=False)
    restored = cell(restore_cells(nb, release()), "test_double").metadata.nbgrader
    assert restored == cell(release(), "test_double").metadata.nbgrader


def test_unknown_and_repeated_grade_ids_become_plain_cells():
    nb = clone(release())
    extra = clone(cell(nb, "test_square"))
    extra.id, extra.source = "copy-of-test", "pass"
    stranger = new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "mine", "grade": True}})
    nb.cells += [extra, stranger]
    restored = restore_cells(nb, release())
    assert _ids(restored).count("test_square") == 1
    assert "nbgrader" not in restored.cells[-1].metadata
    assert "nbgrader" not in restored.cells[-2].metadata


def test_a_restored_cell_fits_an_nbformat_4_4_notebook():
    data = json.loads(nbformat.writes(release()))
    data["nbformat_minor"] = 4
    for c in data["cells"]:
        c.pop("id")
    data["cells"] = [
        c
        for c in data["cells"]
        if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_square"
    ]
    nb = nbformat.reads(json.dumps(data), as_version=4)
    restored = restore_cells(nb, release())
    assert "id" not in cell(restored, "test_square")
    nbformat.validate(restored)
