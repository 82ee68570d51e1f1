"""The benchmarks' arithmetic: bench/bench_course.py's marginal CPU of a notebook, its table and
projection, and bench/bench_grading.py's projection.

(Running the benchmark itself takes minutes even on one lesson: `python bench/bench_course.py`.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_course  # noqa: E402


def test_marginal_cpu_is_the_slope_between_two_class_sizes():
    assert bench_course.marginal(10.0, 16.0, 1, 3) == pytest.approx(3.0)


def test_projection_is_500_students_over_16_cores_in_minutes():
    # the baseline: 119 CPU-s per student -> 62 min
    assert bench_course.projection_minutes(119.0) == pytest.approx(500 * 119 / 16 / 60)
    assert round(bench_course.projection_minutes(119.0)) == 62


def test_table_lists_each_lesson_the_course_total_and_the_projection():
    rows = [bench_course.Row("00_a", 4.0, 2.0, 5.0), bench_course.Row("01_b", 2.0, 4.0, 3.0)]
    lines = bench_course.table(rows).splitlines()
    assert lines[2] == "| 00_a | 4.0 | 5.0 | 2.0 | 2.00 |"
    assert lines[3] == "| 01_b | 2.0 | 3.0 | 4.0 | 0.50 |"
    assert lines[4] == "| one student, all lessons | 6.0 | 8.0 | 6.0 | 1.00 |"
    assert lines[5] == "| 500 students on 16 cores | 3.1 min | 4.2 min | 3.1 min | |"


def test_a_run_without_the_cold_column_shows_nan_there():
    lines = bench_course.table([bench_course.Row("00_a", 4.0, 2.0)]).splitlines()
    assert lines[2] == "| 00_a | 4.0 | nan | 2.0 | 2.00 |"


def test_assignments_are_read_from_a_class_folder(tmp_path):
    for student, assignment in [("s01", "02_x"), ("s02", "02_x"), ("s01", "00_y")]:
        (tmp_path / student / assignment).mkdir(parents=True)
    assert bench_course.assignments_of(tmp_path) == ["00_y", "02_x"]


def test_bench_grading_projects_5500_notebooks_on_16_cores_from_the_cpu_per_notebook():
    import bench_grading

    # the warm-kernels issue's baseline: ~4.9 CPU-s a notebook -> about 28 minutes
    assert bench_grading.projection_minutes(4.9) == pytest.approx(5500 * 4.9 / 16 / 60)
    assert round(bench_grading.projection_minutes(4.9)) == 28
