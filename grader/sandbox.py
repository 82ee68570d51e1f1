"""Confine a grading kernel: a memory limit, and no sign that it is being graded.

nbgrader has no memory limit (its issue #1429) and tells student code it is being graded
through ``NBGRADER_EXECUTION``. The kernel manager here starts every kernel through this
module's launcher::

    python -I -m grader.sandbox LIMIT_BYTES -- KERNEL_COMMAND...

which caps the kernel's data segment (RLIMIT_DATA: heap and anonymous mappings, so numpy and
torch allocations, but not the shared libraries) — an allocation over the limit raises
MemoryError in the student's cell instead of taking the machine down — removes the grader's
environment variables (``NBGRADER_EXECUTION``; ``MPLBACKEND``, so figures render inline as in
JupyterLab), and then becomes the kernel (exec).

This confines accidents, not adversaries: the kernel runs as the grading user, and student
code shares its interpreter with the tests. POSIX only; elsewhere kernels start unconfined.
"""

from __future__ import annotations

import os
import resource
import sys

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Integer

# NBGRADER_EXECUTION tells student code it is being graded; MPLBACKEND (the Makefile sets Agg)
# would stop the kernel drawing figures inline as in the learner's JupyterLab.
GRADER_ENV_VARS = ("NBGRADER_EXECUTION", "MPLBACKEND")


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels start through the sandbox launcher."""

    memory_limit = Integer(0, help="Data-segment limit of the kernel in bytes; 0: none").tag(
        config=True
    )

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments=extra_arguments)
        if os.name != "posix":  # no exec nor rlimits: the kernel runs unconfined
            return cmd
        return [sys.executable, "-I", "-m", "grader.sandbox", str(self.memory_limit), "--", *cmd]


class SandboxedExecute(Execute):
    """nbgrader's Execute with kernels from SandboxKernelManager.

    Execute passes its kernel manager class as a constructor argument, which beats any
    configuration, so the class is swapped here.
    """

    def __init__(self, **kwargs):
        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(**kwargs)


def confine(memory_limit: int) -> None:
    """Apply the memory limit (bytes, 0: none) and drop the grader's variables, in this process."""
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    for name in GRADER_ENV_VARS:
        os.environ.pop(name, None)


def main(argv: list[str]) -> None:
    limit, separator, *cmd = argv
    if separator != "--" or not cmd:
        raise SystemExit("usage: python -m grader.sandbox LIMIT_BYTES -- COMMAND...")
    confine(int(limit))
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
