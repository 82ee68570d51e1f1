"""grader.launcher: what starts every grading kernel refuses anything but an IPython kernel,
limits memory and drops the grader's variables."""

from __future__ import annotations

import os
import subprocess
import sys


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
