"""Find the submissions in a folder or an LMS zip, and say what could not be mapped.

Two layouts are understood, in a folder or inside a zip (any leading folders are ignored):

* ``<student>/<assignment>/<notebook>.ipynb`` — nbgrader's submitted/ layout;
* Canvas-style flat names ``<name>[_LATE]_<userid>_<attachid>_<notebook>[-N].ipynb`` — the
  assignment is the one that has a notebook of that name; Canvas's ``-N`` resubmission suffix
  is dropped and the highest attachment id wins.

Anything else is reported, not guessed: other files (a student's ``utils.py`` is never graded),
unknown assignments, names that are not safe student ids, duplicates.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CANVAS = re.compile(
    r"^(?P<name>[A-Za-z0-9.-]+?)(?:_LATE)?_(?P<userid>\d+)_(?P<attach>\d+)_(?P<file>.+?)(?:-\d+)?$"
)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_NOTEBOOK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Submission:
    """One notebook to grade, at ``path`` (named ``<notebook>.ipynb``); ``origin`` is its name
    in the folder or zip; ``rank`` orders duplicates (Canvas attachment id), highest wins."""

    student: str
    assignment: str
    notebook: str
    path: Path
    origin: str
    lms_user_id: str | None = None
    rank: int = 0


def collect(source: Path, notebooks: dict[str, list[str]], workdir: Path):
    """Submissions under ``source`` (a folder or a .zip) for the assignments in ``notebooks``
    (assignment -> its notebook names). Zip members are extracted into ``workdir``.

    Returns (submissions sorted by student and assignment, problems as readable lines).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such folder or zip: {source}")
    if source.is_dir():
        entries = [
            (str(p.relative_to(source).as_posix()), p)
            for p in sorted(source.rglob("*"))
            if p.is_file()
        ]
    elif zipfile.is_zipfile(source):
        entries = list(_extract(source, workdir))
    else:
        raise ValueError(f"{source} is neither a folder nor a zip file")

    found, problems = [], _empty_folders(source) if source.is_dir() else []
    for name, path in entries:
        submission, problem = _map_entry(name, path, notebooks)
        if submission:
            found.append(submission)
        elif problem:
            problems.append(problem)
    kept, duplicates = _latest(found)
    return [_staged(sub, workdir) for sub in kept], problems + duplicates


def _empty_folders(source: Path) -> list[str]:
    """A line for each student or assignment folder that holds no notebook at all."""
    problems = []
    for folder in sorted(p for p in source.glob("*") if p.is_dir()):
        if folder.name.startswith(".") or folder.name in IGNORED_PARTS:
            continue
        if not any(folder.rglob("*.ipynb")):
            problems.append(f"nothing to grade in {folder.name}/: it holds no notebook")
    return problems


def _extract(archive: Path, workdir: Path):
    """(member name, extracted path) for each file in the zip; paths never leave ``workdir``."""
    with zipfile.ZipFile(archive) as zf:
        for index, info in enumerate(zf.infolist()):
            if info.is_dir():
                continue
            target = workdir / f"{index:06d}" / PurePosixPath(info.filename).name
            if info.file_size <= MAX_NOTEBOOK_BYTES and info.filename.endswith(".ipynb"):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
            yield info.filename, target


def _map_entry(name: str, path: Path, notebooks: dict[str, list[str]]):
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return None, f"ignored {name}: a path with '..' in it"
    if any(p in IGNORED_PARTS or p.startswith(".") for p in parts):
        return None, None
    if not name.endswith(".ipynb"):
        return None, f"ignored {name}: only notebooks are graded"
    if not path.exists():
        return None, f"ignored {name}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB"
    stem = PurePosixPath(name).stem
    canvas = CANVAS.match(stem) if len(parts) < 3 else None
    if canvas:
        return _map_canvas(name, path, canvas, notebooks)
    if len(parts) < 3:
        return None, (
            f"cannot map {name}: expected <student>/<assignment>/<notebook>.ipynb "
            "or a Canvas name <name>_<userid>_<attachid>_<notebook>.ipynb"
        )
    student, assignment = parts[-3], parts[-2]
    if assignment not in notebooks:
        return None, f"cannot map {name}: unknown assignment {assignment!r}"
    if not SAFE_ID.match(student):
        return None, f"cannot map {name}: {student!r} is not a usable student id"
    return Submission(student, assignment, path.stem, path, name), None


def _map_canvas(name, path, match, notebooks):
    notebook = match["file"]
    owners = [a for a, names in notebooks.items() if notebook in names]
    if not owners:
        return None, f"cannot map {name}: no assignment has a notebook named {notebook}.ipynb"
    student, rank = match["name"], int(match["attach"])
    return Submission(student, owners[0], notebook, path, name, match["userid"], rank), None


def _latest(found: list[Submission]):
    """One submission per (student, assignment, notebook file): the highest rank wins."""
    best: dict[tuple, Submission] = {}
    problems = []
    for sub in sorted(found, key=lambda s: (s.student, s.assignment, -s.rank, s.origin)):
        key = (sub.student, sub.assignment, sub.notebook)
        if key in best:
            problems.append(
                f"ignored {sub.origin}: {best[key].origin} is a later submission "
                f"of the same notebook"
            )
        else:
            best[key] = sub
    return list(best.values()), problems


def _staged(sub: Submission, workdir: Path) -> Submission:
    """``sub`` with its file at a path named after the notebook it is graded as."""
    if sub.path.stem == sub.notebook:
        return sub
    target = workdir / "staged" / sub.student / sub.assignment / f"{sub.notebook}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sub.path, target)
    return Submission(
        sub.student, sub.assignment, sub.notebook, target, sub.origin, sub.lms_user_id, sub.rank
    )
