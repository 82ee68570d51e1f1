"""grader.policy stays true to the lessons: each kernel may import what its locked cells need,
nothing that answers its exercises or an earlier lesson's, and no torch in a lesson without it."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from harness import ROOT, solution_path

from grader.kernel_side import KERNEL_MODULES
from grader.policy import DEFAULT, EVERY_MODULE, LESSONS, policy_for

LESSON_IDS = sorted(LESSONS)


def _imports(source: str) -> set[str]:
    """Modules a piece of code imports at its top level (``from a.b import c`` -> a.b)."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _cells(assignment: str):
    return nbformat.read(solution_path(assignment), as_version=4).cells


def _locked_imports(assignment: str) -> set[str]:
    found = set()
    for cell in _cells(assignment):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("locked") and not meta.get("grade"):
            found |= _imports(cell.source)
    return found


def _module_file(name: str) -> Path:
    return ROOT / (name.replace(".", "/") + ".py")


def _with_dependencies(modules) -> set[str]:
    """``modules`` and the course modules they import, transitively."""
    seen, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name in seen or not _module_file(name).exists():
            continue
        seen.add(name)
        todo += [m for m in _imports(_module_file(name).read_text()) if m.startswith("utils.")]
    return seen


def _answered_names(assignment: str) -> set[str]:
    """Functions and classes the learner writes in ``assignment``."""
    names = set()
    for cell in _cells(assignment):
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            tree = ast.parse(cell.source)
            names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    return names


def _defined_names(module: str) -> set[str]:
    tree = ast.parse(_module_file(module).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def test_every_lesson_has_a_row():
    assert sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb")) == LESSON_IDS


@pytest.mark.parametrize("assignment", LESSON_IDS)
def test_the_locked_cells_imports_are_allowed(assignment):
    policy = LESSONS[assignment]
    needed = _locked_imports(assignment)
    if not policy.torch:
        assert not {m for m in needed if m.split(".")[0] == "torch"}, needed
    if policy.modules == EVERY_MODULE:
        return
    course = {m for m in needed if m.startswith("utils.") and not m.startswith("utils.checks")}
    # the kernel's own machinery (grader.kernel_side.KERNEL_MODULES) may be read in every lesson
    assert _with_dependencies(course) - set(KERNEL_MODULES) <= set(policy.modules), assignment


HANDED_OUT = {("05_batchnorm_in_networks", "utils.nn"): {"BatchNorm1d"}}
"""Earlier lessons' answers a later lesson hands out on purpose: lesson 05 builds networks from
the course's numpy layers, BatchNorm1d (lesson 04's exercise) among them; hand lesson 05 out
after lesson 04 is due, as the README says."""


@pytest.mark.parametrize("assignment", LESSON_IDS)
def test_no_allowed_module_answers_this_lesson_or_an_earlier_one(assignment):
    policy = LESSONS[assignment]
    assert policy.checker and policy.modules != EVERY_MODULE, assignment
    answered = set().union(*(_answered_names(a) for a in LESSON_IDS if a <= assignment))
    for module in policy.modules:
        leaked = _defined_names(module) & answered - HANDED_OUT.get((assignment, module), set())
        assert not leaked, (module, leaked)
        if not policy.torch:
            assert "torch" not in {
                m.split(".")[0] for m in _imports(_module_file(module).read_text())
            }


def test_a_course_notebook_may_state_its_own_row():
    stated = {"normlab_policy": {"torch": False, "numpy_only": True, "modules": ["utils.data"]}}
    own = policy_for("my_course_lesson", stated)
    assert (own.torch, own.numpy_only, own.checker, own.modules) == (
        False,
        True,
        True,
        ("utils.data",),
    )
    assert policy_for("my_course_lesson") == DEFAULT
    assert policy_for("02_batchnorm_forward", stated) == LESSONS["02_batchnorm_forward"]
