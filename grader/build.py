"""Build the student release: solutions/ -> notebooks/ through nbgrader's generate_assignment.

``build`` regenerates notebooks/; ``stale_files`` generates into a scratch folder and compares,
which is what ``build --check`` (and CI) uses. ``make_template`` generates the gradebook and
release pair that grading workers copy.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory

from grader.course import Course
from grader.nbgrader_glue import capture_log, create_gradebook, ensure_venv_on_path


class BuildError(RuntimeError):
    """nbgrader could not generate an assignment; the message names it."""


def generate(course: Course, out_dir: Path, db_url: str, assignments=None) -> None:
    """Run generate_assignment for each assignment into ``out_dir``, recording it in ``db_url``.

    The gradebook at db_url receives the assignment, its notebooks and its cells (hidden tests
    included) — that is what grading restores test cells from.
    """
    ensure_venv_on_path()
    config = course.nbgrader_config(release_dir=out_dir, db_url=db_url)
    for assignment in assignments or course.assignments():
        config.CourseDirectory.assignment_id = assignment
        config.GenerateAssignment.force = True
        coursedir = CourseDirectory(config=config)
        converter = GenerateAssignment(coursedir=coursedir, config=config)
        errors = capture_log(converter, f"build.{assignment}")
        try:
            converter.start()
        except Exception as exc:  # nbgrader raises NbGraderException and friends
            detail = "\n  ".join(errors.messages) or str(exc)
            raise BuildError(f"nbgrader could not generate {assignment!r}:\n  {detail}") from exc


def _release_into(course: Course, scratch: Path) -> Path:
    return make_template(course, scratch).parent / "release"


def build(course: Course) -> list[str]:
    """Regenerate notebooks/<assignment>/ for every assignment of solutions/. Returns their ids.

    Folders of notebooks/ that solutions/ does not have are left alone (``build --check``
    lists them as extra); nothing else is deleted.
    """
    with tempfile.TemporaryDirectory(prefix="normlab-build-") as tmp:
        fresh = _release_into(course, Path(tmp))
        for assignment in course.assignments():
            target = course.release_dir / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(fresh / assignment, target)
    return course.assignments()


def stale_files(course: Course) -> list[str]:
    """Release files that differ from a fresh build (missing, extra or changed); [] if none."""
    with tempfile.TemporaryDirectory(prefix="normlab-build-") as tmp:
        fresh = _release_into(course, Path(tmp))
        return _differences(fresh, course.release_dir)


def _differences(fresh: Path, committed: Path) -> list[str]:
    def files(base: Path) -> set[str]:
        return (
            {
                str(p.relative_to(base))
                for p in base.rglob("*")
                if p.is_file() and ".ipynb_checkpoints" not in p.parts
            }
            if base.exists()
            else set()
        )

    new, old = files(fresh), files(committed)
    changed = [
        f for f in sorted(new & old) if not filecmp.cmp(fresh / f, committed / f, shallow=False)
    ]
    return (
        [f"missing: {f}" for f in sorted(new - old)]
        + [f"extra: {f}" for f in sorted(old - new)]
        + [f"changed: {f}" for f in changed]
    )


def make_template(course: Course, directory: Path, assignments=None) -> Path:
    """Generate a grading template into ``directory``: ``gradebook.db`` (assignments, notebooks,
    cells with hidden tests, no students) and ``release/``, the release built with it.

    Returns the template gradebook's path; every grading worker grades against a private copy.
    """
    db = directory / "gradebook.db"
    create_gradebook(db)
    generate(course, directory / "release", f"sqlite:///{db}", assignments)
    return db


def template_release(template_db: Path, assignment: str, notebook: str) -> Path:
    """The release notebook that was generated together with ``template_db``."""
    return template_db.parent / "release" / assignment / f"{notebook}.ipynb"
