"""One submission through the worker: tampering, crashes, loops, memory, grading-mode tricks.

Expected points come from the fixture's notebook (``points()``), never from the grader.
"""

from __future__ import annotations

import nbformat
import pytest
from fixtures.toy import SQUARE, cell, copy_course, points, submission, without_cells

from grader.build import make_template
from grader.feedback import stored_notebook
from grader.grade import run_jobs
from grader.worker import GradeJob, grade_submission

P = points()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(course, template gradebook) shared by the module: the worker never writes to either."""
    tmp = tmp_path_factory.mktemp("worker")
    course = copy_course(tmp)
    return course, make_template(course, tmp / "template")


def run(toy, path, timeout=10, memory_limit=1.0):
    course, template = toy
    return grade_submission(course.root, "toy", "kim", path, template, timeout, memory_limit)


def scores(result) -> dict[str, float | None]:
    return {t.grade_id: t.score for t in result.tests}


def message(result, grade_id: str) -> str:
    return next(t for t in result.tests if t.grade_id == grade_id).message


def only_square_lost(result) -> str:
    """test_square's message, once test_double kept its points and test_square scored 0."""
    assert scores(result)["test_double"] == P["test_double"]
    assert scores(result)["test_square"] == 0
    return message(result, "test_square")


def test_a_wrongly_named_notebook_scores_zero_with_a_reason(toy, tmp_path):
    result = run(toy, submission(tmp_path / "toy-Copy1.ipynb"))
    assert result.notebook == "toy"
    assert "wrong notebook name 'toy-Copy1.ipynb'" in result.error and "toy.ipynb" in result.error
    assert result.score == 0 and len(result.tests) == len(P)


def test_truncated_json_scores_zero_with_a_reason(toy, tmp_path):
    path = submission(tmp_path / "toy.ipynb")
    path.write_text(path.read_text()[:300])
    result = run(toy, path)
    assert "not valid notebook JSON" in result.error
    assert result.score == 0
    note = nbformat.reads(result.notebook_json, as_version=4).cells[0]
    assert "scores 0" in note.source and "not valid notebook JSON" in note.source
    assert result.stored_json == stored_notebook(result)  # made by the worker, not the recorder


@pytest.mark.slow
def test_tampered_tests_come_back_from_the_gradebook(toy, tmp_path):
    def tamper(nb):
        cell(nb, "test_double").source = "pass"
        nb_meta = cell(nb, "test_square").metadata.nbgrader
        nb_meta.update(grade=False, locked=False, points=0)
        cell(nb, "test_square").source = "pass"

    wrong = submission(
        tmp_path / "toy.ipynb",
        double="def double(x):\n    return x",
        square="def square(x):\n    return x",
        edit=tamper,
    )
    result = run(toy, wrong)
    assert result.error is None
    assert scores(result) == {"test_double": 0, "test_square": 0, "written_linear": 0}
    assert "HIDDEN-MARKER" in result.notebook_json  # the full test ran, hidden part included
    assert result.stored_json == stored_notebook(result)


@pytest.mark.slow
def test_deleted_cells_come_back_and_the_rest_is_graded(toy, tmp_path):
    path = submission(tmp_path / "toy.ipynb", edit=without_cells("setup", "double", "test_double"))
    result = run(toy, path)
    assert scores(result) == {
        "test_double": 0,
        "test_square": P["test_square"],
        "written_linear": 0,
    }
    assert message(result, "test_double").startswith("NotImplementedError")


@pytest.mark.slow
def test_student_code_cannot_see_grading_mode_nor_fake_a_pass(toy, tmp_path):
    knows = (
        'import os\n\ndef double(x):\n    assert "NBGRADER_EXECUTION" not in os.environ\n'
        "    return 2 * np.asarray(x)"
    )
    fakes = (
        'import sys\n\ndef square(x):\n    sys.displayhook("looks fine")\n'
        "    return np.asarray(x) ** 3"
    )
    only_square_lost(run(toy, submission(tmp_path / "toy.ipynb", double=knows, square=fakes)))


@pytest.mark.slow
def test_a_memory_hog_loses_only_its_test(toy, tmp_path):
    hog = "def square(x):\n    block = np.ones(2**28)  # 2 GiB\n    return np.asarray(x) ** 2"
    result = run(toy, submission(tmp_path / "toy.ipynb", square=hog), memory_limit=1.0)
    assert "MemoryError" in only_square_lost(result)


@pytest.mark.slow
def test_an_endless_loop_loses_only_its_test(toy, tmp_path):
    loop = "def square(x):\n    while True:\n        pass"
    square = only_square_lost(run(toy, submission(tmp_path / "toy.ipynb", square=loop), timeout=3))
    assert square.startswith("CellTimeoutError") and "3 s" in square


@pytest.mark.slow
def test_a_dying_kernel_is_an_error_result_not_an_exception(toy, tmp_path):
    result = run(toy, submission(tmp_path / "toy.ipynb", square="import os\n\nos._exit(3)"))
    assert "kernel died" in result.error
    assert result.score == 0 and "kernel died" in result.notebook_json


@pytest.mark.slow
def test_a_correct_submission_gets_every_auto_point(toy, tmp_path):
    result = run(toy, submission(tmp_path / "toy.ipynb", square=SQUARE))
    assert result.error is None
    assert scores(result) == {
        "test_double": P["test_double"],
        "test_square": P["test_square"],
        "written_linear": 0,
    }  # no written answer given


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_that_crashes_the_grader_costs_only_its_own_result(tmp_path, workers):
    """A job whose grading raises (here: no course root at all) comes back as an error result
    naming the crash, in the calling process and from a worker process alike, and the other
    job of the run is still graded."""

    def job(name: str) -> GradeJob:
        root = None if name == "broken" else tmp_path
        return GradeJob(root, "toy", name, tmp_path / f"{name}.ipynb", tmp_path / "missing.db")

    results = dict(run_jobs(["broken", "other"], job, workers))
    assert results["broken"].error.startswith("grading crashed: TypeError")
    assert (results["broken"].student, results["broken"].assignment) == ("broken", "toy")
    assert results["other"].student == "other" and not results["other"].error.startswith(
        "grading crashed"
    )


def test_a_grading_process_runs_torch_and_blas_on_one_thread_each():
    import os
    import subprocess
    import sys

    code = (
        "import os, torch\n"
        "torch.set_num_threads(4)\n"
        "from grader.worker import one_thread_per_pool\n"
        "one_thread_per_pool()\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["1", "1"], done.stderr
