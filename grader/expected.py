"""What the sample class must score, and every way a grading run differs from it.

``samples/expected.yaml`` lists, per student and assignment, the autograded tests that
submission must fail (``fails``: a list, or ``all``) and words each failure's hint must contain
(``hints``). Every other autograded test must earn its full points; a written answer awaits a
human (no score), except in a submission that fails ``all`` (unanswered: nbgrader scores 0).
Points come from the solution notebooks' nbgrader metadata, never from the grader's output.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from grader.results import SubmissionResult
from grader.score import points_text
from grader.worker import grade_cells as worker_grade_cells

Key = tuple[str, str, str]  # (student, assignment, test)


def load_plan(path: Path) -> dict:
    """The parsed expected.yaml: ``{"students": {student: {"assignments": {a: spec}}}}``."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def grade_cells(solutions: Path, assignment: str) -> dict[str, tuple[float, bool]]:
    """grade_id -> (points, graded by a human) for every grade cell of the solution notebook."""
    notebook = Path(solutions) / assignment / f"{assignment}.ipynb"
    return {t.grade_id: (t.max_score, t.manual) for t in worker_grade_cells(notebook)}


def expected_scores(plan: dict, solutions: Path) -> dict[Key, float | None]:
    """(student, assignment, test) -> the score it must get (None: a human grades it).

    Raises ValueError naming a test that ``fails`` or ``hints`` lists but the notebook lacks.
    """
    rows = {}
    for student, entry in plan["students"].items():
        for assignment, spec in entry["assignments"].items():
            spec = spec or {}
            fails = spec.get("fails", [])
            cells = grade_cells(solutions, assignment)
            named = set(spec.get("hints") or {}) | (set(fails) if fails != "all" else set())
            if named - set(cells):
                unknown = ", ".join(sorted(named - set(cells)))
                raise ValueError(f"expected.yaml: {student}/{assignment} names unknown {unknown}")
            for test, (points, manual) in cells.items():
                failed = fails == "all" or test in fails
                if manual:
                    rows[student, assignment, test] = 0.0 if fails == "all" else None
                else:
                    rows[student, assignment, test] = 0.0 if failed else points
    return rows


def expected_hints(plan: dict) -> dict[Key, str]:
    """(student, assignment, test) -> words its failure message must contain."""
    return {
        (student, assignment, test): words
        for student, entry in plan["students"].items()
        for assignment, spec in entry["assignments"].items()
        for test, words in ((spec or {}).get("hints") or {}).items()
    }


def differences(results: list[SubmissionResult], plan: dict, solutions: Path) -> list[str]:
    """One line per way ``results`` differ from ``plan``: a test scored other than expected, a
    hint without its words, a submission graded with an error or not graded at all, a result
    the plan does not know. [] when the run is exactly as expected."""
    got = {(r.student, r.assignment, t.grade_id): t for r in results for t in r.tests}
    messages = {key: test.message for key, test in got.items()}
    lines = [f"{r.student}/{r.assignment}: not graded: {r.error}" for r in results if r.error]
    for key, score in expected_scores(plan, solutions).items():
        test = got.pop(key, None)
        where = "/".join(key)
        if test is None:
            lines.append(f"{where}: expected {_points(score)}, got no score (not graded)")
        elif test.score != score:
            lines.append(f"{where}: expected {_points(score)}, got {_points(test.score)}")
    for key, words in expected_hints(plan).items():
        if words not in messages.get(key, ""):
            lines.append(
                f"{'/'.join(key)}: hint should contain {words!r}, got {messages.get(key, '')!r}"
            )
    lines += [f"{'/'.join(key)}: graded but not in expected.yaml" for key in sorted(got)]
    return lines


def _points(score: float | None) -> str:
    return "no score (a human grades it)" if score is None else points_text(score)
