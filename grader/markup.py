"""nbgrader's markup inside cell sources: solution fences and hidden-test regions.

A region starts at a line containing its BEGIN marker and ends at the next line containing its
END marker (nbgrader matches the markers as substrings, whatever the comment characters).
"""

from __future__ import annotations

SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TESTS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
MARKERS = (*SOLUTION, *HIDDEN_TESTS)
HIDDEN_NOTE = "# hidden tests ran here"

# Lines nbgrader writes into a released stub; they are in the release but not in the source.
STUB_LINES = frozenset({"# YOUR CODE HERE", "raise NotImplementedError()", "YOUR ANSWER HERE"})


def region_lines(source: str, region: tuple[str, str]) -> list[str]:
    """The lines strictly inside every ``region`` (a (begin, end) marker pair) of ``source``."""
    begin, end = region
    inside, lines = False, []
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def lines_outside(source: str, regions: tuple[tuple[str, str], ...]) -> list[str]:
    """The lines of ``source`` outside all ``regions``, marker lines excluded."""
    inside: str | None = None
    lines = []
    for line in source.splitlines():
        opening = next((end for begin, end in regions if begin in line), None)
        if inside is None and opening is not None:
            inside = opening
        elif inside is not None and inside in line:
            inside = None
        elif inside is None and not any(m in line for m in MARKERS):
            lines.append(line)
    return lines


def redact_hidden_tests(source: str, note: str = HIDDEN_NOTE) -> str:
    """``source`` with each hidden-test region (markers included) replaced by one ``note`` line.

    The note keeps the indentation of the BEGIN marker; indented, it follows a ``pass`` so that
    a block holding only hidden tests stays valid Python.
    """
    begin, end = HIDDEN_TESTS
    out, inside = [], False
    for line in source.splitlines():
        if not inside and begin in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass  {note}" if indent else note)
        elif inside:
            inside = end not in line
        else:
            out.append(line)
    return "\n".join(out)


def has_markers(text: str) -> list[str]:
    """The nbgrader markers that occur in ``text``."""
    return [m for m in MARKERS if m in text]


LEARNER_ONLY = "learner-only"
"""The cell tag of a lesson's experiments, sweeps and figures: cells a learner runs and grading
does not (``learner_only_sources``)."""


def grade_id_of(cell) -> str | None:
    """The cell's nbgrader ``grade_id``, or None when it has none."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_tagged_learner_only(cell) -> bool:
    """Whether ``cell`` carries the ``learner-only`` tag (whoever owns the cell)."""
    return LEARNER_ONLY in cell.metadata.get("tags", [])


def _is_plain_code(cell) -> bool:
    """A code cell nbgrader does not own (no nbgrader metadata at all)."""
    return cell.cell_type == "code" and not cell.metadata.get("nbgrader")


def learner_only_sources(nb) -> frozenset[str]:
    """The sources of ``nb``'s code cells tagged ``learner-only`` that nbgrader does not own.

    ``nb`` must be the instructor's notebook (the release or its source), never a submission: a
    submitted cell is skipped only when it is a plain code cell whose source is one of these, so
    a student who tags a cell, or edits a tagged one, has it run as usual.
    """
    return frozenset(
        cell.source for cell in nb.cells if _is_plain_code(cell) and is_tagged_learner_only(cell)
    )


def is_learner_only(cell, sources: frozenset[str]) -> bool:
    """Whether grading skips the submitted ``cell``: a plain code cell (no nbgrader metadata,
    whatever its tags) with the source of a release cell tagged ``learner-only``."""
    return _is_plain_code(cell) and cell.source in sources
