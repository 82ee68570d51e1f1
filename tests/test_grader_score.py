"""grader.score: a test cell's points from its outputs (stricter than nbgrader's) and its
failure message."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_output
from nbgrader.utils import determine_grade

from grader.score import cell_score, failure_message


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
