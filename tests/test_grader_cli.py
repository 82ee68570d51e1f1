"""grader.cli: every command's options in its help, and what it cannot run refused with exit
2 and one clear line on stderr."""

from __future__ import annotations

import nbformat
import pytest
from fixtures.toy import COURSE, cell, copy_course
from nbformat.v4 import new_code_cell

from grader.cli import build_parser, main

OPTIONS = {
    "build": ["--check", "--course-dir", "--root"],
    "validate": ["--workers", "--timeout", "--memory-limit", "--course-dir"],
    "grade": [
        "SUBMISSIONS",
        "--assignment",
        "--workers",
        "--scheduler",
        "--timeout",
        "--memory-limit",
        "--course-dir",
    ],
    "export": ["--out", "--per-test", "--course-dir"],
    "feedback": ["--out", "--course-dir"],
    "check": ["NOTEBOOK", "--timeout", "--memory-limit", "--course-dir"],
    "demo": ["--samples", "--workers", "--course-dir"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_lists_every_option(command):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = subparsers.choices[command].format_help()
    for option in OPTIONS[command]:
        assert option in text


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in OPTIONS:
        assert command in out


def grade(tmp_path, submissions, *options: str) -> int:
    """``python -m grader grade`` on the toy course, its state kept in tmp_path/state."""
    state = ["--root", str(COURSE), "--course-dir", str(tmp_path / "state")]
    return main(["grade", str(submissions), *options, *state])


def test_an_unreachable_scheduler_is_refused_clearly(tmp_path, capsys):
    code = grade(tmp_path, COURSE / "submissions", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_check_refuses_an_unreadable_notebook(tmp_path, capsys):
    broken = tmp_path / "toy.ipynb"
    broken.write_text('{"cells": [')
    assert main(["check", str(broken), "--root", str(COURSE)]) == 2
    assert "not valid notebook JSON" in capsys.readouterr().err


def test_check_refuses_a_notebook_of_no_assignment(tmp_path, capsys):
    stranger = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[new_code_cell("1 + 1")]), stranger)
    assert main(["check", str(stranger), "--root", str(COURSE)]) == 2
    assert "matches no assignment" in capsys.readouterr().err


def test_build_check_detects_a_stale_release(tmp_path, capsys):
    course = copy_course(tmp_path)
    args = ["build", "--check", "--root", str(course.root)]
    assert main(args) == 0
    solution = course.source_notebook("toy", "toy")
    nb = nbformat.read(solution, as_version=4)
    cell(nb, "test_square").metadata.nbgrader["points"] = 4
    nbformat.write(nb, solution)
    capsys.readouterr()
    assert main(args) == 1
    assert "changed: toy/toy.ipynb" in capsys.readouterr().out
    assert main(["build", "--root", str(course.root)]) == 0
    assert main(args) == 0


def test_grading_an_unknown_assignment_is_refused(tmp_path, capsys):
    code = grade(tmp_path, tmp_path, "--assignment", "nope")
    assert code == 2
    assert "unknown assignment(s) nope; the course has: toy" in capsys.readouterr().err
