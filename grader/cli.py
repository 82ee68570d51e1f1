"""`python -m grader ...`: a thin layer over the stage functions.

Exit status: 0 done; 1 the check found problems (a stale release, a course that does not
validate, a demo whose samples scored otherwise than samples/expected.yaml); 2 the command
could not run (bad input, unknown assignment, unsupported option).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from grader.course import NOTEBOOK_TIMEOUT_FACTOR, REPO_ROOT, Course
from grader.text import printable, printable_line

OK, PROBLEMS, CANNOT_RUN = 0, 1, 2


def say(text: object = "", file=None) -> None:
    """Print ``text`` with its control characters escaped: everything the CLI prints may quote
    a student (ids, file names, reasons, hints), and a terminal obeys escape sequences."""
    print(printable(text), file=file or sys.stdout)


def _course(args) -> Course:
    root = Path(args.root).resolve()
    course_dir = Path(args.course_dir).resolve() if args.course_dir else root / ".course"
    return Course(root, course_dir)


def cmd_build(args) -> int:
    from grader.build import build, stale_files

    course = _course(args)
    if args.check:
        stale = stale_files(course)
        for line in stale:
            say(f"stale release: {line}")
        if stale:
            say("notebooks/ is out of date with solutions/: run `python -m grader build`")
            return PROBLEMS
        say("notebooks/ is up to date")
        return OK
    built = build(course)
    say(f"built {len(built)} assignment(s) into {course.release_dir}: {', '.join(built)}")
    return OK


def cmd_validate(args) -> int:
    from grader.validate import validate

    problems = validate(
        _course(args), args.workers, args.timeout, args.memory_limit, args.assignment
    )
    for line in problems:
        say(f"PROBLEM {line}")
    if problems:
        say(f"{len(problems)} problem(s): the course does not validate")
        return PROBLEMS
    say("the course validates: solutions pass, releases fail every test and leak nothing")
    return OK


def cmd_grade(args) -> int:
    from grader.grade import GradeOptions, confinement_summary, grade, summary_table

    course = _course(args)
    options = GradeOptions(args.workers, args.timeout, args.memory_limit, args.scheduler)
    run = grade(course, Path(args.submissions), args.assignment, options)
    for line in run.problems:
        say(f"not graded: {printable_line(line)}")
    if run.results:
        say(summary_table(run.results))
        say(confinement_summary(run.results))
    say(
        f"graded {len(run.results)} notebook(s) into {course.course_dir} "
        f"({sum(1 for r in run.results if r.error)} could not be graded)"
    )
    return OK


def cmd_export(args) -> int:
    from grader.export import export_as

    done = export_as(
        _course(args), args.format, args.out, args.per_test, args.roster, args.moodle_id
    )
    say(f"wrote {done.grades} and {done.tests}")
    for line in done.left_out:
        say(f"left out of {done.grades.name}: {line}")
    if done.left_out:
        say(f"{len(done.left_out)} student(s) left out: add them to the roster (--roster)")
        return PROBLEMS
    return OK


def cmd_bundle(args) -> int:
    from grader.bundle import bundle

    written = bundle(_course(args), Path(args.out), args.zip)
    say(f"wrote the student bundle to {written}")
    return OK


def cmd_feedback(args) -> int:
    from grader.feedback import write_feedback

    course = _course(args)
    files = write_feedback(course, args.out, args.workers)
    say(f"wrote {len(files)} feedback file(s) under {args.out or course.course_dir / 'feedback'}")
    return OK


def cmd_overview(args) -> int:
    from grader.overview import write_overview

    say(f"wrote the class overview to {write_overview(_course(args), args.out)}")
    return OK


def cmd_check(args) -> int:
    from grader.check import check, report

    say(report(check(_course(args), Path(args.notebook), args.timeout, args.memory_limit)))
    return OK


def cmd_demo(args) -> int:
    from grader.demo import demo, describe
    from grader.grade import GradeOptions

    course = _course(args)
    samples = Path(args.samples) if args.samples else course.root / "samples" / "class"
    expected = samples.parent / "expected.yaml"
    options = GradeOptions(args.workers, args.timeout, args.memory_limit)
    outcome = demo(course, samples, options, expected=expected if expected.exists() else None)
    say(describe(course, outcome))
    return PROBLEMS if outcome.differences else OK


def _add_limits(p: argparse.ArgumentParser, timeout: int = 60) -> None:
    p.add_argument(
        "--timeout",
        type=int,
        default=timeout,
        metavar="S",
        help=f"seconds a notebook cell may run (default {timeout}); a whole notebook may run "
        f"{NOTEBOOK_TIMEOUT_FACTOR} times that",
    )
    p.add_argument(
        "--memory-limit",
        type=float,
        default=4.0,
        metavar="GB",
        help="memory a grading kernel may allocate, in GiB; 0: no limit (default 4)",
    )


def _add_workers(p: argparse.ArgumentParser, default: int, what: str = "notebooks graded") -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=default,
        metavar="N",
        help=f"{what} at once in local processes (default {default})",
    )


def _add_assignment(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--assignment",
        action="append",
        metavar="A",
        help=f"{verb} only this assignment (repeatable; default: all)",
    )


def _command(sub, common, name: str, run, help: str) -> argparse.ArgumentParser:
    """The subcommand ``name``: the common options, ``help``, and ``run(args)`` to run it."""
    p = sub.add_parser(name, parents=[common], help=help)
    p.set_defaults(run=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--course-dir",
        metavar="DIR",
        help="course state: gradebook, autograded copies, feedback, CSVs (default ROOT/.course)",
    )
    common.add_argument(
        "--root",
        default=str(REPO_ROOT),
        metavar="DIR",
        help="the source tree with solutions/ and notebooks/ (default: this repo)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m grader", description="NormLab's grading pipeline (nbgrader underneath)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, common, "build", cmd_build, "solutions/ -> notebooks/")
    p.add_argument(
        "--check",
        action="store_true",
        help="build into a scratch folder and exit 1 if notebooks/ differs",
    )

    p = _command(
        sub,
        common,
        "validate",
        cmd_validate,
        "solutions pass, releases fail every test and leak nothing",
    )
    _add_assignment(p, "validate")
    _add_workers(p, 2)
    _add_limits(p, timeout=120)

    p = _command(
        sub,
        common,
        "grade",
        cmd_grade,
        "grade a folder <student>/<assignment>/<notebook>.ipynb or an LMS zip",
    )
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder or zip of submissions")
    _add_assignment(p, "grade")
    _add_workers(p, os.cpu_count() or 1)
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="grade on a Dask cluster: its scheduler's address, e.g. tcp://127.0.0.1:8786 "
        "(workers must see the course and the temp folder at the same paths)",
    )
    _add_limits(p)

    p = _command(
        sub, common, "export", cmd_export, "grades for nbgrader, Canvas, Moodle or Gradescope"
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="default COURSE_DIR/grades.csv, COURSE_DIR/FORMAT.csv, or the folder "
        "COURSE_DIR/gradescope",
    )
    p.add_argument("--per-test", metavar="tests.csv", help="default COURSE_DIR/tests.csv")
    p.add_argument(
        "--format",
        default="grades",
        choices=("grades", "nbgrader", "canvas", "moodle", "gradescope"),
        help="grades: student,assignment,score,max_score (default); nbgrader: `nbgrader "
        "export`'s columns; canvas: gradebook import CSV; moodle: grade import CSV; "
        "gradescope: FOLDER/<assignment>/<student>/results.json",
    )
    p.add_argument(
        "--roster",
        metavar="FILE",
        help="canvas: Canvas's gradebook export (optionally with a `student` column of our ids); "
        "moodle: a CSV with `student` and the identifier column",
    )
    p.add_argument(
        "--moodle-id",
        default="username",
        choices=("username", "email", "idnumber"),
        help="the column Moodle matches students by (default username)",
    )

    p = _command(
        sub,
        common,
        "bundle",
        cmd_bundle,
        "what students get: release notebooks, utils/, install files; no solutions",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--zip", action="store_true", help="also write DIR.zip")

    p = _command(
        sub, common, "feedback", cmd_feedback, "HTML feedback per submission, hidden tests removed"
    )
    p.add_argument("--out", metavar="DIR", help="default COURSE_DIR/feedback")
    _add_workers(p, os.cpu_count() or 1, "feedback pages written")

    p = _command(
        sub,
        common,
        "overview",
        cmd_overview,
        "one HTML page: per lesson, who failed which test, the most common named mistakes",
    )
    p.add_argument("--out", metavar="FILE", help="default COURSE_DIR/overview.html")

    p = _command(
        sub, common, "check", cmd_check, "self-study: grade one notebook with the full tests"
    )
    p.add_argument("notebook", metavar="NOTEBOOK")
    _add_limits(p)

    p = _command(
        sub,
        common,
        "demo",
        cmd_demo,
        "build, grade samples/, print the grades, export, write feedback",
    )
    p.add_argument(
        "--samples", metavar="DIR", help="sample submissions (default ROOT/samples/class)"
    )
    _add_workers(p, 2)
    _add_limits(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from grader.build import BuildError
    from grader.bundle import BundleError
    from grader.check import CheckError
    from grader.demo import DemoError
    from grader.feedback import FeedbackError
    from grader.grade import SchedulerError

    try:
        return args.run(args)
    except (
        BuildError,
        BundleError,
        CheckError,
        DemoError,
        FeedbackError,
        SchedulerError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        say(f"error: {exc}", file=sys.stderr)
        return CANNOT_RUN
