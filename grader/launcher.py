"""Start a grading kernel confined: the command line ``grader.sandbox`` gives every kernel.

    python -I -m grader.launcher LIMIT_BYTES RULES_JSON -- python -m ipykernel_launcher ARGS...

caps the kernel's data segment (RLIMIT_DATA), removes the grader's environment variables,
installs ``grader.jail``'s audit hook and then runs the IPython kernel in this same process.
This module imports nothing but the standard library and ``grader.jail``: it runs once per
graded notebook, before the kernel, so its start-up time is paid by every submission.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys

# NBGRADER_EXECUTION tells student code it is being graded; MPLBACKEND (the Makefile sets Agg)
# would stop the kernel drawing figures inline as in the learner's JupyterLab.
GRADER_ENV_VARS = ("NBGRADER_EXECUTION", "MPLBACKEND")


def confine(memory_limit: int) -> None:
    """Apply the memory limit (bytes, 0: none) and drop the grader's variables, in this process."""
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    for name in GRADER_ENV_VARS:
        os.environ.pop(name, None)


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
    confine(int(limit))
    os.environ["TMPDIR"] = os.getcwd()  # scratch files stay in the working copy
    from grader import jail, kernel_side

    rules = json.loads(rules)
    kernel_side.install(rules.get("policy", {}), rules.get("assignment", ""))
    jail.install(jail_rules(rules))
    sys.argv = ["ipykernel_launcher", *cmd[3:]]
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
