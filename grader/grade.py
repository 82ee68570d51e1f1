"""Grade many submissions: collect them, grade each in a stateless worker, record each result.

The course gradebook gets the assignments first (generate_assignment), and a template
gradebook with its release is generated into a scratch folder; every worker grades against a
private copy of that template, in its own process (``--workers N``, a local process pool), and
hands back a picklable SubmissionResult. Only this process writes the course gradebook, one
result at a time, as results arrive — nbgrader's shared-SQLite trap (its issue #174) never
arises.

With ``--scheduler tcp://HOST:PORT`` the same ``grade_job`` calls go to a Dask
distributed cluster instead. Its workers must see the course tree, the run's scratch folder
(template and collected submissions, under ``worker.grading_root()``) and the Python
environment at the same paths as this process — one machine, or a shared filesystem; that is
checked on every worker before anything is submitted.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from grader.build import make_template
from grader.collect import Submission, collect
from grader.confine import WEAKER
from grader.course import Course
from grader.gradebook import recorder, register_assignments
from grader.results import SubmissionResult
from grader.score import points_text
from grader.worker import GradeJob, grade_job, grading_root


class SchedulerError(RuntimeError):
    """The Dask cluster cannot be used (unreachable, or its workers cannot see our files)."""


@dataclass(frozen=True)
class GradeOptions:
    workers: int = 1
    timeout: int = 60
    memory_limit: float = 4.0
    scheduler: str | None = None


@dataclass
class GradeRun:
    """What a run graded, and what it could not map (one readable line each)."""

    results: list[SubmissionResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def grade(
    course: Course,
    source: Path,
    assignments: list[str] | None = None,
    options: GradeOptions = GradeOptions(),
    progress: bool = True,
) -> GradeRun:
    """Grade every submission under ``source`` (folder or zip) of ``assignments`` (default: all
    assignments of the course) and record the results in the course directory."""
    chosen = _chosen_assignments(course, assignments)
    if options.scheduler:
        _connect(options.scheduler).close()  # an unreachable cluster fails before any work
    run = GradeRun()
    with tempfile.TemporaryDirectory(prefix="run-", dir=grading_root()) as tmp:
        submissions, run.problems = _collect_chosen(course, source, chosen, Path(tmp))
        if submissions:
            private = (str(course.course_dir), str(Path(source).resolve()))
            run.results = _grade_all(course, submissions, Path(tmp), options, progress, private)
    return run


def _collect_chosen(course: Course, source: Path, chosen: list[str], scratch: Path):
    notebooks = {a: [p.stem for p in course.source_notebooks(a)] for a in course.assignments()}
    submissions, problems = collect(source, notebooks, scratch / "collected")
    skipped = [s for s in submissions if s.assignment not in chosen]
    if skipped:
        problems.append(f"skipped {len(skipped)} submission(s) of assignments not asked for")
    return [s for s in submissions if s.assignment in chosen], problems


def _grade_all(
    course,
    submissions: list[Submission],
    scratch: Path,
    options: GradeOptions,
    progress: bool,
    private: tuple[str, ...],
) -> list[SubmissionResult]:
    """Grade in workers, record here as results arrive; results sorted by student."""
    needed = sorted({s.assignment for s in submissions})
    register_assignments(course, needed, scratch)
    template_db = make_template(course, scratch / "template", needed)

    def job(sub: Submission) -> GradeJob:
        return GradeJob(
            course.root,
            sub.assignment,
            sub.student,
            sub.path,
            template_db,
            timeout=options.timeout,
            memory_limit=options.memory_limit,
            private=private,
        )

    results = []
    bar = tqdm(total=len(submissions), desc="grading", unit="notebook", disable=not progress)
    with bar, recorder(course) as record:
        for sub, result in run_jobs(submissions, job, options.workers, options.scheduler):
            record(result, sub.path, sub.lms_user_id)
            results.append(result)
            bar.set_postfix_str(f"{sub.student}/{sub.assignment}", refresh=False)
            bar.update()
    return sorted(results, key=lambda r: (r.student, r.assignment, r.notebook))


def _chosen_assignments(course: Course, assignments: list[str] | None) -> list[str]:
    known = course.assignments()
    unknown = sorted(set(assignments or []) - set(known))
    if unknown:
        raise ValueError(
            f"unknown assignment(s) {', '.join(unknown)}; the course has: "
            f"{', '.join(known) or 'none (solutions/ is empty)'}"
        )
    return list(assignments or known)


def run_jobs(
    items: list, job: Callable[[object], GradeJob], workers: int, scheduler: str | None = None
) -> Iterator[tuple[object, SubmissionResult]]:
    """(item, grade_job(job(item))) for each item, as they finish; ``workers`` > 1 uses
    that many local processes, ``scheduler`` a Dask cluster. A worker that fails unexpectedly
    yields an error result."""
    jobs = [(item, job(item)) for item in items]
    if scheduler:
        yield from _run_on_dask(jobs, scheduler)
        return
    if workers <= 1:
        for item, graded in jobs:
            yield item, _safely(graded)
        return
    context = multiprocessing.get_context("spawn")  # no forked copies of sqlite/zmq state
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(grade_job, graded): (item, graded) for item, graded in jobs}
        for future in as_completed(futures):
            item, graded = futures[future]
            try:
                yield item, future.result()
            except Exception as exc:  # a worker process died: this submission only
                yield item, graded.crashed(exc)


def _run_on_dask(jobs: list, scheduler: str) -> Iterator[tuple[object, SubmissionResult]]:
    from distributed import as_completed as dask_completed

    with _connect(scheduler) as client:
        paths = {str(p) for _, j in jobs for p in (j.notebook_path, j.template_db)}
        _check_workers_see(client, paths, scheduler)
        futures = {
            client.submit(grade_job, graded, pure=False): (item, graded) for item, graded in jobs
        }
        for future in dask_completed(futures, loop=client.loop):
            item, graded = futures[future]
            try:
                yield item, future.result()
            except Exception as exc:  # a worker died (KilledWorker) or a bug of ours
                yield item, graded.crashed(exc)


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``, or SchedulerError."""
    from distributed import Client

    try:
        return Client(scheduler, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc


def _check_workers_see(client, paths: set[str], scheduler: str) -> None:
    """SchedulerError unless the cluster has workers and each of them sees every path."""
    if not client.scheduler_info().get("workers"):
        raise SchedulerError(f"the Dask scheduler at {scheduler} has no workers")
    missing = client.run(_missing_paths, sorted(paths))
    blind = {worker: paths for worker, paths in missing.items() if paths}
    if blind:
        worker, paths = sorted(blind.items())[0]
        raise SchedulerError(
            f"Dask worker {worker} cannot see {paths[0]} (and {len(paths) - 1} more): grading on a "
            "cluster needs the course and the scratch folder at the same paths on every worker"
        )


def _missing_paths(paths: list[str]) -> list[str]:
    return [p for p in paths if not Path(p).exists()]


def _safely(graded: GradeJob) -> SubmissionResult:
    try:
        return grade_job(graded)
    except Exception as exc:  # a bug of ours must not stop the run for everyone else
        return graded.crashed(exc)


def summary_table(results: Iterable[SubmissionResult]) -> str:
    """student, assignment, score/max and, for a failed submission, the reason."""
    rows = [("student", "assignment", "score", "note")]
    for r in results:
        rows.append(
            (
                r.student,
                r.assignment,
                f"{points_text(r.score)}/{points_text(r.max_score)}",
                f"ERROR: {r.error}" if r.error else _pending(r),
            )
        )
    return format_table(rows)


def confinement_summary(results: Iterable[SubmissionResult]) -> str:
    """Which confinement the graded kernels ran under, one line per kind the run saw; a kind
    that lacks Landlock or seccomp says so in capitals (it starts with ``WEAKER``)."""
    kinds = sorted({r.confinement for r in results if r.confinement})
    lines = [f"kernels confined by: {kind}" for kind in kinds if not kind.startswith(WEAKER)]
    lines += [
        f"WARNING: CONFINEMENT IS WEAKER than the design assumes: {kind.removeprefix(WEAKER)}. "
        "A hostile submission may reach files, processes or the network: grade inside a VM "
        "or container (docs/grading-safety.md)"
        for kind in kinds
        if kind.startswith(WEAKER)
    ]
    return "\n".join(lines)


def _pending(result: SubmissionResult) -> str:
    waiting = [t for t in result.tests if t.score is None]
    return f"{len(waiting)} written answer(s) to grade by hand" if waiting else ""


def format_table(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
