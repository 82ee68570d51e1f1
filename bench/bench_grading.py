"""Grading one class with plain serial nbgrader vs `python -m grader grade`: wall time and CPU.

    python bench/bench_grading.py [--students 12] [--assignments A ...] [--no-cold] [--sweep]
                                  [--keep DIR]

Writes STUDENTS x ASSIGNMENTS submissions (the release filled with the instructor's solution,
as samples/generate.py does; by default 12 x 3 = 36 notebooks) into a temporary folder, then
grades them, each run into a fresh course directory with its own gradebook:

1. nbgrader's own CLI, serially: `nbgrader generate_assignment` (untimed set-up), then
   `nbgrader autograde A` for each assignment (timed);
2. `python -m grader grade FOLDER` with its defaults (local workers = cores, kernels forked
   from a warm zygote: grader.zygote), timed as a whole, its own set-up (assignments into the
   gradebook, the grading template) included;
3. the same with every kernel started as a new process (`NORMLAB_WARM_KERNELS=0`; skipped
   with --no-cold), what the zygote saves;
4. with --sweep: ours again with `--workers 1 .. cores`, notebooks per minute for each.

CPU is user + system time of every process involved (graders, workers, zygotes, kernels:
``RUSAGE_CHILDREN`` deltas around each run). It prints the wall times and their ratio (ours /
nbgrader), CPU-s per notebook of each run and their ratio, the projection for 5,500 notebooks
(500 students x 11 lessons) on 16 cores from our CPU per notebook, the sweep and the load
average; it fails if a run graded fewer notebooks than it was given.
"""

from __future__ import annotations

import argparse
import os
import resource
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


PROJECTED_NOTEBOOKS = 500 * 11
PROJECTED_CORES = 16
COLD = {"NORMLAB_WARM_KERNELS": "0"}
"""Ours with every grading kernel started as a new process (no warm zygote)."""


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment with this interpreter's bin first on PATH (nbgrader runs alembic)."""
    bin_dir = str(Path(sys.executable).parent)
    path = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, **(extra or {})}


def children_cpu() -> float:
    """User + system seconds of every waited-for child process so far (their children too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(call, *args) -> tuple[float, object]:
    """(CPU-s the child processes of ``call(*args)`` used, what it returned)."""
    before = children_cpu()
    returned = call(*args)
    return children_cpu() - before, returned


def projection_minutes(cpu_per_notebook: float) -> float:
    """Wall minutes for ``PROJECTED_NOTEBOOKS`` on ``PROJECTED_CORES`` fully busy cores."""
    return PROJECTED_NOTEBOOKS * cpu_per_notebook / PROJECTED_CORES / 60


def run(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> tuple[float, str]:
    """(seconds ``cmd`` took, its stdout); raises with its output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env(extra_env), capture_output=True, text=True)
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


def ours(
    folder: Path,
    course: Path,
    workers: int | None = None,
    extra_env: dict | None = None,
    assignments: tuple[str, ...] = (),
    say=print,
) -> tuple[float, int]:
    """(seconds, notebooks graded without error) of `python -m grader grade` with its
    defaults (or ``workers`` local workers, ``extra_env`` in its environment, only
    ``assignments``); ``say`` prints each error line."""
    cmd = [sys.executable, "-m", "grader", "grade", str(folder), "--course-dir", str(course)]
    for assignment in assignments:
        cmd += ["--assignment", assignment]
    if workers:
        cmd += ["--workers", str(workers)]
    seconds, out = run(cmd, ROOT, extra_env)
    errors = [line for line in out.splitlines() if "ERROR:" in line]
    for line in errors:
        say(f"  {line}")
    return seconds, len(list((course / "autograded").glob("*/*/*.ipynb"))) - len(errors)


def line(name: str, seconds: float, cpu: float, done: int) -> str:
    return f"{name:<34}{seconds:7.1f} s wall, {cpu / max(done, 1):5.2f} CPU-s/notebook ({done})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--assignments", nargs="+", default=list(DEFAULT_ASSIGNMENTS))
    parser.add_argument("--no-cold", action="store_true", help="skip ours without warm kernels")
    parser.add_argument("--sweep", action="store_true", help="ours with --workers 1 .. cores")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="normlab-bench-"))
    try:
        folder = scratch / "class"
        count = write_class(folder, args.assignments, args.students)
        print(f"{count} notebooks: {args.students} students x {', '.join(args.assignments)}")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        nb_cpu, (serial, serial_done) = cpu_of(
            nbgrader_serial, folder, scratch / "nbgrader-course", args.assignments
        )
        print(line("nbgrader autograde, serial:", serial, nb_cpu, serial_done))
        cpu, (fast, fast_done) = cpu_of(ours, folder, scratch / "normlab-course")
        print(line("python -m grader grade:", fast, cpu, fast_done))
        done = [serial_done, fast_done]
        if not args.no_cold:
            cold_cpu, (cold, cold_done) = cpu_of(ours, folder, scratch / "normlab-cold", None, COLD)
            print(line("  the same, no warm kernels:", cold, cold_cpu, cold_done))
            done.append(cold_done)
        per_notebook, nb_per_notebook = cpu / max(fast_done, 1), nb_cpu / max(serial_done, 1)
        print(f"wall ratio (ours / nbgrader):     {fast / serial:7.2f}")
        print(f"CPU ratio per notebook:           {per_notebook / nb_per_notebook:7.2f}")
        print(
            f"projection, {PROJECTED_NOTEBOOKS} notebooks on {PROJECTED_CORES} cores: "
            f"{projection_minutes(per_notebook):.1f} min (nbgrader's CPU: "
            f"{projection_minutes(nb_per_notebook):.1f} min)"
        )
        if args.sweep:
            print("worker sweep (ours): workers | wall s | notebooks/min | CPU-s/notebook")
            for workers in range(1, (os.cpu_count() or 1) + 1):
                course = scratch / f"normlab-sweep-{workers}"
                sweep_cpu, (seconds, swept) = cpu_of(ours, folder, course, workers)
                print(
                    f"  {workers:2d} | {seconds:6.1f} | {60 * swept / seconds:6.1f} | "
                    f"{sweep_cpu / max(swept, 1):5.2f}"
                )
                done.append(swept)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0 if all(d == count for d in done) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
