"""Wall time of grading one class with plain serial nbgrader vs `python -m grader grade`.

    python bench/bench_grading.py [--students 12] [--assignments A ...] [--keep DIR]

Writes STUDENTS x ASSIGNMENTS submissions (the release filled with the instructor's solution,
as samples/generate.py does; by default 12 x 3 = 36 notebooks) into a temporary folder, then
grades them twice, each into a fresh course directory with its own gradebook:

1. nbgrader's own CLI, serially: `nbgrader generate_assignment` (untimed set-up), then
   `nbgrader autograde A` for each assignment (timed);
2. `python -m grader grade FOLDER` with its defaults (local workers = cores), timed as a whole,
   its own set-up (assignments into the gradebook, the grading template) included.

It prints both wall times, their ratio (ours / nbgrader) and the load average, and fails if
either run graded fewer notebooks than it was given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "samples"))
import generate  # noqa: E402  (samples/generate.py, not a package)

DEFAULT_ASSIGNMENTS = ("00_gradient_checking", "02_batchnorm_forward", "03_batchnorm_backward")


def write_class(folder: Path, assignments, students: int) -> int:
    """STUDENTS complete submissions of each assignment under folder; returns the count."""
    for assignment in assignments:
        nb = generate.filled_release(assignment)
        for number in range(1, students + 1):
            path = folder / f"s{number:02d}" / assignment / f"{assignment}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
    return students * len(assignments)


def env() -> dict[str, str]:
    """Our environment with this interpreter's bin first on PATH (nbgrader runs alembic)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """(seconds ``cmd`` took, its stdout); raises with its output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def nbgrader_serial(folder: Path, course: Path, assignments) -> tuple[float, int]:
    """(seconds of the autograde runs, notebooks autograded) with nbgrader's CLI."""
    course.mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.course_id = 'normlab'\n"
        "c.Execute.timeout = 120\n"
    )
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    for assignment in assignments:
        shutil.copytree(ROOT / "solutions" / assignment, course / "source" / assignment)
        run([nbgrader, "generate_assignment", assignment, "--force"], course)
    shutil.copytree(folder, course / "submitted")
    seconds = sum(run([nbgrader, "autograde", assignment], course)[0] for assignment in assignments)
    return seconds, len(list((course / "autograded").glob("*/*/*.ipynb")))


def ours(folder: Path, course: Path) -> tuple[float, int]:
    """(seconds, notebooks graded without error) of `python -m grader grade` with its
    defaults."""
    cmd = [sys.executable, "-m", "grader", "grade", str(folder), "--course-dir", str(course)]
    seconds, out = run(cmd, ROOT)
    errors = [line for line in out.splitlines() if "ERROR:" in line]
    for line in errors:
        print(f"  {line}")
    return seconds, len(list((course / "autograded").glob("*/*/*.ipynb"))) - len(errors)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--assignments", nargs="+", default=list(DEFAULT_ASSIGNMENTS))
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="normlab-bench-"))
    try:
        folder = scratch / "class"
        count = write_class(folder, args.assignments, args.students)
        print(f"{count} notebooks: {args.students} students x {', '.join(args.assignments)}")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        serial, serial_done = nbgrader_serial(folder, scratch / "nbgrader-course", args.assignments)
        print(f"nbgrader autograde, serial:  {serial:7.1f} s ({serial_done} notebooks)")
        fast, fast_done = ours(folder, scratch / "normlab-course")
        print(f"python -m grader grade:      {fast:7.1f} s ({fast_done} notebooks)")
        print(f"ratio (ours / nbgrader):     {fast / serial:7.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0 if serial_done == fast_done == count else 1
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
