"""Run a solution notebook's cells in-process, then re-run its test cells against other code.

Planted-bug tests use this: the notebook runs once with the instructor's solution; each test
then swaps in another implementation of one exercise (a classic mistake, or an independently
written correct version) and runs that exercise's grade cells, hidden tests included.

A planted bug (or a correct variant) is always a code string, run by
``SolvedNotebook.run_tests(grade_ids, code)`` before the grade cells; a knowledge-check answer
too (``answer_q1 = 'a'``). One API builds every such string:

- ``planted(base, *edits, **slots)``: ``base`` is code, or a ``Template`` (code with
  ``{slot}``s and the good fill of each); ``slots`` fill or override its slots (each must be
  one of the template's); then each edit ``(old, new)`` or ``(old, new, count)`` replaces every
  occurrence of ``old``, which must occur (exactly ``count`` times when given): an edit or a
  slot that matches nothing fails loudly instead of silently planting nothing.
- ``nb.planted(grade_id, *edits)``: the same edits on the solution cell ``grade_id``.
"""

from __future__ import annotations

import contextlib
import io
import socket
import string
import textwrap
import threading
import types
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


LESSON_TEST_PREFIX = "test_lesson_"


@contextlib.contextmanager
def kernel_server(monkeypatch, namespace: dict):
    """A kernel-side server (``grader.kernel_side.Server``) in a thread, looking names up in
    ``namespace`` as a kernel looks them up in its user namespace; yields the checker's link."""
    from grader import checker, kernel_side

    def look_up(name):
        if name not in namespace:
            raise NameError(f"name {name!r} is not defined")
        return namespace[name]

    monkeypatch.setattr(kernel_side, "_lookup", look_up)
    ours, theirs = socket.socketpair()
    server = kernel_side.Server(theirs)
    link = checker.KernelLink(ours)

    def serve_forever():
        while True:
            server.serve_until_done()

    threading.Thread(target=serve_forever, daemon=True).start()
    try:
        yield link
    finally:
        link.close()


def solution_path(assignment: str) -> Path:
    """solutions/<assignment>/<assignment>.ipynb"""
    return ROOT / "solutions" / assignment / f"{assignment}.ipynb"


def lessons() -> list[str]:
    """Every assignment id, from solutions/<id>/<id>.ipynb, in order."""
    return sorted(
        p.parent.name for p in ROOT.glob("solutions/*/*.ipynb") if p.stem == p.parent.name
    )


def lesson_of(test_file: str) -> str:
    """The assignment id a ``tests/test_lesson_<id>.py`` file is about; a lesson whose tests
    fill two files names the second ``tests/test_lesson_<id>_<concern>.py``."""
    name = Path(test_file).stem
    if not name.startswith(LESSON_TEST_PREFIX):
        raise ValueError(f"{test_file} is not a lesson test file (test_lesson_<id>.py)")
    rest = name[len(LESSON_TEST_PREFIX) :]
    return next((lesson for lesson in lessons() if rest.startswith(f"{lesson}_")), rest)


class Template:
    """Code with ``{slot}``s (``{{``/``}}`` for literal braces) and the good fill of each slot;
    ``planted(template)`` is the correct code, ``planted(template, slot=...)`` a planted bug."""

    def __init__(self, text: str, good: Mapping[str, str] | None = None):
        self.text, self.good = text, dict(good or {})
        self.slots = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        unknown = set(self.good) - self.slots
        if unknown:
            raise ValueError(f"no slot {sorted(unknown)} in the template")


def _edited(source: str, edits, where: str) -> str:
    for edit in edits:
        if not (isinstance(edit, tuple) and len(edit) in (2, 3)):
            raise TypeError(f"a planted edit is (old, new) or (old, new, count), not {edit!r}")
        old, new, *count = edit
        found = source.count(old)
        if not found or (count and found != count[0]):
            wanted = f"{count[0]} time(s)" if count else "at least once"
            raise ValueError(
                f"planted edit: {old!r} occurs {found} time(s) in {where}, not {wanted}"
            )
        source = source.replace(old, new)
    return source


def planted(base: str | Template, *edits, **slots: str) -> str:
    """The code ``base`` (or a ``Template`` filled with its good slots overridden by ``slots``)
    with each edit ``(old, new)`` / ``(old, new, count)`` applied: every occurrence of ``old``
    replaced by ``new``. Fails loudly when ``old`` does not occur (or not ``count`` times) or
    a slot is not the template's."""
    if isinstance(base, Template) or slots:
        template = base if isinstance(base, Template) else Template(base)
        unknown = set(slots) - template.slots
        if unknown:
            raise ValueError(f"no slot {sorted(unknown)} in the template")
        base = template.text.format(**{**template.good, **slots})
    return _edited(base, edits, f"the code starting {base.lstrip()[:40]!r}")


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


@dataclass
class TestOutcome:
    grade_id: str
    passed: bool
    message: str


def _bound_to(ns: dict, original: dict) -> dict:
    """Copies of the functions in ``ns`` that look their global names up in ``original``, each
    looking them up in ``ns`` instead (same code, defaults, closure and attributes)."""
    bound = {}
    for name, value in ns.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is original:
            copy = types.FunctionType(
                value.__code__, ns, value.__name__, value.__defaults__, value.__closure__
            )
            copy.__kwdefaults__ = value.__kwdefaults__
            copy.__qualname__, copy.__doc__ = value.__qualname__, value.__doc__
            copy.__module__, copy.__annotations__ = value.__module__, value.__annotations__
            copy.__dict__.update(value.__dict__)
            bound[name] = copy
    return bound


class SolvedNotebook:
    """A solution notebook executed once; its namespace is reused for each substitution.

    ``run_tests`` execs the substituted code in a COPY of the namespace and binds the notebook's
    own functions to that copy (``_bound_to``), so a substituted helper is what the notebook's
    functions that call it see, as in the learner's kernel. Methods of the notebook's classes
    keep the original namespace: re-define such a class in the substituted code when one of its
    methods must see a substituted helper.
    """

    def __init__(self, assignment: str):
        self.nb = nbformat.read(solution_path(assignment), as_version=4)
        self.namespace: dict = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in self.nb.cells:
                if cell.cell_type == "code":
                    exec(
                        compile(cell.source, f"<{_grade_id(cell) or 'cell'}>", "exec"),
                        self.namespace,
                    )
                    plt.close("all")

    def cell_source(self, grade_id: str) -> str:
        for cell in self.nb.cells:
            if _grade_id(cell) == grade_id:
                return cell.source
        raise KeyError(f"no cell with grade_id {grade_id!r}")

    def planted(self, grade_id: str, *edits) -> str:
        """The solution cell ``grade_id`` with ``edits`` applied, as ``planted`` applies them."""
        return _edited(self.cell_source(grade_id), edits, f"cell {grade_id}")

    def points(self, grade_id: str) -> float:
        for cell in self.nb.cells:
            if _grade_id(cell) == grade_id:
                return float(cell.metadata["nbgrader"].get("points", 0))
        raise KeyError(grade_id)

    def run_tests(self, grade_ids, code: str | None = None) -> list[TestOutcome]:
        """Run the grade cells ``grade_ids`` in a copy of the namespace.

        code: source (e.g. a planted-bug implementation, from ``planted``) executed first in
        that copy. Each cell passes when it raises nothing.
        """
        ns = dict(self.namespace)
        if code is not None:
            exec(textwrap.dedent(code), ns)
        ns.update(_bound_to(ns, self.namespace))
        outcomes = []
        for grade_id in grade_ids:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(self.cell_source(grade_id), f"<{grade_id}>", "exec"), ns)
                outcomes.append(TestOutcome(grade_id, True, ""))
            except Exception as exc:  # a failing test cell, as nbgrader would see it
                outcomes.append(TestOutcome(grade_id, False, f"{type(exc).__name__}: {exc}"))
            finally:
                plt.close("all")
        return outcomes

    def score(self, grade_ids, code: str | None = None) -> float:
        """Points the grade cells ``grade_ids`` award to the substituted code."""
        return sum(self.points(o.grade_id) for o in self.run_tests(grade_ids, code) if o.passed)

    def code_grade_ids(self) -> list[str]:
        """The grade ids of every auto-graded code cell, in notebook order."""
        return [
            c.metadata["nbgrader"]["grade_id"]
            for c in self.nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        ]

    def assert_passes_everything(self) -> list[str]:
        """Every auto-graded cell passes on the solution; returns their grade ids."""
        grade_ids = self.code_grade_ids()
        outcomes = self.run_tests(grade_ids)
        assert all(o.passed for o in outcomes), [o.message for o in outcomes if not o.passed]
        return grade_ids

    def assert_loses_points(self, grade_ids, code: str, hint: str | None = None) -> None:
        """``code`` fails every cell in ``grade_ids``; with ``hint``, each message names it."""
        outcomes = self.run_tests(grade_ids, code=code)
        kept = [o.grade_id for o in outcomes if o.passed]
        assert not kept, f"planted bug kept the points of {kept}"
        if hint is not None:
            for o in outcomes:
                assert hint in o.message, f"{o.grade_id}: expected {hint!r} in {o.message!r}"

    def assert_keeps_points(self, grade_ids, code: str) -> None:
        """``code`` (an independent correct implementation) passes every cell in ``grade_ids``."""
        outcomes = self.run_tests(grade_ids, code=code)
        failed = [(o.grade_id, o.message) for o in outcomes if not o.passed]
        assert not failed, failed

    def assert_only_the_key_passes(self, grade_id: str, name: str, key, answers="abcd") -> dict:
        """The knowledge-check cell ``grade_id`` passes when ``name`` is ``key`` and fails for
        every other answer (each planted as the code ``name = answer``); returns
        {answer: TestOutcome}."""
        outcomes = {a: self.run_tests([grade_id], f"{name} = {a!r}")[0] for a in answers}
        wrong = {a: o.passed for a, o in outcomes.items() if o.passed != (a == key)}
        assert not wrong, f"{grade_id}: passed={wrong} (key {key!r})"
        return outcomes


def planted_cases(grade_ids, bugs: Mapping | Iterable) -> list:
    """pytest params ``(grade_ids, code, hint)``, one per planted bug, for
    ``SolvedNotebook.assert_loses_points``.

    bugs: {label: (code, hint)} or an iterable of (label, code, hint); hint None when the
    failure message need not name the mistake.
    """
    rows = ((label, *pair) for label, pair in bugs.items()) if isinstance(bugs, Mapping) else bugs
    return [
        pytest.param(list(grade_ids), code, hint, id=f"{grade_ids[0]}: {label}")
        for label, code, hint in rows
    ]


def template_cases(grade_ids, template: Template, bugs) -> list:
    """``planted_cases`` for a ``Template``: each (slots, hint) in ``bugs`` is
    ``planted(template, **slots)``, labelled by its hint."""
    return planted_cases(
        grade_ids, [(hint, planted(template, **slots), hint) for slots, hint in bugs]
    )


def planted_and_correct_tests(planted: list, correct: dict):
    """The two slow parametrized tests a lesson file binds at module level (fixture ``nb``):
    each of ``planted`` (from planted_cases) loses its points and names its hint, and each
    ``correct`` {label: (grade_ids, code)} keeps full points.

    Usage: ``test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points =
    planted_and_correct_tests(PLANTED, CORRECT)``.
    """

    @pytest.mark.slow
    @pytest.mark.parametrize("grade_ids, code, hint", planted)
    def test_planted_bugs_lose_the_points(nb, grade_ids, code, hint):
        nb.assert_loses_points(grade_ids, code, hint)

    @pytest.mark.slow
    @pytest.mark.parametrize("label", list(correct))
    def test_correct_code_keeps_the_points(nb, label):
        nb.assert_keeps_points(*correct[label])

    return test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points


def solution_tests(points: Mapping[str, float], others=("test_kc_q1", "test_kc_q2"), written=None):
    """The two tests every lesson file binds at module level (fixture ``nb``): the solution
    passes every auto-graded cell, raising no warning and writing nothing to stderr (warnings
    are errors there), which are exactly ``points`` and ``others`` (the knowledge
    check), and the cells ``points`` {grade_id: points} and ``written`` (manually graded
    answers) are worth what the notebook announces.

    Usage: ``test_the_solution_passes_every_grade_cell, test_points_are_as_announced =
    solution_tests(POINTS)``.
    """
    announced = {**points, **(written or {})}

    def test_the_solution_passes_every_grade_cell(nb):
        """... with no warning raised and nothing written to stderr: a learner who got it right
        sees only the checks' own lines."""
        stderr = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("error")
            grade_ids = nb.assert_passes_everything()
        assert set(grade_ids) == {*points, *others}
        assert stderr.getvalue() == ""

    def test_points_are_as_announced(nb):
        assert {g: nb.points(g) for g in announced} == announced

    return test_the_solution_passes_every_grade_cell, test_points_are_as_announced
