"""tests/harness.py: a substituted helper is what the notebook's own functions call; planted
bugs are code strings built by one API (`planted`, `Template`, `SolvedNotebook.planted`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from harness import SolvedNotebook, Template, _bound_to, planted, solution_tests


def test_a_notebook_function_calls_the_substituted_helper():
    original: dict = {}
    notebook = "def helper(x):\n    return x + 1\n\ndef caller(x, k=2):\n    return helper(x) * k\n"
    exec(notebook, original)
    ns = dict(original)
    exec("def helper(x):\n    return x - 1\n", ns)
    assert ns["caller"](3) == 8  # before binding: the notebook's own helper
    ns.update(_bound_to(ns, original))
    assert ns["caller"](3) == 4 and ns["caller"](3, k=3) == 6
    assert ns["caller"].__name__ == "caller" and original["caller"](3) == 8


# --- planting: one API builds every planted bug and correct variant ---------------------------


CODE = "def f(x):\n    return x + 1\n\ndef g(x):\n    return x + 1\n"


def test_an_edit_replaces_every_occurrence_of_old():
    assert planted(CODE, ("x + 1", "x - 1")) == CODE.replace("x + 1", "x - 1")
    assert planted(CODE, ("x + 1", "x - 1", 2), ("def g", "def h")).count("def h") == 1
    assert planted(CODE) == CODE


@pytest.mark.parametrize(
    "edit, says",
    [
        (("x + 2", "x - 1"), "occurs 0 time(s)"),  # matches nothing: would plant nothing
        (("x + 1", "x - 1", 1), "not 1 time(s)"),  # the wrong count
        ("x + 1", "is (old, new) or (old, new, count)"),  # not a pair
    ],
)
def test_an_edit_that_does_not_match_as_said_fails_loudly(edit, says):
    with pytest.raises((ValueError, TypeError), match=re.escape(says)):
        planted(CODE, edit)


def test_a_template_is_filled_with_its_good_slots_overridden_by_the_bug():
    template = Template("def f(x):\n    return {a} * x + {b}  # {{literal}}\n", {"a": 2, "b": 1})
    assert planted(template) == "def f(x):\n    return 2 * x + 1  # {literal}\n"
    assert planted(template, b="x") == "def f(x):\n    return 2 * x + x  # {literal}\n"
    assert (
        planted(template, ("2 *", "3 *"), b=0) == "def f(x):\n    return 3 * x + 0  # {literal}\n"
    )
    assert planted("y = {v}\n", v=repr("a")) == "y = 'a'\n"


def test_a_slot_the_template_lacks_fails_loudly():
    with pytest.raises(ValueError, match="no slot"):
        planted(Template("y = {v}\n", {"v": 1}), w=2)  # a typo would plant the good code
    with pytest.raises(ValueError, match="no slot"):
        Template("y = {v}\n", {"v": 1, "w": 2})


def _notebook(*cells: tuple[str, str]) -> SolvedNotebook:
    """A SolvedNotebook of the given (grade_id, source) code cells; the first (the solution)
    has run."""
    solved = SolvedNotebook.__new__(SolvedNotebook)
    solved.nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                source, metadata={"nbgrader": {"grade_id": gid, "grade": True, "points": 1}}
            )
            for gid, source in cells
        ]
    )
    solved.namespace = {"__name__": "__main__"}
    exec(cells[0][1], solved.namespace)
    return solved


def test_a_solution_cell_is_planted_with_checked_edits_and_graded_from_code():
    solved = _notebook(("double", "def double(x):\n    return 2 * x\n"),
                       ("test_double", "assert double(3) == 6\n"))  # fmt: skip
    wrong = solved.planted("double", ("2 * x", "x + x + 1"))
    assert solved.score(["test_double"], wrong) == 0
    assert solved.score(["test_double"], solved.planted("double", ("2 * x", "x + x"))) == 1
    with pytest.raises(ValueError, match="in cell double"):
        solved.planted("double", ("3 * x", "x"))


def test_a_knowledge_check_answer_is_planted_as_code():
    solved = _notebook(("answer", "answer_q1 = None\n"),
                       ("test_kc", "assert answer_q1 == 'b'\n"))  # fmt: skip
    outcomes = solved.assert_only_the_key_passes("test_kc", "answer_q1", "b", ("a", "b", "", None))
    assert outcomes["b"].passed and not outcomes[None].passed


@pytest.mark.parametrize(
    "test_cell, clean",
    [
        ("assert double(3) == 6\n", True),
        ("import warnings\nwarnings.warn('deprecated')\nassert double(3) == 6\n", False),
        ("import sys\nprint('careful', file=sys.stderr)\nassert double(3) == 6\n", False),
        ("assert double(3) == 7\n", False),
    ],
    ids=["clean", "warns", "writes to stderr", "fails"],
)
def test_the_solution_test_wants_every_cell_to_pass_without_warnings_or_stderr(test_cell, clean):
    solved = _notebook(("double", "def double(x):\n    return 2 * x\n"), ("test_double", test_cell))
    passes, points = solution_tests({"test_double": 1}, others=("double",))  # all graded here
    assert points(solved) is None
    if clean:
        passes(solved)
    else:
        with pytest.raises(AssertionError):
            passes(solved)


def test_lesson_tests_plant_code_only_through_the_harness():
    """No lesson test file builds code with a bare ``str.format`` or ``str.replace``: those plant
    nothing when a slot or an edit misses, where ``planted`` fails loudly."""
    bare = [
        f"{path.name}:{node.lineno} .{node.func.attr}("
        for path in sorted(Path(__file__).parent.glob("test_lesson_*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "replace")
    ]
    assert not bare, "use tests.harness.planted / Template / nb.planted instead: " + str(bare)
