"""Grader stages that need no kernel: markup, sanitize, score, collect, leak check, CLI surface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import nbformat
import pytest
from fixtures.toy import COURSE, cell, clone, copy_course, grade_id, release
from nbformat.v4 import new_code_cell, new_output
from nbgrader.utils import determine_grade

from grader.cli import build_parser, main
from grader.collect import collect
from grader.markup import HIDDEN_TESTS, SOLUTION, lines_outside, redact_hidden_tests, region_lines
from grader.sandbox import SandboxKernelManager, compare, locked_imports
from grader.sanitize import restore_cells
from grader.score import cell_score, failure_message
from grader.validate import leaks

TEST_SOURCE = (
    '"""Checks f."""\n'
    "assert f(1) == 2\n"
    "if True:\n"
    "    ### BEGIN HIDDEN TESTS\n"
    "    assert f(-3) == -6  # secret\n"
    "    ### END HIDDEN TESTS\n"
    'print("done")'
)


# ---- markup ---------------------------------------------------------------------------------


def test_region_lines_are_the_lines_between_the_markers():
    assert region_lines(TEST_SOURCE, HIDDEN_TESTS) == ["    assert f(-3) == -6  # secret"]
    assert region_lines(TEST_SOURCE, SOLUTION) == []


def test_lines_outside_drop_regions_and_markers():
    outside = lines_outside(TEST_SOURCE, (SOLUTION, HIDDEN_TESTS))
    assert "    assert f(-3) == -6  # secret" not in outside
    assert not any("HIDDEN" in line for line in outside)
    assert 'print("done")' in outside


def test_redacted_hidden_tests_leave_a_note_with_the_markers_indentation():
    redacted = redact_hidden_tests(TEST_SOURCE)
    assert "secret" not in redacted and "HIDDEN" not in redacted
    assert "    pass  # hidden tests ran here" in redacted.splitlines()
    compile(redacted, "<test>", "exec")  # still valid Python


# ---- sanitize -------------------------------------------------------------------------------


def _ids(nb) -> list[str | None]:
    return [grade_id(c) for c in nb.cells]


def test_a_deleted_test_cell_comes_back_after_its_exercise():
    nb = clone(release())
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_double"]
    restored = restore_cells(nb, release())
    assert _ids(restored) == _ids(release())


def test_deleted_neighbours_come_back_in_release_order():
    nb = clone(release())
    nb.cells = [c for c in nb.cells if grade_id(c) not in ("setup", "double", "test_double")]
    assert _ids(restore_cells(nb, release())) == _ids(release())


def test_retagged_cells_get_the_release_metadata_back():
    nb = clone(release())
    meta = cell(nb, "test_double").metadata.nbgrader
    meta.update(grade=False, points=100, locked=False)
    restored = cell(restore_cells(nb, release()), "test_double").metadata.nbgrader
    assert restored == cell(release(), "test_double").metadata.nbgrader


def test_unknown_and_repeated_grade_ids_become_plain_cells():
    nb = clone(release())
    extra = clone(cell(nb, "test_square"))
    extra.id, extra.source = "copy-of-test", "pass"
    stranger = new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "mine", "grade": True}})
    nb.cells += [extra, stranger]
    restored = restore_cells(nb, release())
    assert _ids(restored).count("test_square") == 1
    assert "nbgrader" not in restored.cells[-1].metadata
    assert "nbgrader" not in restored.cells[-2].metadata


def test_a_restored_cell_fits_an_nbformat_4_4_notebook():
    data = json.loads(nbformat.writes(release()))
    data["nbformat_minor"] = 4
    for c in data["cells"]:
        c.pop("id")
    data["cells"] = [
        c
        for c in data["cells"]
        if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_square"
    ]
    nb = nbformat.reads(json.dumps(data), as_version=4)
    restored = restore_cells(nb, release())
    assert "id" not in cell(restored, "test_square")
    nbformat.validate(restored)


# ---- score ----------------------------------------------------------------------------------


def _graded_cell(*outputs, points=2):
    c = new_code_cell("check()")
    c.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": "t",
        "points": points,
    }
    c.outputs = list(outputs)
    return c


def test_a_result_shown_before_an_error_scores_zero_unlike_nbgrader():
    shown = new_output("execute_result", data={"text/plain": "'ok'"}, execution_count=1)
    error = new_output("error", ename="AssertionError", evalue="wrong", traceback=[])
    c = _graded_cell(shown, error)
    assert determine_grade(c) == (2.0, 2.0)  # the pitfall: nbgrader gives full points
    assert cell_score(c) == (0.0, 2.0)


def test_anything_on_stderr_scores_zero():
    c = _graded_cell(new_output("stream", name="stderr", text="UserWarning: careful\n"))
    assert cell_score(c) == (0.0, 2.0)
    assert "stderr" in failure_message(c) and "UserWarning" in failure_message(c)


def test_numeric_partial_credit_is_kept():
    c = _graded_cell(new_output("execute_result", data={"text/plain": "1.5"}, execution_count=1))
    assert cell_score(c) == (1.5, 2.0)


def test_a_timeout_is_reported_before_the_interrupt_it_caused():
    c = _graded_cell(
        new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[]),
        new_output("error", ename="CellTimeoutError", evalue="ran longer than 5 s", traceback=[]),
    )
    assert failure_message(c) == "CellTimeoutError: ran longer than 5 s"


# ---- collect --------------------------------------------------------------------------------

NOTEBOOKS = {"toy": ["toy"], "other": ["other"]}


def _touch(path, text="{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_folder_layout_maps_students_and_reports_the_rest(tmp_path):
    src = tmp_path / "in"
    _touch(src / "ann" / "toy" / "toy.ipynb")
    _touch(src / "ann" / "toy" / "utils.py")
    _touch(src / "ben" / "nope" / "nope.ipynb")
    _touch(src / "ben" / "toy" / ".ipynb_checkpoints" / "toy-checkpoint.ipynb")
    _touch(src / "loose.ipynb")
    found, problems = collect(src, NOTEBOOKS, tmp_path / "work")
    assert [(s.student, s.assignment, s.notebook) for s in found] == [("ann", "toy", "toy")]
    assert len(problems) == 3
    assert any("ann/toy/utils.py" in p and "only notebooks" in p for p in problems)
    assert any("unknown assignment 'nope'" in p for p in problems)
    assert any("loose.ipynb" in p and "cannot map" in p for p in problems)


def test_canvas_zip_keeps_the_latest_attachment_and_reports_the_unmappable(tmp_path):
    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("doejane_1001_5_toy.ipynb", '{"old": true}')
        zf.writestr("doejane_LATE_1001_9_toy-1.ipynb", '{"new": true}')
        zf.writestr("roe_1002_7_other.ipynb", "{}")
        zf.writestr("roe_1002_8_mystery.ipynb", "{}")
        zf.writestr("__MACOSX/._doejane_1001_5_toy.ipynb", "")
        zf.writestr("notes.txt", "hi")
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    by_student = {s.student: s for s in found}
    assert set(by_student) == {"doejane", "roe"}
    jane = by_student["doejane"]
    assert (jane.assignment, jane.notebook, jane.lms_user_id) == ("toy", "toy", "1001")
    assert jane.path.name == "toy.ipynb" and json.loads(jane.path.read_text()) == {"new": True}
    assert by_student["roe"].assignment == "other"
    assert any("mystery" in p and "no assignment has a notebook" in p for p in problems)
    assert any("notes.txt" in p for p in problems)
    assert any("doejane_1001_5_toy.ipynb" in p and "later submission" in p for p in problems)
    assert len(problems) == 3


def test_a_zip_of_the_folder_layout_ignores_leading_folders(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("export/ann/toy/toy.ipynb", "{}")
        zf.writestr("export/../../evil/toy/toy.ipynb", "{}")
    found, problems = collect(archive, NOTEBOOKS, tmp_path / "work")
    assert [s.student for s in found] == ["ann"]
    assert (tmp_path / "work") in found[0].path.parents
    assert len(problems) == 1 and "evil" in problems[0] and "'..'" in problems[0]


def test_an_unsafe_student_id_is_reported(tmp_path):
    _touch(tmp_path / "in" / "-rf" / "toy" / "toy.ipynb")
    found, problems = collect(tmp_path / "in", NOTEBOOKS, tmp_path / "work")
    assert found == [] and "not a usable student id" in problems[0]


# ---- validate: the leak check ---------------------------------------------------------------

SOURCE = COURSE / "solutions" / "toy" / "toy.ipynb"


def _release_with(tmp_path, change):
    nb = clone(release())
    change(nb)
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_fixture_release_leaks_nothing():
    assert leaks(SOURCE, COURSE / "notebooks" / "toy" / "toy.ipynb", "toy") == []


def test_a_hidden_line_left_in_the_release_is_a_leak(tmp_path):
    hidden = region_lines(
        cell(nbformat.read(SOURCE, as_version=4), "test_double").source, HIDDEN_TESTS
    )[0]

    def plant(nb):
        cell(nb, "test_double").source += "\n" + hidden

    problems = leaks(SOURCE, _release_with(tmp_path, plant), "toy")
    assert len(problems) == 1 and "reveals a hidden test" in problems[0]
    assert "test_double" in problems[0]


def test_solution_code_and_markers_in_the_release_are_leaks(tmp_path):
    def plant(nb):
        cell(
            nb, "square"
        ).source = (
            "def square(x):\n    ### BEGIN SOLUTION\n    y = np.asarray(x) ** 2\n    return y\n"
        )

    problems = leaks(SOURCE, _release_with(tmp_path, plant), "toy")
    assert any("reveals solution code" in p and "y = np.asarray(x) ** 2" in p for p in problems)
    assert any("BEGIN SOLUTION" in p for p in problems)


# ---- CLI surface ----------------------------------------------------------------------------

OPTIONS = {
    "build": ["--check", "--course-dir", "--root"],
    "validate": ["--workers", "--timeout", "--memory-limit", "--course-dir"],
    "grade": [
        "SUBMISSIONS",
        "--assignment",
        "--workers",
        "--scheduler",
        "--timeout",
        "--memory-limit",
        "--course-dir",
    ],
    "export": ["--out", "--per-test", "--course-dir"],
    "feedback": ["--out", "--course-dir"],
    "check": ["NOTEBOOK", "--timeout", "--memory-limit", "--course-dir"],
    "demo": ["--samples", "--workers", "--course-dir"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_lists_every_option(command):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = subparsers.choices[command].format_help()
    for option in OPTIONS[command]:
        assert option in text


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in OPTIONS:
        assert command in out


def test_an_unreachable_scheduler_is_refused_clearly(tmp_path, capsys):
    code = main(
        [
            "grade",
            str(COURSE / "submissions"),
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--root",
            str(COURSE),
            "--course-dir",
            str(tmp_path / "state"),
        ]
    )
    assert code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_check_refuses_an_unreadable_notebook(tmp_path, capsys):
    broken = _touch(tmp_path / "toy.ipynb", '{"cells": [')
    assert main(["check", str(broken), "--root", str(COURSE)]) == 2
    assert "not valid notebook JSON" in capsys.readouterr().err


def test_check_refuses_a_notebook_of_no_assignment(tmp_path, capsys):
    stranger = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[new_code_cell("1 + 1")]), stranger)
    assert main(["check", str(stranger), "--root", str(COURSE)]) == 2
    assert "matches no assignment" in capsys.readouterr().err


def test_build_check_detects_a_stale_release(tmp_path, capsys):
    course = copy_course(tmp_path)
    args = ["build", "--check", "--root", str(course.root)]
    assert main(args) == 0
    solution = course.source_notebook("toy", "toy")
    nb = nbformat.read(solution, as_version=4)
    cell(nb, "test_square").metadata.nbgrader["points"] = 4
    nbformat.write(nb, solution)
    capsys.readouterr()
    assert main(args) == 1
    assert "changed: toy/toy.ipynb" in capsys.readouterr().out
    assert main(["build", "--root", str(course.root)]) == 0
    assert main(args) == 0


def test_grading_an_unknown_assignment_is_refused(tmp_path, capsys):
    code = main(
        [
            "grade",
            str(tmp_path),
            "--assignment",
            "nope",
            "--root",
            str(COURSE),
            "--course-dir",
            str(tmp_path / "state"),
        ]
    )
    assert code == 2
    assert "unknown assignment(s) nope; the course has: toy" in capsys.readouterr().err


# ---- sandbox --------------------------------------------------------------------------------


def test_the_sandbox_refuses_anything_but_an_ipython_kernel():
    done = subprocess.run(
        [sys.executable, "-I", "-m", "grader.launcher", "0", "{}", "--", sys.executable, "-c", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "IPython kernels only" in done.stderr


def test_the_launcher_limits_memory_and_drops_the_graders_variables():
    probe = (
        "import os, resource\n"
        "from grader.confine import apply_rlimits\n"
        "from grader.launcher import drop_grader_variables\n"
        "drop_grader_variables()\n"
        "apply_rlimits(2**30)\n"
        "print(resource.getrlimit(resource.RLIMIT_DATA)[0], "
        "[v for v in ('NBGRADER_EXECUTION', 'MPLBACKEND') if v in os.environ])"
    )
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split(maxsplit=1) == [str(2**30), "[]\n"]


def test_the_jail_blocks_private_reads_outside_writes_and_other_processes(tmp_path):
    private, work = tmp_path / "private", tmp_path / "work"
    private.mkdir(), work.mkdir()
    (private / "secret.txt").write_text("hidden")
    probe = (
        "import json, os, sys\n"
        "from grader import jail\n"
        f"jail.install({{'writable': [{str(work)!r}], 'private': [{str(private)!r}]}})\n"
        "def attempt(f):\n"
        "    try:\n"
        "        f()\n"
        "        return 'done'\n"
        "    except PermissionError:\n"
        "        return 'blocked'\n"
        "print(json.dumps([\n"
        f"    attempt(lambda: open({str(private / 'secret.txt')!r}).read()),\n"
        f"    attempt(lambda: open({str(work / '..' / 'private' / 'secret.txt')!r}).read()),\n"
        f"    attempt(lambda: open({str(tmp_path / 'out.txt')!r}, 'w')),\n"
        f"    attempt(lambda: open({str(work / 'mine.txt')!r}, 'w').write('ok')),\n"
        "    attempt(lambda: os.kill(os.getppid(), 0)),\n"
        "    attempt(lambda: os.system('true')),\n"
        "    attempt(lambda: __import__('gc').get_objects()),\n"
        "]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        "blocked",
        "blocked",
        "blocked",
        "done",
        "blocked",
        "blocked",
        "blocked",
    ]
    assert not (tmp_path / "out.txt").exists() and (work / "mine.txt").read_text() == "ok"


def test_kernels_start_through_the_sandbox():
    manager = SandboxKernelManager(kernel_name="python3", memory_limit=123, jail_rules="{}")
    cmd = manager.format_kernel_cmd()
    assert cmd[1:7] == ["-I", "-m", "grader.launcher", "123", "{}", "--"]
    assert "ipykernel_launcher" in " ".join(cmd[7:])


# ---- integrity ------------------------------------------------------------------------------


def test_locked_imports_are_the_import_lines_of_locked_setup_and_test_cells():
    nb = release()
    nb.cells.append(new_code_cell("import os as not_locked"))
    imports, names = locked_imports(nb)
    # the release's test cell imports nothing visible; the gradebook restores the hidden import
    assert imports == "import numpy as np" and names == ["np"]
    source = nbformat.read(COURSE / "solutions" / "toy" / "toy.ipynb", as_version=4)
    imports, names = locked_imports(source)
    assert imports.splitlines() == [
        "import numpy as np",
        "from utils.guard import call_without_torch",
    ]
    assert names == ["np"]  # a test cell's names are not bound until it runs


def test_compare_names_every_kind_of_change_and_nothing_else():
    baseline = {
        "modules": {"numpy": {"allclose": [1, 2], "sum": [3]}, "utils.x": {"check": [4]}},
        "identity": {"numpy": 10},
        "bindings": {"np": 10},
        "hooks": {"IPython event pre_run_cell": []},
    }
    assert compare(baseline, json.loads(json.dumps(baseline))) == []
    now = {
        "modules": {"numpy": {"allclose": [9, 2], "extra": [5]}},
        "identity": {"numpy": 11},
        "bindings": {"np": 12},
        "hooks": {"IPython event pre_run_cell": [7]},
    }
    assert compare(baseline, now) == [
        "numpy.allclose was replaced or modified",
        "numpy.sum was deleted",
        "module utils.x was unloaded",
        "sys.modules['numpy'] was replaced",
        "'np', imported by a locked cell, was rebound",
    ]


def test_the_fingerprint_sees_patched_torch_utils_and_tracers():
    """What the probe compares: each cheat changes the fingerprint, restoring it does not."""
    import sys

    import torch.nn.functional as F

    import utils.diagnose
    from grader import jail

    imports = "import torch\nimport utils.diagnose\nimport no_such_module_at_all"
    baseline = json.loads(jail.fingerprint(imports, (), baseline=True))
    assert compare(baseline, json.loads(jail.fingerprint(imports))) == []
    import numpy as np
    import torch

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # a learner's settings are not tampering
    np.set_printoptions(precision=3)
    try:
        assert compare(baseline, json.loads(jail.fingerprint(imports))) == []
    finally:
        torch.set_default_dtype(dtype)
        np.set_printoptions(precision=8)
    cheats = {
        "torch.nn.functional.batch_norm was replaced or modified": (F, "batch_norm"),
        "utils.diagnose.assert_close was replaced or modified": (utils.diagnose, "assert_close"),
    }
    for finding, (module, name) in cheats.items():
        original = getattr(module, name)
        setattr(module, name, lambda *a, **k: None)
        try:
            assert finding in compare(baseline, json.loads(jail.fingerprint(imports)))
        finally:
            setattr(module, name, original)
    original = utils.diagnose.assert_close.__defaults__
    utils.diagnose.assert_close.__defaults__ = None
    try:
        assert compare(baseline, json.loads(jail.fingerprint(imports)))
    finally:
        utils.diagnose.assert_close.__defaults__ = original
    tracer = sys.gettrace()
    sys.settrace(lambda *args: None)
    try:
        assert "sys.gettrace was changed" in compare(
            baseline, json.loads(jail.fingerprint(imports))
        )
    finally:
        sys.settrace(tracer)
    assert compare(baseline, json.loads(jail.fingerprint(imports))) == []


def test_the_grader_validates_notebooks_without_rfc3987_syntax():
    """grader/__init__.py keeps the ~1.3 CPU-s import of rfc3987_syntax out of its processes;
    nbformat still validates a notebook and still rejects a broken one."""
    code = (
        "import sys, grader, nbformat\n"
        "from nbformat.validator import NotebookValidationError\n"
        "assert sys.modules['rfc3987_syntax'] is None\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')])\n"
        "nbformat.validate(nb)\n"
        "nb.cells[0]['execution_count'] = 'one'\n"
        "try:\n"
        "    nbformat.validate(nb)\n"
        "except NotebookValidationError:\n"
        "    print('rejected')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "rejected"
