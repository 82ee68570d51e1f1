"""What a course hands to its students: the release, the lessons' library, and how to install it.

``bundle(course, out)`` writes into ``out``:

* ``notebooks/`` — the release (``python -m grader build``'s output), as committed;
* ``utils/`` — the library the notebooks import, without ``utils/checks/hidden/`` (the hidden
  cases and checks, which only the grader's checker reads);
* ``README.md``, ``Makefile``, ``pyproject.toml``, ``environment.yml`` — the students' own,
  from ``grader/bundle_files/`` (``pyproject.toml.in``: a name ruff does not read as its
  configuration): they install ``utils`` and what the notebooks need (the
  course's pins), never the grader, nbgrader or the test tools.

Nothing else: no ``solutions/``, ``samples/``, ``grader/`` or ``tests/``. As a last guard, a
bundled file holding an nbgrader solution or hidden-test marker stops the bundle.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from string import Template

from grader.course import Course
from grader.markup import has_markers

TEMPLATES = Path(__file__).resolve().parent / "bundle_files"
COPIED = ("notebooks", "utils")
CHECKER_ONLY = ("utils/checks/hidden",)
"""Folders of the copied tree that only the grader's checker reads: left out of the bundle."""
SKIPPED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".ipynb_checkpoints", ".*", "*.egg-info", ".course"
)
# What the grader and its tests need and a student does not (project dependency names).
GRADER_ONLY = frozenset({"nbgrader", "pyyaml", "distributed"})
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class BundleError(RuntimeError):
    """The bundle cannot be written; the message names the file or folder and the fix."""


def bundle(course: Course, out: Path, make_zip: bool = False) -> Path:
    """Write the student bundle into ``out`` (a new or empty folder); with ``make_zip`` also
    ``out`` + ``.zip`` (top folder ``out``'s name). Returns the folder, or the zip.

    Raises BundleError when ``out`` holds files, the source tree lacks ``notebooks/`` or
    ``utils/``, or a bundled file carries solution or hidden-test markup.
    """
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty folder: choose a new --out")
    for name in COPIED:
        if not (course.root / name).is_dir():
            raise BundleError(f"{course.root / name} is missing: is --root the course's tree?")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copytree(course.root / name, out / name, ignore=SKIPPED, symlinks=True)
    for name in CHECKER_ONLY:
        shutil.rmtree(out / name, ignore_errors=True)
    for name, text in student_files(course).items():
        (out / name).write_text(text, encoding="utf-8")
    leaks = marked_files(out)
    if leaks:
        shutil.rmtree(out)
        raise BundleError(
            "solution or hidden-test markup in " + ", ".join(leaks) + ": run `grader build`"
        )
    if make_zip:
        return Path(shutil.make_archive(str(out), "zip", out.parent, out.name))
    return out


def student_files(course: Course) -> dict[str, str]:
    """README.md, Makefile, pyproject.toml and environment.yml of the bundle, by name."""
    project = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = student_requirements(project["project"].get("dependencies", []))
    values = {
        "version": project["project"].get("version", "0"),
        "requires_python": project["project"].get("requires-python", ">=3.11"),
        "dependencies": "\n".join(f'    "{r}",' for r in requirements),
        "lessons": lesson_list(course),
    }
    files = {}
    files["Makefile"] = (TEMPLATES / "Makefile").read_text(encoding="utf-8")
    for name, template in (("README.md", "README.md"), ("pyproject.toml", "pyproject.toml.in")):
        text = (TEMPLATES / template).read_text(encoding="utf-8")
        files[name] = Template(text).substitute(values)
    conda = {**values, "dependencies": "\n".join(f"      - {r}" for r in requirements)}
    files["environment.yml"] = Template(
        (TEMPLATES / "environment.yml").read_text(encoding="utf-8")
    ).substitute(conda)
    return files


def student_requirements(dependencies: list[str]) -> list[str]:
    """The course's requirement strings without those only the grader needs, pins kept."""
    return [d for d in dependencies if _requirement_name(d) not in GRADER_ONLY]


def _requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return match.group(1).lower().replace("_", "-") if match else requirement


def lesson_list(course: Course) -> str:
    """A markdown list of the lesson notebooks, by path."""
    notebooks = sorted(course.release_dir.glob("*/*.ipynb"))
    return "\n".join(f"- `{p.relative_to(course.root).as_posix()}`" for p in notebooks)


def marked_files(folder: Path) -> list[str]:
    """Files under ``folder`` that hold a BEGIN/END SOLUTION or HIDDEN TESTS marker."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and has_markers(p.read_text(encoding="utf-8", errors="replace"))
    )
