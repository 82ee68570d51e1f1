"""What a submission may produce while graded: output capped per cell and per notebook as it
arrives, a working copy capped in size while it runs, and the summary saying which confinement
was in force. Each flooding submission is graded next to an honest classmate whose points are
asserted exactly; expected points come from the fixture's notebook."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import nbformat
import pytest
from fixtures.toy import DOUBLE, SQUARE, cell, copy_course, points, submission

from grader import check, cli, confine
from grader.checker import CUT_NOTE, CappedText
from grader.grade import GradeRun, confinement_summary
from grader.results import CellGrade, SubmissionResult
from grader.sandbox import KEPT_ERROR, MIB, OutputBudget, content_size
from grader.worker import KNOWN_ERRORS, WORKING_COPY_LIMIT

P = points()
FULL = (P["test_double"], P["test_square"])

# ---- the output budget, message by message -------------------------------------------------


def stream(text: str) -> dict:
    return {"name": "stdout", "text": text}


def test_a_cell_keeps_output_up_to_its_cap_then_one_note():
    budget = OutputBudget(cell_limit=100, notebook_limit=1000)
    assert budget.admit("stream", stream("a" * 40), 0) == stream("a" * 40)
    assert budget.note(0) is None
    assert budget.admit("display_data", {"data": {"text/plain": "b" * 80}}, 0) is None
    note = budget.note(0)
    assert note.output_type == "stream" and note.name == "stderr"
    assert "output cut: this cell's output passed" in note.text
    assert budget.note(0) is None  # one note per cell
    assert budget.admit("stream", stream("c"), 0) is None  # nothing after the cut, however small
    assert budget.admit("stream", stream("d" * 40), 1) is not None  # the next cell starts afresh


def test_a_stream_past_the_cap_keeps_its_head():
    budget = OutputBudget(cell_limit=100, notebook_limit=1000)
    budget.admit("stream", stream("a" * 40), 0)
    kept = budget.admit("stream", stream("b" * 500), 0)
    assert kept["name"] == "stdout" and kept["text"] == "b" * len(kept["text"])
    assert 30 < len(kept["text"]) < 60 and budget.cells[0] == 100 and budget.is_cut(0)
    assert budget.admit("display_data", {"data": {"text/plain": "c" * 500}}, 1) is None


def test_the_notebook_cap_cuts_every_later_cell():
    budget = OutputBudget(cell_limit=100, notebook_limit=150)
    for index in range(3):
        budget.admit("display_data", {"data": {"text/plain": "x" * 60}}, index)
    assert not budget.is_cut(0) and not budget.is_cut(1) and budget.is_cut(2)
    assert "notebook's output passed" in budget.note(2).text
    assert budget.total <= 150


def test_an_error_after_the_cut_is_kept_once_and_shortened():
    budget = OutputBudget(cell_limit=10, notebook_limit=1000)
    budget.admit("stream", stream("x" * 20), 0)
    huge = {"ename": "AssertionError", "evalue": "v" * 10**6, "traceback": ["t" * 10**6]}
    kept = budget.admit("error", huge, 0)
    assert kept["ename"] == "AssertionError"
    assert len(kept["evalue"]) == KEPT_ERROR and len(kept["traceback"][0]) == KEPT_ERROR
    assert budget.admit("error", huge, 0) is None  # a flood of forged errors stays one


def test_content_size_counts_nested_strings():
    content = {"data": {"image/png": "x" * 1000, "application/json": {"k": ["y" * 50]}}}
    assert 1050 <= content_size(content) < 1100


def test_the_checkers_printed_text_is_capped_as_it_is_written():
    text = CappedText(10)
    for _ in range(1000):
        text.write("0123456789" * 100)
    assert text.getvalue() == "0123456789" + CUT_NOTE
    assert sum(len(p) for p in text.parts) == 10
    assert CappedText(10).getvalue() == ""


# ---- which confinement was in force --------------------------------------------------------


def result_under(confinement: str) -> SubmissionResult:
    return SubmissionResult(
        "kim", "toy", "toy", [CellGrade("test_double", 2.0, 2.0)], confinement=confinement
    )


def test_the_summary_names_the_confinement_in_force():
    line = confinement_summary([result_under("Landlock ABI 7, seccomp, rlimits")] * 2)
    assert line == "kernels confined by: Landlock ABI 7, seccomp, rlimits"


def test_the_summary_says_loudly_when_confinement_is_weaker():
    weak = "WEAKER: no Landlock (Linux 5.4 has none or it is disabled); in force: seccomp, rlimits"
    text = confinement_summary([result_under(weak)])
    assert text.startswith("WARNING: CONFINEMENT IS WEAKER than the design assumes: no Landlock")
    assert "in force: seccomp, rlimits" in text and "VM or container" in text


def test_the_check_report_ends_with_the_confinement():
    assert check.report(result_under("Landlock ABI 7, seccomp, rlimits")).endswith(
        "kernels confined by: Landlock ABI 7, seccomp, rlimits"
    )
    weak = check.report(result_under("WEAKER: no Landlock and no seccomp (darwin is not Linux)"))
    assert "WARNING: CONFINEMENT IS WEAKER" in weak.splitlines()[-1]


def test_grade_prints_the_confinement_after_the_table(monkeypatch, capsys, tmp_path):
    weak = "WEAKER: no Landlock and no seccomp (darwin is not Linux); in force: rlimits"
    run = GradeRun(results=[result_under(weak)])
    monkeypatch.setattr("grader.grade.grade", lambda *args, **kwargs: run)
    assert cli.main(["grade", str(tmp_path), "--course-dir", str(tmp_path / "c")]) == cli.OK
    printed = capsys.readouterr().out.splitlines()
    table_end = next(i for i, line in enumerate(printed) if line.startswith("kim"))
    assert printed[table_end + 1].startswith("WARNING: CONFINEMENT IS WEAKER")
    assert "no Landlock and no seccomp (darwin is not Linux)" in printed[table_end + 1]


# ---- a class graded for real, in a process whose memory is measured --------------------------

FLOOD = textwrap.dedent(
    """
    from IPython.display import display

    for _ in range(40):  # 400 MB of display output
        display({"text/plain": "x" * 10_000_000}, raw=True)
    """
)
WRITES_TOO_MUCH = textwrap.dedent(
    """
    import os
    import time

    chunk = os.urandom(4 * 2**20)
    with open("big.bin", "wb") as f:
        for _ in range(100):  # 400 MiB in 4 MiB chunks, over 5 s: the size watch stops it
            f.write(chunk)
            f.flush()
            time.sleep(0.05)
    """
)
GRADE_AND_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from grader.course import Course
    from grader.grade import GradeOptions, grade

    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    run = grade(Course(root, root / ".course"), folder,
                options=GradeOptions(workers=1, timeout=60, memory_limit=1.0), progress=False)
    results = {r.student: {"scores": {t.grade_id: t.score for t in r.tests}, "error": r.error,
                           "notebook": r.notebook_json, "confinement": r.confinement}
               for r in run.results}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak, "results": results}))
    """
)


@pytest.fixture(scope="module")
def flooded(tmp_path_factory):
    """The class graded in a fresh process: (results by student, that process's peak RSS)."""
    tmp = tmp_path_factory.mktemp("limits")
    course = copy_course(tmp)
    folder = tmp / "class"
    submission(folder / "honest_ann" / "toy" / "toy.ipynb")
    submission(folder / "floods_display" / "toy" / "toy.ipynb", square=SQUARE + FLOOD)
    submission(folder / "writes_too_much" / "toy" / "toy.ipynb", double=DOUBLE + WRITES_TOO_MUCH)
    done = subprocess.run(
        [sys.executable, "-c", GRADE_AND_MEASURE, str(course.root), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return measured["results"], measured["peak_rss"]


def scored(result) -> tuple:
    return result["scores"]["test_double"], result["scores"]["test_square"]


def outputs_of(result, grade_id: str) -> list:
    return cell(nbformat.reads(result["notebook"], as_version=4), grade_id).outputs


@pytest.mark.slow
def test_flooding_output_keeps_the_graders_memory_bounded(flooded):
    results, peak = flooded
    assert peak < 1024 * MIB, f"the grading process peaked at {peak / MIB:.0f} MiB"
    assert scored(results["honest_ann"]) == FULL and results["honest_ann"]["error"] is None


@pytest.mark.slow
def test_a_cell_displaying_400_mb_is_cut_with_a_note_and_still_scored(flooded):
    results, _ = flooded
    flood = results["floods_display"]
    assert scored(flood) == FULL and flood["error"] is None
    outputs = outputs_of(flood, "square")
    notes = [o for o in outputs if o.output_type == "stream" and "output cut" in o.text]
    assert len(notes) == 1 and "this cell's output passed 1 MiB" in notes[0].text
    assert sum(content_size(o) for o in outputs) < 2 * MIB
    assert len(flood["notebook"]) < 4 * MIB


@pytest.mark.slow
def test_a_notebook_writing_400_mib_fails_with_the_size_limit_alone(flooded):
    results, _ = flooded
    big = results["writes_too_much"]
    assert scored(big) == (0, 0)
    assert big["error"].startswith(KNOWN_ERRORS["SizeLimitError"] + " [")
    assert f"the limit is {WORKING_COPY_LIMIT // MIB} MiB" in big["error"]
    written = int(re.search(r"files took (\d+) MiB", big["error"]).group(1))
    assert WORKING_COPY_LIMIT // MIB < written < 380  # stopped while it ran, not measured after
    assert scored(results["honest_ann"]) == FULL


@pytest.mark.slow
def test_every_result_says_which_confinement_was_in_force(flooded):
    results, _ = flooded
    assert {r["confinement"] for r in results.values()} == {confine.describe()}
