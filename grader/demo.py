"""The instructor's whole round on the bundled sample class: build, grade, export, feedback,
class overview.

The release is built into the course directory (not over notebooks/, where a learner may be
working), samples/ is graded into the course directory, and the grade table, the CSVs, the
feedback folder and the class overview page are printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grader.build import make_template, stale_files
from grader.course import Course
from grader.expected import differences, load_plan
from grader.export import export
from grader.feedback import write_feedback
from grader.grade import GradeOptions, GradeRun, format_table, grade, summary_table
from grader.gradebook import assignment_scores
from grader.overview import write_overview


class DemoError(RuntimeError):
    """The demo cannot run (no samples); the message says how to get them."""


@dataclass
class DemoOutcome:
    run: GradeRun
    release: Path
    grades_csv: Path
    tests_csv: Path
    feedback: list[Path]
    stale: list[str]
    overview: Path
    differences: list[str] | None = None  # None: no expected.yaml to compare with


def demo(
    course: Course,
    samples: Path,
    options: GradeOptions | None = None,
    progress: bool = True,
    expected: Path | None = None,
) -> DemoOutcome:
    """Build, grade ``samples``, export, write feedback and the class overview; with
    ``expected`` (an
    expected.yaml), ``differences`` lists every test that scored otherwise (see
    ``grader.expected``)."""
    samples = Path(samples)
    options = options or GradeOptions(workers=2)
    if not any(samples.glob("*/*/*.ipynb")):
        raise DemoError(
            f"no sample submissions in {samples} "
            "(<student>/<assignment>/<notebook>.ipynb); `make samples` writes them"
        )
    release = make_template(course, course.course_dir / "build").parent / "release"
    stale = stale_files(course)
    run = grade(course, samples, options=options, progress=progress)
    grades_csv, tests_csv = export(course)
    found = None
    if expected is not None:
        found = differences(run.results, load_plan(expected), course.solutions_dir)
    feedback = write_feedback(course, workers=options.workers)
    return DemoOutcome(
        run, release, grades_csv, tests_csv, feedback, stale, write_overview(course), found
    )


def grade_matrix(course: Course) -> str:
    """Students x assignments, ``score/max`` in each cell, from the gradebook."""
    rows = assignment_scores(course)
    assignments = sorted({a for _, a, _, _ in rows})
    table = {(s, a): f"{score:g}/{top:g}" for s, a, score, top in rows}
    students = sorted({s for s, _, _, _ in rows})
    return format_table(
        [("student", *assignments)] + [(s, *(table[s, a] for a in assignments)) for s in students]
    )


def describe(course: Course, outcome: DemoOutcome) -> str:
    """What a person reads after ``python -m grader demo``."""
    parts = [summary_table(outcome.run.results), "", grade_matrix(course), ""]
    parts += [f"note: {p}" for p in outcome.run.problems]
    if outcome.stale:
        parts.append("note: notebooks/ differs from a fresh build; run `python -m grader build`")
    parts += [
        f"release built in   {outcome.release}",
        f"grades             {outcome.grades_csv}",
        f"per-test grades    {outcome.tests_csv}",
        f"feedback ({len(outcome.feedback)} files) {course.course_dir / 'feedback'}",
        f"class overview     {outcome.overview}",
        f"gradebook          {course.db_path} (formgrader: cd {course.course_dir} && jupyter lab)",
    ]
    return "\n".join(parts + _verdict(outcome.differences))


def _verdict(found: list[str] | None) -> list[str]:
    """The lines that say whether the samples scored as expected.yaml says."""
    if found is None:
        return ["no expected.yaml next to the samples: scores not compared"]
    if not found:
        return ["every sample scored as expected.yaml expects"]
    return [f"DIFFERENCE {line}" for line in found] + [
        f"{len(found)} difference(s) from expected.yaml: the grader or the samples are wrong"
    ]
