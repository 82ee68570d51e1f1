"""Start a grading kernel confined: the command line ``grader.sandbox`` gives every kernel.

    python -I -m grader.launcher LIMIT_BYTES RULES_JSON -- python -m ipykernel_launcher ARGS...

removes the grader's environment variables (and, for grading, sets matplotlib's non-drawing
``agg`` backend), gives the kernel its own home, config and runtime
folders inside its working copy (the cwd) and one thread per pool, confines the process with the
operating system (``grader.confine``: rlimits, Landlock, seccomp), installs the lesson's import
policy and ``grader.jail``'s audit hook (a second layer), and then runs the IPython kernel in
this same process. This module imports nothing but the standard library and ``grader``: it runs
once per graded notebook, before the kernel, so its start-up time is paid by every submission.
In grading, ``main`` usually runs in a child forked from a warm zygote (``grader.zygote``), which
has imported numpy, IPython and the rest already; the steps and their order are the same.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

# NBGRADER_EXECUTION tells student code it is being graded; MPLBACKEND (the Makefile sets Agg)
# would stop the kernel drawing figures inline as in the learner's JupyterLab.
GRADER_ENV_VARS = ("NBGRADER_EXECUTION", "MPLBACKEND")
NO_FIGURES = {"MPLBACKEND": "agg"}
"""A grading kernel's matplotlib backend (rules ``"figures": false``): figures are drawn on no
canvas and never encoded as PNGs, which no grade needs and feedback never shows (it carries the
checker's verdicts, not what submitted code displayed)."""


def drop_grader_variables() -> None:
    """Remove the grader's environment variables from this process."""
    for name in GRADER_ENV_VARS:
        os.environ.pop(name, None)


def connection_file_argument(args: list[str]) -> int:
    """The index in ipykernel's ``args`` of the connection file (given after ``-f``)."""
    for i, arg in enumerate(args[:-1]):
        if arg == "-f":
            return i + 1
    raise SystemExit("grader.launcher: the kernel command has no -f CONNECTION_FILE")


def package_dirs(*names: str) -> list[str]:
    """Folders of importable packages (found without importing them)."""
    import importlib.util

    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found += list(spec.submodule_search_locations)
    return found


def jail_rules(rules: dict) -> dict:
    """``rules`` (private paths from the worker) completed for this kernel: it may write only
    its working directory (the cwd) and read the Python installation and the course packages."""
    import sysconfig

    cwd = os.getcwd()
    allowed = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["purelib"]}
    allowed |= set(package_dirs("utils", "grader"))
    return {
        "writable": [cwd],
        "private": list(rules.get("private", [])),
        "allowed": sorted(allowed),
        "libraries": sorted(allowed | {sys.exec_prefix}),
    }


def main(argv: list[str]) -> None:
    limit, rules, separator, *cmd = argv
    if separator != "--" or not cmd:
        raise SystemExit("usage: python -m grader.launcher LIMIT_BYTES RULES_JSON -- COMMAND...")
    if cmd[1:3] != ["-m", "ipykernel_launcher"]:
        raise SystemExit(f"grader.launcher runs IPython kernels only, not {' '.join(cmd)}")
    drop_grader_variables()
    from grader import confine, jail, kernel_side

    rules = json.loads(rules)
    if not rules.get("figures", True):
        os.environ.update(NO_FIGURES)
    policy = rules.get("policy", {})
    args = cmd[3:]
    workdir = os.getcwd()
    folders = confine.prepare_environment(workdir)
    index = connection_file_argument(args)
    args[index] = confine.private_connection_file(args[index], folders["JUPYTER_RUNTIME_DIR"])
    ports = confine.kernel_ports(args[index])
    confine.confine(workdir, policy, ports, int(limit))
    kernel_side.install(policy, rules.get("assignment", ""))
    jail.install(jail_rules(rules))
    sys.argv = ["ipykernel_launcher", *args]
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
