"""CPU per graded notebook, lesson by lesson, of `python -m grader grade` vs plain nbgrader.

    python bench/bench_course.py [--lessons A ...] [--students 1 3] [--sweep-lesson A] [--no-cold]
                                 [--keep DIR]

For every lesson (default: all of solutions/), the release filled with the instructor's solution
(as samples/generate.py does) is handed in by 1 and by 3 students, and each class is graded by
each grader, each into a fresh course directory with its own gradebook:

1. plain serial nbgrader: `nbgrader generate_assignment`, then `nbgrader autograde`;
2. ours: `python -m grader grade --workers 1` (kernels forked from a warm zygote:
   grader.zygote). One worker, so what each worker process pays once (imports, its zygote)
   cancels between the two class sizes as it does over a large class: with the default of one
   worker per core, 1 student starts one worker and 3 students start two, and the second
   worker's start-up was counted as notebook cost;
3. ours with every kernel started as a new process (`NORMLAB_WARM_KERNELS=0`; --no-cold skips
   it): what the warm kernels save.

CPU is user + system time of every process involved (the graders, their workers and kernels:
``RUSAGE_CHILDREN`` deltas around each run). The difference between the two class sizes divided
by the difference in students is the marginal CPU of one more notebook, what a large course
pays; set-up paid once per run cancels out. Prints the table (lesson | ours | ours without warm
kernels | nbgrader | ratio of ours to nbgrader),
the course total for one student, the projection for 500 students x every lesson on 16 cores,
and a worker sweep: CPU per notebook of one lesson graded with --workers 1 and 2, which should
not grow with the workers. With W workers the two classes hold W times as many students, so
both runs start all W workers and their start-up cancels as before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grading import COLD, ROOT, cpu_of, nbgrader_serial, write_class  # noqa: E402
from bench_grading import ours as grading_ours  # noqa: E402

PROJECTED_STUDENTS = 500
PROJECTED_CORES = 16
SWEEP_WORKERS = (1, 2)
DEFAULT_SWEEP_LESSON = "02_batchnorm_forward"


@dataclass(frozen=True)
class Row:
    """Marginal CPU-s of one more notebook of ``lesson``, graded by ours and by nbgrader."""

    lesson: str
    ours: float
    nbgrader: float
    cold: float = float("nan")
    """Ours with every kernel started as a new process (nan: not measured)."""

    @property
    def ratio(self) -> float:
        return self.ours / self.nbgrader if self.nbgrader else float("nan")


def lessons() -> list[str]:
    """Every assignment of the course: solutions/<assignment>/<notebook>.ipynb."""
    return sorted({p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb")})


def assignments_of(folder: Path) -> list[str]:
    """The assignments handed in under ``folder`` (<student>/<assignment>/...)."""
    return sorted({p.name for p in folder.glob("*/*")})


def ours(folder: Path, course: Path, workers: int | None = None, extra_env=None) -> int:
    """Grade ``folder`` with `python -m grader grade`; returns the notebooks graded cleanly."""
    assignments = tuple(assignments_of(folder))
    return grading_ours(folder, course, workers, extra_env, assignments, tqdm.write)[1]


def one_worker(folder: Path, course: Path) -> int:
    """``ours`` in one worker process (the table's runs)."""
    return ours(folder, course, 1)


def cold(folder: Path, course: Path) -> int:
    """``ours`` in one worker, every kernel started as a new process (no warm zygote)."""
    return ours(folder, course, 1, COLD)


def nbgrader(folder: Path, course: Path) -> int:
    return nbgrader_serial(folder, course, assignments_of(folder))[1]


def class_cpu(scratch: Path, lesson: str, students: int, grader, *options) -> float:
    """CPU-s of grading ``students`` filled submissions of ``lesson`` with ``grader``."""
    name = f"{lesson}-{grader.__name__}-{students}-{'-'.join(map(str, options))}"
    folder, course = scratch / name / "class", scratch / name / "course"
    count = write_class(folder, [lesson], students)
    cpu, done = cpu_of(grader, folder, course, *options)
    if done != count:
        raise SystemExit(f"{name}: {grader.__name__} graded {done} of {count} notebooks")
    return cpu


def marginal(cpu_small: float, cpu_large: float, small: int, large: int) -> float:
    """CPU-s of one more notebook: the slope between two class sizes."""
    return (cpu_large - cpu_small) / (large - small)


def projection_minutes(course_cpu: float, students=PROJECTED_STUDENTS, cores=PROJECTED_CORES):
    """Wall minutes for ``students`` x the whole course (``course_cpu`` CPU-s per student) on
    ``cores`` fully busy cores."""
    return students * course_cpu / cores / 60


def table(rows: list[Row]) -> str:
    """The per-lesson table, the course total for one student and the 500-student projection."""
    total = Row(
        "one student, all lessons",
        sum(r.ours for r in rows),
        sum(r.nbgrader for r in rows),
        sum(r.cold for r in rows),
    )
    lines = [
        "| lesson | ours CPU-s / notebook | ours, no warm kernels | nbgrader | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.lesson} | {r.ours:.1f} | {r.cold:.1f} | {r.nbgrader:.1f} | {r.ratio:.2f} |"
        for r in [*rows, total]
    ]
    students, cores = PROJECTED_STUDENTS, PROJECTED_CORES
    lines.append(
        f"| {students} students on {cores} cores | {projection_minutes(total.ours):.1f} min | "
        f"{projection_minutes(total.cold):.1f} min | {projection_minutes(total.nbgrader):.1f} "
        "min | |"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", nargs="+", default=None, help="default: every lesson")
    parser.add_argument("--students", nargs=2, type=int, default=[1, 3], metavar=("SMALL", "LARGE"))
    parser.add_argument("--sweep-lesson", default=DEFAULT_SWEEP_LESSON, help="'' skips it")
    parser.add_argument("--no-cold", action="store_true", help="skip ours without warm kernels")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    small, large = sorted(args.students)
    if small == large:
        parser.error("--students needs two different class sizes")
    chosen = args.lessons or lessons()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="normlab-bench-course-"))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        rows = []
        graders = (one_worker, nbgrader) if args.no_cold else (one_worker, cold, nbgrader)
        runs = [(lesson, g) for lesson in chosen for g in graders]
        cpu = {}
        for lesson, grader in tqdm(runs, desc="lessons x graders", unit="run"):
            sizes = [class_cpu(scratch, lesson, n, grader) for n in (small, large)]
            cpu[lesson, grader] = marginal(*sizes, small, large)
            if grader is nbgrader:
                row = Row(lesson, cpu[lesson, one_worker], cpu[lesson, nbgrader])
                rows.append(Row(**{**row.__dict__, "cold": cpu.get((lesson, cold), row.cold)}))
                tqdm.write(
                    f"{lesson}: ours {row.ours:.1f}, no warm kernels {rows[-1].cold:.1f}, "
                    f"nbgrader {row.nbgrader:.1f}"
                )
        print(table(rows))
        if args.sweep_lesson:
            print(f"worker sweep, {args.sweep_lesson} (CPU-s per notebook):")
            for workers in tqdm(SWEEP_WORKERS, desc="workers", unit="run"):
                lesson, counts = args.sweep_lesson, (small * workers, large * workers)
                sizes = [class_cpu(scratch, lesson, n, ours, workers) for n in counts]
                print(f"  --workers {workers}: {marginal(*sizes, *counts):.1f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
