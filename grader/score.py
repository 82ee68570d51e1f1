"""Points per grade cell of an executed notebook, and the message a failed test cell left.

nbgrader's rule (``nbgrader.utils.determine_grade``) stops at the first error *or* result in
a cell's outputs, so a result shown before an error wins: student code that calls
``sys.displayhook("ok")`` inside a test would turn a failing test into full points (a
non-numeric result counts as full credit). Our rule looks at every output first: a test cell
with an error or anything on stderr scores 0; otherwise nbgrader's rule applies unchanged
(numeric partial credit, written answers left to a human grader).
"""

from __future__ import annotations

import re

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_failure(output) -> bool:
    return output.output_type == "error" or (
        output.output_type == "stream" and output.name == "stderr"
    )


def cell_score(cell: NotebookNode, log=None) -> tuple[float | None, float]:
    """(score, max_score) of a grade cell; score None means a human must grade it."""
    if cell.cell_type == "code" and not utils.is_solution(cell):
        if any(_is_failure(o) for o in cell.get("outputs", [])):
            return 0.0, float(cell.metadata.nbgrader["points"])
    return utils.determine_grade(cell, log)


def recorded_score(verdict, cell: NotebookNode) -> float:
    """Points of a test cell run in the checker: all for a recorded pass, else none (a cell
    with no verdict never ran while the grader executed it)."""
    points = float(cell.metadata.nbgrader["points"])
    return points if verdict is not None and verdict.passed else 0.0


def failure_message(cell: NotebookNode) -> str:
    """Why a test cell failed: ``Type: message`` of its error (a timeout before the interrupt
    it caused), or its stderr."""
    errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
    if errors:
        first = min(errors, key=lambda o: o.ename != "CellTimeoutError")
        return strip_ansi(f"{first.ename}: {first.evalue}".strip().rstrip(":"))
    for output in cell.get("outputs", []):
        if _is_failure(output):
            first = strip_ansi(output.text).strip().splitlines()[:1]
            return "wrote to stderr (a test cell must not): " + (first[0] if first else "")
    return ""


def points_text(points: float | None) -> str:
    """Points as people write them: ``2``, ``2.5``; ``""`` for None (not graded yet)."""
    return "" if points is None else f"{points:g}"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class StrictSaveAutoGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, scoring with ``cell_score``."""

    def _add_score(self, cell, resources) -> None:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(
            grade_id, self.notebook_id, self.assignment_id, self.student_id
        )
        record = resources.get("normlab_record")
        if record is not None and cell.cell_type == "code" and not utils.is_solution(cell):
            grade.auto_score = recorded_score(record.get(grade_id), cell)
        else:
            grade.auto_score, _ = cell_score(cell, self.log)
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        self.gradebook.db.commit()
