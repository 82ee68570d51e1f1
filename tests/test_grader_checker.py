"""One definition of each check, two transports: the learner's in-process loop (test cells run
in the notebook's own namespace, as in JupyterLab) and grading (test cells run in the trusted
checker, the learner's code in a confined kernel) give every test the same verdict."""

from __future__ import annotations

import contextlib
import io
import os

import matplotlib.pyplot as plt
import nbformat
import pytest
from harness import ROOT, solution_path

from grader.check import check
from grader.course import Course

pytestmark = pytest.mark.slow

# Lesson 11's in-process run executes Triton kernels here: in the interpreter, as its set-up cell
# asks where there is no GPU (it must be set before triton is first imported in this process).
os.environ.setdefault("TRITON_INTERPRET", "1")

SAMPLES = ROOT / "samples" / "class"
CASES = [
    ("02_batchnorm_forward", "ada_complete"),
    ("02_batchnorm_forward", "carol_eps_outside_sqrt"),
    ("02_batchnorm_forward", "frank_calls_torch"),
    ("00_gradient_checking", "grace_one_sided_difference"),
    ("10_sync_batchnorm", "quinn_averages_the_ranks_variances"),
    ("09_batchnorm_in_pytorch", "ada_complete"),
    ("09_batchnorm_in_pytorch", "pat_fold_forgets_the_running_mean"),
    ("08_why_batchnorm_works", "ada_complete"),
    ("08_why_batchnorm_works", "oscar_leaves_the_weights_moved"),
    ("05_batchnorm_in_networks", "ada_complete"),
    ("05_batchnorm_in_networks", "leo_forgets_eval"),
    ("11_fused_batchnorm_kernel", "ada_complete"),
    ("11_fused_batchnorm_kernel", "rue_counts_the_masked_lanes"),
]


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def in_process_verdicts(assignment: str, student: str) -> dict[str, bool]:
    """Each test cell's pass (True) or failure, running the submission with the full test
    cells (hidden tests included) in one namespace, as the learner's kernel would."""
    tests = {
        _grade_id(c): c.source
        for c in nbformat.read(solution_path(assignment), as_version=4).cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    }  # fmt: skip
    submitted = SAMPLES / student / assignment / f"{assignment}.ipynb"
    namespace: dict = {"__name__": "__main__"}
    verdicts = {}
    for cell in nbformat.read(submitted, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = tests.get(_grade_id(cell), cell.source)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(source, f"<{_grade_id(cell) or 'cell'}>", "exec"), namespace)
            passed = True
        except Exception:
            passed = False
        plt.close("all")
        if _grade_id(cell) in tests:
            verdicts[_grade_id(cell)] = passed
    return verdicts


@pytest.mark.parametrize(("assignment", "student"), CASES)
def test_both_transports_give_the_same_verdicts(assignment, student):
    submitted = SAMPLES / student / assignment / f"{assignment}.ipynb"
    graded = check(Course(ROOT), submitted, timeout=60, memory_limit=4.0)
    assert graded.error is None
    remote = {t.grade_id: t.passed for t in graded.tests if not t.manual}
    local = in_process_verdicts(assignment, student)
    assert remote == local
    if student != "ada_complete":
        assert not all(local.values())  # the sample's mistake is seen by both
