"""Find the submissions in a folder or an LMS zip, and say what could not be mapped.

Exactly two layouts are understood, and nothing is guessed:

* ``<student>/<assignment>/<notebook>.ipynb`` — nbgrader's submitted/ layout, at exactly that
  depth (a notebook in a deeper folder is never read as another student's);
* Canvas flat names ``<name>[_LATE]_<userid>_<attachid>_<notebook>[-N].ipynb`` at the top
  level — the assignment is the one that has a notebook of that name; Canvas's ``-N``
  resubmission suffix is dropped and, among one user's attachments, the highest id wins.

Inside a zip, one folder wrapping every member (``export/...``) is allowed and dropped.

Everything else is reported, not graded: other files (a student's ``utils.py`` is never
graded), unknown assignments, names that are not safe student ids, a file in one student's
folder named like another student's LMS download, and links — symbolic or hard, in a folder
or a zip — which are never followed. Two candidates for one student's notebook (two folders
differing only in case, a folder and an LMS name, one Canvas name with two user ids) are a
conflict: neither is graded, both are reported. Every submission is graded from a private copy
made here, read without following links, so nothing can change under the grader afterwards.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from grader.text import printable_line

CANVAS = re.compile(
    r"^(?P<name>[A-Za-z0-9.-]+?)(?:_LATE)?_(?P<userid>\d+)_(?P<attach>\d+)_(?P<file>.+?)(?:-\d+)?$"
)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_NOTEBOOK_BYTES = 64 * 2**20
FOLDER_DEPTH, FLAT_DEPTH = 3, 1
NEVER_FOLLOWED = "links are never followed"


@dataclass(frozen=True)
class Submission:
    """One notebook to grade, at ``path`` (a private copy named ``<notebook>.ipynb``);
    ``origin`` is its name in the folder or zip; ``rank`` orders one LMS user's attachments
    (Canvas attachment id), highest wins."""

    student: str
    assignment: str
    notebook: str
    path: Path
    origin: str
    lms_user_id: str | None = None
    rank: int = 0


@dataclass(frozen=True)
class _Entry:
    """A file found in the source: its name there, and how to read it without links."""

    name: str
    path: Path | None = None  # a folder's file
    member: zipfile.ZipInfo | None = None  # a zip's member


def collect(source: Path, notebooks: dict[str, list[str]], workdir: Path):
    """Submissions under ``source`` (a folder or a .zip) for the assignments in ``notebooks``
    (assignment -> its notebook names), each copied into ``workdir``.

    Returns (submissions sorted by student and assignment, problems as readable one-line
    strings with control characters escaped). Raises FileNotFoundError or ValueError for a
    source that is neither a folder nor a zip.
    """
    source = Path(source)
    if source.is_symlink():
        raise ValueError(f"{source} is a symbolic link: {NEVER_FOLLOWED}; name the folder itself")
    if not source.exists():
        raise FileNotFoundError(f"no such folder or zip: {source}")
    if source.is_dir():
        entries, problems = _folder_entries(source)
        names = [e.name for e in entries]
        return _gathered(entries, names, notebooks, problems, workdir, source=source)
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            entries, problems = _zip_entries(zf)
            names = _unwrapped([e.name for e in entries], notebooks)
            return _gathered(entries, names, notebooks, problems, workdir, archive=zf)
    raise ValueError(f"{source} is neither a folder nor a zip file")


def _gathered(entries, names, notebooks, problems, workdir, source=None, archive=None):
    found = []
    for entry, name in zip(entries, names, strict=True):
        submission, problem = _map_entry(entry.name, name, notebooks)
        if submission:
            found.append((submission, entry))
        elif problem:
            problems.append(problem)
    if source is not None:
        problems = _empty_folders(source) + problems
    kept, more = _one_per_notebook(found, notebooks)
    submissions = []
    for index, (sub, entry) in enumerate(kept):
        copied, problem = _private_copy(sub, entry, workdir / f"{index:06d}", archive)
        if copied:
            submissions.append(copied)
        else:
            more.append(problem)
    return sorted(submissions, key=lambda s: (s.student, s.assignment, s.notebook)), problems + more


def _quoted(name: str) -> str:
    return printable_line(name)


def _skipped(parts: tuple[str, ...]) -> bool:
    """Operating-system and editor litter, never a submission (checkpoints, ``__MACOSX``)."""
    return any(p in IGNORED_PARTS or (p.startswith(".") and p not in (".", "..")) for p in parts)


# ---- listing: files only, links reported ---------------------------------------------------


def _folder_entries(source: Path) -> tuple[list[_Entry], list[str]]:
    """Every regular file under ``source`` with one name; links and other kinds reported."""
    entries, problems = [], []
    for folder, dirs, files in os.walk(source):  # never descends into a linked folder
        here = Path(folder)
        for name in sorted(dirs):
            rel = (here / name).relative_to(source).as_posix()
            if (here / name).is_symlink() and not _skipped(PurePosixPath(rel).parts):
                problems.append(f"ignored {_quoted(rel)}/: a symbolic link ({NEVER_FOLLOWED})")
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            rel = path.relative_to(source).as_posix()
            if _skipped(PurePosixPath(rel).parts):
                continue
            problem = _not_a_plain_file(rel, path.lstat())
            if problem:
                problems.append(problem)
            else:
                entries.append(_Entry(rel, path=path))
    return entries, problems


def _not_a_plain_file(name: str, info: os.stat_result) -> str | None:
    """Why the file ``name`` (its lstat ``info``) is not graded: a link or no regular file."""
    if stat.S_ISLNK(info.st_mode):
        return f"ignored {_quoted(name)}: a symbolic link ({NEVER_FOLLOWED})"
    if not stat.S_ISREG(info.st_mode):
        return f"ignored {_quoted(name)}: not a regular file"
    if info.st_nlink > 1:
        return f"ignored {_quoted(name)}: a hard link ({info.st_nlink} names; {NEVER_FOLLOWED})"
    return None


def _zip_entries(zf: zipfile.ZipFile) -> tuple[list[_Entry], list[str]]:
    """Every file member of ``zf``; symbolic links and other special members reported."""
    entries, problems = [], []
    for info in zf.infolist():
        if info.is_dir() or _skipped(PurePosixPath(info.filename).parts):
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(f"ignored {_quoted(info.filename)}: a symbolic link ({NEVER_FOLLOWED})")
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            problems.append(f"ignored {_quoted(info.filename)}: not a regular file")
        else:
            entries.append(_Entry(info.filename, member=info))
    return entries, problems


def _unwrapped(names: list[str], assignments) -> list[str]:
    """``names`` below the first folder if it wraps every one of them (a zip of ``export/``).

    A first folder shared by all is a wrapper unless some name has an assignment right below
    it (then it is the one student of a single-student zip); all names are then read the same
    way, so a deeper name never slips into the layout below the wrapper.
    """
    parts = [PurePosixPath(n).parts for n in names]
    firsts = {p[0] for p in parts if len(p) > 1}
    if len(firsts) != 1 or any(len(p) == 1 or p[1] in assignments for p in parts):
        return names
    return ["/".join(p[1:]) for p in parts]


# ---- mapping: a name to (student, assignment, notebook) ------------------------------------


def _map_entry(origin: str, name: str, notebooks: dict[str, list[str]]):
    """(Submission without its copy, None) or (None, why not, or None for silent litter)."""
    parts = PurePosixPath(name).parts
    shown = _quoted(origin)
    if ".." in parts or PurePosixPath(name).is_absolute() or "\\" in name:
        return None, f"ignored {shown}: a path with '..', a leading '/' or a '\\' in it"
    if not name.endswith(".ipynb"):
        return None, f"ignored {shown}: only notebooks are graded"
    stem = PurePosixPath(name).stem
    if len(parts) == FLAT_DEPTH and CANVAS.match(stem):
        return _map_canvas(origin, CANVAS.match(stem), notebooks)
    if len(parts) != FOLDER_DEPTH:
        return None, (
            f"cannot map {shown}: expected <student>/<assignment>/<notebook>.ipynb "
            "or a Canvas name <name>_<userid>_<attachid>_<notebook>.ipynb at the top level"
        )
    student, assignment, _ = parts
    if assignment not in notebooks:
        return None, f"cannot map {shown}: unknown assignment {_quoted(repr(assignment))}"
    if not SAFE_ID.match(student):
        return None, f"cannot map {shown}: {_quoted(repr(student))} is not a usable student id"
    lms = CANVAS.match(stem)
    if lms and lms["name"].lower() != student.lower():
        return None, (
            f"cannot map {shown}: named like {lms['name']}'s LMS download but in {student}'s "
            "folder; a file counts only for the student whose folder holds it"
        )
    return Submission(student, assignment, stem, Path(), origin), None


def _map_canvas(origin: str, match: re.Match, notebooks: dict[str, list[str]]):
    notebook = match["file"]
    owners = [a for a, names in notebooks.items() if notebook in names]
    if not owners:
        return None, (
            f"cannot map {_quoted(origin)}: no assignment has a notebook named "
            f"{_quoted(notebook)}.ipynb"
        )
    if len(owners) > 1:
        return None, f"cannot map {_quoted(origin)}: {', '.join(owners)} all have {notebook}.ipynb"
    student, rank = match["name"], int(match["attach"])
    return Submission(student, owners[0], notebook, Path(), origin, match["userid"], rank), None


def _graded_as(sub: Submission, notebooks: dict[str, list[str]]) -> tuple[str, str, str]:
    """The gradebook row a submission lands in. Student ids compare without case (they name
    folders, which a case-insensitive disk merges); a wrongly named notebook of a one-notebook
    assignment is graded (as a zero) in that notebook's row."""
    names = notebooks[sub.assignment]
    notebook = names[0] if sub.notebook not in names and len(names) == 1 else sub.notebook
    return sub.student.lower(), sub.assignment, notebook


def _one_per_notebook(found: list[tuple[Submission, _Entry]], notebooks: dict[str, list[str]]):
    """One candidate per student's notebook; (kept, problem lines).

    One LMS user's several attachments: the highest attachment id wins, the rest are reported.
    Any other two candidates are a conflict: none is graded, all are reported.
    """
    groups: dict[tuple, list] = defaultdict(list)
    for sub, entry in found:
        groups[_graded_as(sub, notebooks)].append((sub, entry))
    kept, problems = [], []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda pair: (-pair[0].rank, pair[0].origin))
        users = {(sub.student, sub.lms_user_id) for sub, _ in group}
        latest = group[0][0]
        resubmitted = len(users) == 1 and latest.lms_user_id is not None
        if len(group) == 1 or (resubmitted and latest.rank > group[1][0].rank):
            kept.append(group[0])
            problems += [
                f"ignored {_quoted(sub.origin)}: {_quoted(latest.origin)} is a later "
                "submission of the same notebook"
                for sub, _ in group[1:]
            ]
        else:
            origins = ", ".join(_quoted(sub.origin) for sub, _ in group)
            problems.append(
                f"conflict: {len(group)} candidates for {'/'.join(key)}.ipynb ({origins}); "
                "none of them is graded: keep one and grade again"
            )
    return kept, problems


# ---- copying: what the worker grades -------------------------------------------------------


def _private_copy(sub: Submission, entry: _Entry, folder: Path, archive):
    """(``sub`` with its own copy under ``folder``, None) or (None, why not). The copy is named
    as the notebook is graded: the Canvas notebook, else the file's own name."""
    name = sub.notebook if sub.lms_user_id is not None else PurePosixPath(entry.name).stem
    target = folder / f"{name}.ipynb"
    if entry.member is not None:
        if entry.member.file_size > MAX_NOTEBOOK_BYTES:
            return None, _too_large(sub.origin)
        data = archive.read(entry.member)
    else:
        data, problem = _read_plain_file(entry)
        if problem:
            return None, problem
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, _too_large(sub.origin)
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return replace(sub, path=target), None


def _read_plain_file(entry: _Entry) -> tuple[bytes, str | None]:
    """The bytes of a folder's file, opened without following a link and checked again once
    open (it may have been swapped for a link since it was listed)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(entry.path, flags)
    except OSError:
        return b"", f"ignored {_quoted(entry.name)}: a symbolic link ({NEVER_FOLLOWED})"
    with os.fdopen(fd, "rb") as f:
        problem = _not_a_plain_file(entry.name, os.fstat(f.fileno()))
        if problem:
            return b"", problem
        return f.read(MAX_NOTEBOOK_BYTES + 1), None


def _too_large(origin: str) -> str:
    return f"ignored {_quoted(origin)}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB"


def _empty_folders(source: Path) -> list[str]:
    """A line for each top-level folder whose tree (links not followed) names no notebook."""
    problems = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.is_symlink()):
        if _skipped((folder.name,)) or any(
            name.endswith(".ipynb") for _, _, files in os.walk(folder) for name in files
        ):
            continue
        problems.append(f"nothing to grade in {_quoted(folder.name)}/: it holds no notebook")
    return problems
