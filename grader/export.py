"""Grades out of the gradebook: ``grades.csv`` (one row per student and assignment) and the
per-test CSV (one row per grade cell of each submission)."""

from __future__ import annotations

import csv
from pathlib import Path

from grader.course import Course
from grader.gradebook import assignment_scores, grade_rows
from grader.score import points_text

GRADES_COLUMNS = ("student", "assignment", "score", "max_score")
TESTS_COLUMNS = ("student", "assignment", "notebook", "test", "score", "max_score")


def export(
    course: Course, out: Path | None = None, per_test: Path | None = None
) -> tuple[Path, Path]:
    """Write both CSVs (default: ``grades.csv`` and ``tests.csv`` in the course directory).

    A written answer nobody has graded yet has an empty score in the per-test CSV and counts 0
    in grades.csv. Returns the two paths.
    """
    out = Path(out or course.course_dir / "grades.csv")
    per_test = Path(per_test or course.course_dir / "tests.csv")
    _write(
        out,
        GRADES_COLUMNS,
        [(s, a, *map(points_text, scores)) for s, a, *scores in assignment_scores(course)],
    )
    _write(
        per_test,
        TESTS_COLUMNS,
        [
            (r.student, r.assignment, r.notebook, r.test, *map(points_text, (r.score, r.max_score)))
            for r in grade_rows(course)
        ],
    )
    return out, per_test


def _write(path: Path, header: tuple, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
