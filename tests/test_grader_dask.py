"""Grading on a Dask distributed cluster: a real scheduler and two workers on loopback, started
and stopped by the test, grade the toy class exactly as local processes do."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from fixtures.toy import copy_course, points, submission

from grader.grade import GradeOptions, SchedulerError, grade

pytestmark = pytest.mark.slow

P = points()


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """tcp://127.0.0.1:PORT of a scheduler with two one-thread workers; all stopped after."""
    from distributed import Client

    port_file = tmp_path_factory.mktemp("dask") / "scheduler.json"
    processes = [
        _start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
               "--scheduler-file", str(port_file))
    ]  # fmt: skip
    try:
        for _ in range(300):
            if port_file.exists():
                break
            time.sleep(0.1)
        for _ in range(2):
            processes.append(
                _start("worker", "--scheduler-file", str(port_file), "--nthreads", "1",
                       "--no-dashboard", "--host", "127.0.0.1")
            )  # fmt: skip
        with Client(scheduler_file=str(port_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_class_graded_on_dask_gets_the_same_points(scheduler, tmp_path):
    course = copy_course(tmp_path)
    folder = tmp_path / "class"
    submission(folder / "right" / "toy" / "toy.ipynb")
    submission(folder / "wrong" / "toy" / "toy.ipynb", double="def double(x):\n    return x\n")
    submission(folder / "dies" / "toy" / "toy.ipynb", square="import os\n\nos._exit(1)\n")
    options = GradeOptions(timeout=20, memory_limit=1.0, scheduler=scheduler)
    run = grade(course, folder, options=options, progress=False)
    scores = {r.student: {t.grade_id: t.score for t in r.tests} for r in run.results}
    assert scores["right"]["test_double"] == P["test_double"]
    assert scores["right"]["test_square"] == P["test_square"]
    assert scores["wrong"]["test_double"] == 0
    assert scores["wrong"]["test_square"] == P["test_square"]
    dies = next(r for r in run.results if r.student == "dies")
    assert dies.score == 0 and "kernel died" in dies.error
    assert (course.course_dir / "autograded" / "right" / "toy" / "toy.ipynb").exists()


def test_a_worker_that_cannot_see_the_files_is_refused_clearly(scheduler, monkeypatch):
    from grader import grade as grade_module

    monkeypatch.setattr(grade_module, "_missing_paths", lambda paths: paths[:1])
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        with pytest.raises(SchedulerError, match="cannot see"):
            grade_module._check_workers_see(client, {"/nowhere/at/all"}, scheduler)
