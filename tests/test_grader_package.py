"""grader/__init__.py: what importing the grader package sets up for every process."""

from __future__ import annotations

import subprocess
import sys


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
