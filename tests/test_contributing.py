"""CONTRIBUTING.md is the newcomer's map: every path and module it names exists, and its
lesson-to-checks table is what each lesson's cells import."""

from __future__ import annotations

import glob
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "CONTRIBUTING.md").read_text()
LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
TOP_LEVEL = {p.name for p in ROOT.iterdir()}


def quoted() -> set[str]:
    """Every `code span` of the page."""
    return set(re.findall(r"`([^`\n]+)`", PAGE))


def named_paths() -> list[str]:
    """Code spans that are paths in this repository (first part a top-level entry)."""
    return sorted(q for q in quoted() if "/" in q and q.split("/")[0] in TOP_LEVEL)


def named_modules() -> list[str]:
    return sorted(q for q in quoted() if re.fullmatch(r"(utils|grader)(\.\w+)+", q))


def table() -> dict[str, set[str]]:
    """The rows of the "Lessons and their checks" table: lesson -> check modules."""
    section = PAGE.split("## Lessons and their checks", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section, flags=re.M)
    return {lesson: set(re.findall(r"`([\w.]+)`", checks)) for lesson, checks in rows}


def imported_checks(lesson: str) -> set[str]:
    notebook = ROOT / "solutions" / lesson / f"{lesson}.ipynb"
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells)
    return set(
        re.findall(r"^\s*(?:from|import) (utils\.checks(?:\.hidden)?\.\w+)", source, flags=re.M)
    )


def test_the_page_names_paths_and_modules_to_check():
    assert len(named_paths()) >= 8 and len(named_modules()) >= 10


@pytest.mark.parametrize("path", named_paths())
def test_every_path_on_the_page_exists(path):
    if "<id>" in path:
        missing = [p for p in (path.replace("<id>", lesson) for lesson in LESSONS)]
        missing = [p for p in missing if not (ROOT / p).exists()]
        assert not missing, f"CONTRIBUTING.md names {path}; missing: {missing}"
    elif "<" in path:
        pattern = re.sub(r"<\w+>", "*", path)
        assert glob.glob(str(ROOT / pattern)), f"CONTRIBUTING.md names {path}; nothing matches"
    else:
        assert (ROOT / path).exists(), f"CONTRIBUTING.md names {path}, which does not exist"


@pytest.mark.parametrize("module", named_modules())
def test_every_module_on_the_page_can_be_imported(module):
    assert importlib.util.find_spec(module) is not None, f"CONTRIBUTING.md names {module}"


def test_the_lesson_table_lists_every_lesson_with_the_checks_it_imports():
    rows = table()
    assert sorted(rows) == LESSONS
    for lesson in LESSONS:
        assert rows[lesson] == imported_checks(lesson), (
            f"CONTRIBUTING.md says {lesson} uses {sorted(rows[lesson])}; its cells import "
            f"{sorted(imported_checks(lesson))}"
        )


MAX_MODULE_LINES = 600  # the page's rule: past it, a module becomes a package split by concern


def test_no_python_module_is_over_the_line_limit():
    too_long = {
        path.relative_to(ROOT).as_posix(): n
        for folder in ("grader", "utils", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these by concern (CONTRIBUTING.md): {too_long}"
