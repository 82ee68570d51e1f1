"""Put a submission's nbgrader cells back the way the release made them, before nbgrader's own
sanitizing (which then restores locked and test sources from the gradebook, hidden tests included).

A student may delete, duplicate, retag or re-type a cell. nbgrader's OverwriteCells only
repairs cells that still carry their grade_id and metadata, crashes on inconsistent metadata
and re-adds a deleted test cell only next to a neighbour that is itself a grade or solution
cell. Here, against the release notebook made in the same build as the gradebook:

* a cell whose grade_id the release does not know, or that repeats an earlier cell's grade_id,
  loses its nbgrader metadata and becomes an ordinary student cell;
* a cell the release knows gets the release's metadata (grade, solution, locked, points, type);
* a release cell missing from the submission is inserted after the nearest present cell that
  precedes it in the release (or before the nearest that follows it) — a deleted test comes
  back, a deleted exercise comes back as its stub.
"""

from __future__ import annotations

import copy

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from grader.markup import grade_id_of


def restore_cells(submitted: NotebookNode, release: NotebookNode) -> NotebookNode:
    """``submitted`` with its nbgrader cells reconciled with ``release`` (see module doc)."""
    known = {grade_id_of(c): c for c in release.cells if grade_id_of(c)}
    cells, seen = [], set()
    for cell in submitted.cells:
        grade_id = grade_id_of(cell)
        if "nbgrader" in cell.get("metadata", {}) and (grade_id not in known or grade_id in seen):
            del cell.metadata["nbgrader"]
        elif grade_id in known:
            _adopt(cell, known[grade_id])
            seen.add(grade_id)
        cells.append(cell)

    order = list(known)
    for position, (grade_id, cell) in enumerate(known.items()):
        if grade_id not in seen:
            index = _insertion_index(cells, order[:position], order[position + 1 :])
            cells.insert(index, _fresh_copy(cell, submitted, cells))
            seen.add(grade_id)
    submitted.cells = cells
    return submitted


def _adopt(cell: NotebookNode, reference: NotebookNode) -> None:
    # A changed cell type is converted back by OverwriteCells, from the gradebook.
    cell.metadata["nbgrader"] = copy.deepcopy(reference.metadata["nbgrader"])


def _insertion_index(cells: list, earlier_ids: list[str], later_ids: list[str]) -> int:
    """Just after the last present cell of ``earlier_ids``, else just before the first present
    cell of ``later_ids``, else at the end."""
    positions = {grade_id_of(c): i for i, c in enumerate(cells) if grade_id_of(c)}
    for grade_id in reversed(earlier_ids):
        if grade_id in positions:
            return positions[grade_id] + 1
    for grade_id in later_ids:
        if grade_id in positions:
            return positions[grade_id]
    return len(cells)


def _fresh_copy(cell: NotebookNode, submitted: NotebookNode, cells: list) -> NotebookNode:
    """A copy of a release cell that fits ``submitted``: cell ids only from nbformat 4.5 on,
    and never one that a cell of the submission already uses."""
    fresh = copy.deepcopy(cell)
    if fresh.cell_type == "code":
        fresh.outputs, fresh.execution_count = [], None
    if submitted.get("nbformat_minor", 0) < 5:
        fresh.pop("id", None)
    elif fresh.get("id") in {c.get("id") for c in cells}:
        fresh.id = f"{fresh.id[:55]}-restored"
    return fresh


class RestoreCells(NbGraderPreprocessor):
    """Sanitize step applying ``restore_cells`` against the release notebook ``release``."""

    release = Unicode("", help="Path of the release notebook built with the gradebook").tag(
        config=True
    )

    def preprocess(self, nb, resources):
        release = nbformat.read(self.release, as_version=nbformat.NO_CONVERT)
        return restore_cells(nb, release), resources
