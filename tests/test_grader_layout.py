"""The grader's tests mirror its modules: ``tests/test_grader_<x>.py`` tests ``grader/<x>.py``,
unless <x> is one of the few cross-cutting subjects below, each with the reason it has no module."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "test_grader_"

CROSS_CUTTING = {
    "dask": "a real Dask scheduler and workers grade the toy class as local processes do",
    "hostile": "a hostile class graded end to end next to honest students",
    "layout": "this file: the names of the grader's test files against grader/'s modules",
    "learner_only": "learner-only cells through build, grading and validate, end to end",
    "limits": "output and working-copy caps while a class is graded, and the summary's word",
    "package": "grader/__init__.py: what importing the package sets up",
    "pipeline": "the toy class end to end through the CLI: grade, export, feedback, demo",
}


def subjects() -> list[str]:
    """<x> of every tests/test_grader_<x>.py."""
    return sorted(p.stem[len(PREFIX) :] for p in (ROOT / "tests").glob(f"{PREFIX}*.py"))


def test_every_grader_test_file_names_a_grader_module_or_a_listed_cross_cutting_subject():
    modules = {p.stem for p in (ROOT / "grader").glob("*.py")}
    unknown = [s for s in subjects() if s not in modules and s not in CROSS_CUTTING]
    assert not unknown, (
        f"tests/{PREFIX}<x>.py must test grader/<x>.py; no such module for "
        f"{', '.join(f'{PREFIX}{s}.py' for s in unknown)} (rename the file, or add <x> to "
        "CROSS_CUTTING with the reason it has no module)"
    )


def test_the_cross_cutting_list_names_only_existing_files_that_no_module_claims():
    modules = {p.stem for p in (ROOT / "grader").glob("*.py")}
    assert sorted(set(CROSS_CUTTING) - set(subjects())) == []
    assert sorted(set(CROSS_CUTTING) & modules) == []
