"""A hostile class graded next to honest students: every attack costs only its own points, is
reported with its reason, and leaves the honest students' rows and everything outside the
attacker's working copy untouched. Expected points come from the fixture's notebook."""

from __future__ import annotations

import copy
import shutil
import sqlite3

import nbformat
import pytest
from fixtures.toy import DOUBLE, SQUARE, SUBMISSIONS, cell, copy_course, points, submission

from grader.feedback import write_feedback
from grader.grade import GradeOptions, grade
from grader.gradebook import grade_rows
from grader.worker import grading_root

pytestmark = pytest.mark.slow

P = points()
TIMEOUT = 3  # seconds per cell; a notebook may run 5 x that
WRONG_DOUBLE = "def double(x):\n    return 3 * np.asarray(x)\n"
# keeps the source of every frame that calls it (once the test cell, hidden tests included),
# for a cell after the tests to print
SPY_DOUBLE = (
    "import linecache\nimport sys\n\nSEEN = []\n\n\ndef double(x):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        SEEN.append(''.join(linecache.getlines(frame.f_code.co_filename)))\n"
    "        frame = frame.f_back\n"
    "    return 2 * np.asarray(x)\n"
)


# sends the running cell's execute_reply and an idle status itself, with the kernel's own key
FORGING_DOUBLE = (
    "def double(x):\n"
    "    k = get_ipython().kernel\n"
    "    parent = k.get_parent('shell')\n"
    "    content = {'status': 'ok', 'execution_count': 1, 'user_expressions': {}}\n"
    "    k.session.send(k.shell_stream, 'execute_reply', content, parent)\n"
    "    k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, parent)\n"
    "    return 3 * np.asarray(x)\n"
)
LYING_DOUBLE = (
    "class Anything:\n"
    "    def __eq__(self, other):\n        return True\n"
    "    def __array__(self, dtype=None, copy=None):\n        return np.zeros(3)\n\n\n"
    "def double(x):\n    return Anything()\n"
)
# makes every test case all-zero, if the cases were made in this process
PATCHES_CASE = (
    "import numpy\n"
    "numpy.testing.assert_allclose = lambda *a, **k: None\n"
    "__builtins__.__dict__['AssertionError'] = type('Nothing', (Exception,), {})\n"
)
# looks for the check's expected values in the frames that called it
FRAME_WALKING_DOUBLE = (
    "import sys\n\n\ndef double(x):\n"
    "    frame, seen = sys._getframe(1), []\n"
    "    while frame is not None:\n"
    "        seen += [v for v in frame.f_locals.values() if isinstance(v, np.ndarray)]\n"
    "        frame = frame.f_back\n"
    "    print('FRAMES', [a.tolist() for a in seen])\n"
    "    return 3 * np.asarray(x)\n"
)
CALLS_CHECKS = "from utils.checks.toy import check_double\ncheck_double(double)\n"


def _printing_at_the_end(nb):
    """Adds a last cell that prints how many callers the spy saw while the tests ran and those
    whose source holds a hidden test (all of SEEN, whole library files, is over the output cap)."""
    # the markers are split: the report cell's own source reaches the feedback
    hidden = "[s for s in SEEN if 'HIDDEN-' 'MARKER' in s or 'call_without_torch' '(double' in s]"
    last = nbformat.v4.new_code_cell(f"print('SPY', len(SEEN), {hidden})")
    last.id = "spy-report"
    nb.cells.append(last)


def _stalling_cells(count: int, seconds: float):
    """An ``edit`` adding ``count`` cells that each sleep ``seconds``, before the tests."""

    def edit(nb):
        stall = nbformat.v4.new_code_cell(f"import time\n\ntime.sleep({seconds})")
        nb.cells[2:2] = [copy.deepcopy(stall) for _ in range(count)]
        for index, extra in enumerate(nb.cells[2 : 2 + count]):
            extra.id = f"stall-{index}"

    return edit


def _escape_attempts(course_root) -> str:
    """Student code trying every way out of its working copy; prints what happened."""
    targets = {
        "gradebook_relative": "../../../../gradebook.db",
        "solutions": str(course_root / "solutions" / "toy" / "toy.ipynb"),
        "other_student": str(course_root / "submissions" / "alice" / "toy" / "toy.ipynb"),
    }
    lines = ["import os, sqlite3, subprocess", "outcome = {}"]
    for label, path in targets.items():
        lines += [
            "try:",
            f"    open({path!r}).read(); outcome[{label!r}] = 'READ'",
            "except OSError:",
            f"    outcome[{label!r}] = 'blocked'",
        ]
    lines += [
        "try:",
        f"    open({str(course_root / 'PWNED')!r}, 'w').write('x'); outcome['write'] = 'WROTE'",
        "except OSError:",
        "    outcome['write'] = 'blocked'",
        "try:",
        "    sqlite3.connect('../../../../gradebook.db').execute('DELETE FROM grade')",
        "    outcome['sqlite'] = 'OPENED'",
        "except Exception:",
        "    outcome['sqlite'] = 'blocked'",
        "try:",
        "    os.symlink('../../../../gradebook.db', 'gb'); open('gb', 'rb').read()",
        "    outcome['symlink'] = 'READ'",
        "except OSError:",
        "    outcome['symlink'] = 'blocked'",
        "try:",
        "    subprocess.run(['true']); outcome['subprocess'] = 'RAN'",
        "except OSError:",
        "    outcome['subprocess'] = 'blocked'",
        "try:",
        "    os.kill(os.getppid(), 9); outcome['kill'] = 'KILLED'",
        "except OSError:",
        "    outcome['kill'] = 'blocked'",
        "open('mine.txt', 'w').write('my own copy is writable')",
        "print('ESCAPES', sorted(outcome.items()))",
    ]
    return "\n".join(lines)


def hostile_class(folder, course_root) -> dict[str, tuple]:
    """Write the class; returns student -> (test_double, test_square, reason or None)."""
    d, s = P["test_double"], P["test_square"]
    expected = {}

    def add(student, scores, reason=None, name="toy.ipynb", **answers):
        submission(folder / student / "toy" / name, **answers)
        expected[student] = (*scores, reason)

    add("honest_ann", (d, s))
    add("honest_ben", (0, s), double=WRONG_DOUBLE)
    add(
        "torch_alias",
        (0, s),
        "called PyTorch",
        double="def double(x):\n    t = __import__('importlib').import_module('to' + 'rch')\n"
        "    return t.as_tensor(x).mul(2).numpy()\n",
    )
    # Test cells run in the trusted checker: nothing the kernel patches reaches a check.
    add(
        "patches_numpy",
        (0, s),
        None,
        double=WRONG_DOUBLE + "np.allclose = lambda *args, **kwargs: True\n",
    )
    add(
        "patches_inside_call",
        (d, 0),
        None,
        square="def square(x):\n    np.allclose = lambda *a, **k: True\n    return x\n",
    )
    add(
        "rebinds_np",
        (0, s),
        None,
        double=WRONG_DOUBLE
        + "import types\nnp = types.SimpleNamespace(allclose=lambda *a, **k: True, "
        "asarray=__import__('numpy').asarray, array=__import__('numpy').array, "
        "arange=__import__('numpy').arange)\n",
    )
    add(
        "patches_utils",
        (0, s),
        "called PyTorch",
        double="def double(x):\n    t = __import__('torch')\n"
        "    return t.as_tensor(x).mul(2).numpy()\n"
        "import utils.guard\n\nutils.guard.call_without_torch = lambda f, *a, name=None, **k: "
        "f(*a, **k)\n",
    )
    add(
        "spies_with_settrace",
        (d, s),
        None,
        square=SQUARE + "import sys\n\nsys.settrace(lambda *args: None)\n",
    )
    add("reads_its_caller", (d, s), None, double=SPY_DOUBLE, edit=_printing_at_the_end)
    add(
        "spies_with_a_hook",
        (d, s),
        None,
        double=DOUBLE + "get_ipython().events.register('pre_run_cell', lambda info: "
        "print(info.raw_cell))\n",
    )
    add("forges_the_reply", (0, s), None, double=FORGING_DOUBLE)
    add("answers_that_equal_anything", (0, s), None, double=LYING_DOUBLE)
    add("patches_course_classes", (0, s), None, double=WRONG_DOUBLE + PATCHES_CASE)
    add("walks_the_frames", (0, s), None, double=FRAME_WALKING_DOUBLE)
    add("prints_a_pass", (0, s), None, double=WRONG_DOUBLE + "print('double: correct')\n")
    add("calls_the_checks_itself", (0, s), None, double=WRONG_DOUBLE + CALLS_CHECKS)
    add(
        "loops_forever",
        (d, 0),
        None,
        square="def square(x):\n    while True:\n        pass\n",
    )
    add(
        "stalls_every_cell",
        (0, 0),
        "wall-clock limit",
        edit=_stalling_cells(8, TIMEOUT - 0.5),  # each under the cell limit, 20 s in all
    )
    add(
        "hogs_memory",
        (d, 0),
        None,
        square="def square(x):\n    block = np.ones(2**28)\n    return np.asarray(x) ** 2\n",
    )
    add("exits_the_kernel", (0, 0), "kernel died", square="import os\n\nos._exit(0)\n")
    add("sys_exit", (d, s), None, double=DOUBLE + "import sys\nsys.exit('bye')\n")
    add(
        "segfaults",
        (0, 0),
        "kernel died",
        square="import ctypes\n\nctypes.string_at(0)\n",
    )
    add("escapes", (d, s), None, double=DOUBLE + _escape_attempts(course_root))
    add(
        "blanks_tests",
        (0, s),
        None,
        double=WRONG_DOUBLE,
        edit=lambda nb: setattr(cell(nb, "test_double"), "source", "pass"),
    )
    add("renames_notebook", (0, 0), "wrong notebook name", name="toy-Copy1.ipynb")
    add(
        "other_assignment",
        (0, 0),
        "none of the cells of toy.ipynb",
        edit=lambda nb: setattr(nb, "cells", [nbformat.v4.new_code_cell("x = 1")]),
    )
    truncated = submission(folder / "truncated" / "toy" / "toy.ipynb")
    truncated.write_text(truncated.read_text()[:200])
    expected["truncated"] = (0, 0, "not valid notebook JSON")
    shutil.copytree(SUBMISSIONS / "frank", folder / "extra_files")  # numpy.py next to it
    expected["extra_files"] = (P["test_double"], P["test_square"], None)
    (folder / "empty_folder" / "toy").mkdir(parents=True)
    return expected


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    course = copy_course(tmp)
    folder = tmp / "class"
    expected = hostile_class(folder, course.root)
    before = set(grading_root().iterdir())
    run = grade(
        course,
        folder,
        options=GradeOptions(workers=2, timeout=TIMEOUT, memory_limit=1.0),
        progress=False,
    )
    return course, run, expected, before


def test_every_submission_gets_exactly_its_points_and_reason(graded):
    _, run, expected, _ = graded
    results = {r.student: r for r in run.results}
    assert set(results) == set(expected)
    for student, (double, square, reason) in expected.items():
        result = results[student]
        scores = {t.grade_id: t.score for t in result.tests}
        assert (scores["test_double"], scores["test_square"]) == (double, square), student
        if reason is None:
            assert result.error is None, (student, result.error)
        elif "PyTorch" in reason:
            assert reason in next(t.message for t in result.tests if t.grade_id == "test_double")
        else:
            assert result.error and reason in result.error, (student, result.error)


def test_the_honest_students_rows_in_the_gradebook_are_exact(graded):
    course, _, _, _ = graded
    rows = {(r.student, r.test): r.score for r in grade_rows(course)}
    assert rows["honest_ann", "test_double"] == P["test_double"]
    assert rows["honest_ann", "test_square"] == P["test_square"]
    assert rows["honest_ben", "test_double"] == 0
    assert rows["honest_ben", "test_square"] == P["test_square"]
    assert rows["honest_ann", "written_linear"] == 0  # left unanswered
    assert {s for s, _ in rows} == set(graded[2])


def test_unmappable_input_is_reported(graded):
    _, run, _, _ = graded
    assert "nothing to grade in empty_folder/: it holds no notebook" in run.problems
    assert "ignored extra_files/toy/numpy.py: only notebooks are graded" in run.problems


def test_nothing_escapes_the_working_copy(graded):
    course, run, _, _ = graded
    escapes = next(r for r in run.results if r.student == "escapes").notebook_json
    line = next(x for x in escapes.split("\\n") if "ESCAPES" in x and "outcome" not in x)
    for attempt in ("gradebook_relative", "solutions", "other_student", "write", "sqlite"):
        assert f"('{attempt}', 'blocked')" in line, line
    for attempt in ("symlink", "subprocess", "kill"):
        assert f"('{attempt}', 'blocked')" in line, line
    assert not (course.root / "PWNED").exists()
    with sqlite3.connect(course.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM grade").fetchone()[0] > 0


def test_feedback_says_why_and_never_shows_hidden_tests(graded, tmp_path):
    course, _, expected, _ = graded
    files = write_feedback(course, tmp_path / "fb")
    by_student = {f.parent.parent.name: f.read_text() for f in files}
    spy = next(r for r in graded[1].results if r.student == "reads_its_caller")
    # the hidden tests ran in the checker: the kernel had no hidden line to read
    report = next(
        c for c in nbformat.reads(spy.notebook_json, 4).cells if c.get("id") == "spy-report"
    )
    printed = "".join(o.get("text", "") for o in report.outputs)
    assert int(printed.split()[1]) > 0, printed  # the spy ran and kept its callers' source
    assert "HIDDEN-MARKER" not in printed and "call_without_torch(double" not in printed
    for student, (_, _, reason) in expected.items():
        html = by_student[student]
        assert "HIDDEN-MARKER" not in html and "call_without_torch(double" not in html, student
        if reason and "PyTorch" not in reason:
            assert "scores 0" in html and reason.split("'")[0][:20] in html, student


def test_feedback_written_by_several_processes_is_the_same(graded, tmp_path):
    course = graded[0]
    one = write_feedback(course, tmp_path / "one")
    three = write_feedback(course, tmp_path / "three", workers=3)
    assert len(one) > 3
    assert [p.relative_to(tmp_path / "one") for p in one] == [
        p.relative_to(tmp_path / "three") for p in three
    ]
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in three]
