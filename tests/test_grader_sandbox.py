"""grader.sandbox: kernels start through the launcher; the integrity probe's locked imports
and its comparison of fingerprints."""

from __future__ import annotations

import json

import nbformat
from fixtures.toy import COURSE, release
from nbformat.v4 import new_code_cell

from grader.sandbox import SandboxKernelManager, compare, locked_imports


def test_kernels_start_through_the_sandbox():
    manager = SandboxKernelManager(kernel_name="python3", memory_limit=123, jail_rules="{}")
    cmd = manager.format_kernel_cmd()
    assert cmd[1:7] == ["-I", "-m", "grader.launcher", "123", "{}", "--"]
    assert "ipykernel_launcher" in " ".join(cmd[7:])


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
