"""Grades out of the gradebook, in the format of the place they go.

Every export also writes the per-test CSV (one row per grade cell of each submission, with the
comment a human grader wrote on that cell in formgrader). Formats:

* ``grades`` (default): ``student,assignment,score,max_score``, one row per student and
  assignment.
* ``nbgrader``: the columns and values of ``nbgrader export`` (its CsvExportPlugin), one row per
  assignment and student, except that a student with no submission has an empty
  ``raw_score``/``late_submission_penalty``/``score`` where nbgrader writes 0.0.
* ``canvas``: Canvas's gradebook-import CSV: ``Student, ID, SIS User ID, SIS Login ID, Section``,
  then one column per assignment named ``Title (id)``, and a ``Points Possible`` row, as in
  Canvas's own gradebook export. Canvas needs its ids for each student: they come from the
  roster (``canvas_roster``), else from the Canvas user id the submission zip gave (the
  gradebook's ``lms_user_id``). A student found in neither is left out of the file and named
  in ``Exported.left_out``; a roster student with no submission gets empty scores.
* ``moodle``: Moodle's grade import CSV: the identifier column (``username``, ``email`` or
  ``idnumber``) and one column per assignment. A student with no value for the identifier is
  left out and named in ``Exported.left_out``.
* ``gradescope``: ``<out>/<assignment>/<student>/results.json`` in Gradescope's autograder
  results format: ``score`` and ``tests[]`` (name, score, max_score, status, output = the hint
  and the human grader's comment, visibility).

Scores are nbgrader's: the manual score where a human gave one, else the auto score; an
assignment's score is after the late penalty. A student with no submission of an assignment
keeps a row (or a results.json) with an empty score.

Student-controlled text may start with ``= + - @`` (or a tab, CR or LF) and be run as a
formula by a spreadsheet: every such text value, in every format, is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import nbformat
from nbgrader.api import MissingEntry

from grader.course import Course
from grader.gradebook import grade_rows, open_gradebook
from grader.markup import grade_id_of
from grader.nbgrader_glue import quiet_nbgrader
from grader.results import CellGrade
from grader.score import failure_message, points_text
from grader.worker import grade_cells

FORMATS = ("grades", "nbgrader", "canvas", "moodle", "gradescope")
MOODLE_IDS = ("username", "email", "idnumber")
GRADES_COLUMNS = ("student", "assignment", "score", "max_score")
TESTS_COLUMNS = ("student", "assignment", "notebook", "test", "score", "max_score", "comment")
NBGRADER_COLUMNS = (
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
)
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_ROW = "    Points Possible"  # Canvas's own export spells it with the indent
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
NOT_GRADED = "**Not graded: this notebook scores 0.**"  # grader.worker's note on a failed one
_CANVAS_TITLE = re.compile(r"^(?P<title>.*) \((?P<id>\d+)\)$")


class ExportError(ValueError):
    """The export cannot be written (unknown format, unreadable roster); the message says why."""


def spreadsheet_safe(value: str) -> str:
    """``value`` with a leading ``'`` if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


@dataclass(frozen=True)
class Student:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""

    @property
    def display_name(self) -> str:
        """``Last, First`` as Canvas shows students; the id when the gradebook has no name."""
        names = ", ".join(n for n in (self.last_name, self.first_name) if n)
        return names or self.id


@dataclass(frozen=True)
class Assignment:
    name: str
    duedate: object  # datetime or None, written as nbgrader writes it
    max_score: float


@dataclass(frozen=True)
class Submitted:
    """One student's submission of one assignment, as nbgrader totals it."""

    raw_score: float
    late_submission_penalty: float
    timestamp: object

    @property
    def score(self) -> float:
        return max(0.0, self.raw_score - self.late_submission_penalty)


@dataclass
class Grades:
    """A snapshot of the gradebook: students and assignments sorted by id, and the
    submissions that exist, keyed by (student, assignment)."""

    students: list[Student]
    assignments: list[Assignment]
    submitted: dict[tuple[str, str], Submitted] = field(default_factory=dict)

    def score(self, student: str, assignment: str) -> str:
        """The assignment's score as text, ``""`` when nothing was submitted."""
        sub = self.submitted.get((student, assignment))
        return "" if sub is None else points_text(sub.score)


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the grades (a file, or gradescope's folder), the per-test CSV, and
    the students it had to leave out with the reason (empty when everyone is in)."""

    grades: Path
    tests: Path
    left_out: list[str] = field(default_factory=list)


def read_grades(course: Course) -> Grades:
    """Every student, assignment and submission of the course's gradebook."""
    with quiet_nbgrader(), open_gradebook(course) as gb:
        students = [
            Student(s.id, s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or "")
            for s in sorted(gb.students, key=lambda s: s.id)
        ]
        assignments = [
            Assignment(a.name, a.duedate, float(a.max_score))
            for a in sorted(gb.assignments, key=lambda a: a.name)
        ]
        submitted = {}
        for a in assignments:
            for s in students:
                try:
                    sub = gb.find_submission(a.name, s.id)
                except MissingEntry:
                    continue
                submitted[s.id, a.name] = Submitted(
                    float(sub.score), float(sub.late_submission_penalty or 0.0), sub.timestamp
                )
    return Grades(students, assignments, submitted)


def export(
    course: Course, out: Path | None = None, per_test: Path | None = None
) -> tuple[Path, Path]:
    """Write ``grades.csv`` and ``tests.csv`` (default: in the course directory); their paths.

    A written answer nobody has graded yet has an empty score in the per-test CSV and counts 0
    in grades.csv; an assignment a student never submitted has an empty score in grades.csv.
    """
    done = export_as(course, "grades", out, per_test)
    return done.grades, done.tests


def export_as(
    course: Course,
    fmt: str = "grades",
    out: Path | None = None,
    per_test: Path | None = None,
    roster: Path | None = None,
    moodle_id: str = "username",
) -> Exported:
    """Write the grades in ``fmt`` to ``out`` and the per-test CSV to ``per_test``.

    Defaults: ``COURSE_DIR/grades.csv`` for ``grades``, ``COURSE_DIR/<fmt>.csv`` for the other
    CSV formats, the folder ``COURSE_DIR/gradescope`` for gradescope; ``COURSE_DIR/tests.csv``.
    roster: a CSV for canvas (see ``canvas_roster``) or moodle (columns ``student`` and the
    identifier). Raises ExportError for an unknown format or identifier, or a bad roster.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if moodle_id not in MOODLE_IDS:
        raise ExportError(f"unknown Moodle identifier {moodle_id!r}: {', '.join(MOODLE_IDS)}")
    out = Path(out or course.course_dir / _default_name(fmt))
    per_test = Path(per_test or course.course_dir / "tests.csv")
    write_csv(per_test, TESTS_COLUMNS, per_test_rows(course))
    grades, left_out = read_grades(course), []
    if fmt == "grades":
        write_csv(out, GRADES_COLUMNS, grades_rows(grades))
    elif fmt == "nbgrader":
        write_csv(out, NBGRADER_COLUMNS, nbgrader_rows(grades))
    elif fmt == "canvas":
        header, rows, left_out = canvas_table(grades, _read_roster(roster))
        write_csv(out, header, rows)
    elif fmt == "moodle":
        header, rows, left_out = moodle_table(grades, moodle_id, _read_roster(roster))
        write_csv(out, header, rows)
    else:
        left_out = write_gradescope(course, grades, out)
    return Exported(out, per_test, left_out)


def _default_name(fmt: str) -> str:
    return {"grades": "grades.csv", "gradescope": "gradescope"}.get(fmt, f"{fmt}.csv")


def grades_rows(grades: Grades) -> list[tuple]:
    """(student, assignment, score, max_score) per student and assignment, by student."""
    return [
        (s.id, a.name, grades.score(s.id, a.name), points_text(a.max_score))
        for s in grades.students
        for a in grades.assignments
    ]


def per_test_rows(course: Course) -> list[tuple]:
    return [
        (
            r.student,
            r.assignment,
            r.notebook,
            r.test,
            *map(points_text, (r.score, r.max_score)),
            r.comment,
        )
        for r in grade_rows(course)
    ]


def nbgrader_rows(grades: Grades) -> list[tuple]:
    """``nbgrader export``'s rows: per assignment, per student, values as ``str()`` writes
    them (``5.0``, ``2025-01-31 17:00:00``); empty scores where nothing was submitted."""
    rows = []
    for a in grades.assignments:
        for s in grades.students:
            sub = grades.submitted.get((s.id, a.name))
            scores = (
                ("", "", "", "")
                if sub is None
                else (sub.timestamp, sub.raw_score, sub.late_submission_penalty, sub.score)
            )
            timestamp, *points = (_nbgrader_text(v) for v in scores)
            rows.append(
                (
                    a.name,
                    _nbgrader_text(a.duedate),
                    timestamp,
                    s.id,
                    s.last_name,
                    s.first_name,
                    s.email,
                    *points,
                    _nbgrader_text(a.max_score),
                )
            )
    return rows


def _nbgrader_text(value) -> str:
    return "" if value is None else str(value)


# ---- Canvas -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Roster:
    """A roster CSV: its rows (column name -> value) and its header."""

    header: list[str]
    rows: list[dict[str, str]]


def _read_roster(path: Path | None) -> Roster | None:
    if path is None:
        return None
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [
                {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ExportError(f"cannot read the roster {path}: {exc}") from exc
    return Roster(header, [r for r in rows if r.get("Student") != CANVAS_POINTS_ROW.strip()])


def canvas_roster(roster: Roster | None, students: list[Student]) -> dict[str, dict[str, str]]:
    """Our student id -> that student's Canvas columns (``Student``, ``ID``, ``SIS User ID``,
    ``SIS Login ID``, ``Section``), for every student Canvas can identify.

    The roster is a CSV; Canvas's own gradebook export (Grades > Export) works as it is. A roster
    row is a student's when, in this order: its ``student`` column is our id; its ``ID`` is the
    Canvas user id the submission zip gave; its ``SIS Login ID`` or ``SIS User ID`` is our id.
    Without a roster row, a student that came from a Canvas zip still has its Canvas ``ID``.
    """
    rows = roster.rows if roster else []
    keys = (("student", "id"), ("ID", "lms_user_id"), ("SIS Login ID", "id"), ("SIS User ID", "id"))
    indexes = [({r[col]: r for r in rows if r.get(col)}, attr) for col, attr in keys]
    found = {}
    for s in students:
        row = _first_row(indexes, s)
        if row is None and s.lms_user_id:
            row = {"Student": s.display_name, "ID": s.lms_user_id}
        if row is not None:
            found[s.id] = {c: row.get(c, "") for c in CANVAS_COLUMNS}
    return found


def _first_row(indexes, student: Student) -> dict[str, str] | None:
    for index, attr in indexes:
        value = getattr(student, attr)
        if value and value in index:
            return index[value]
    return None


def canvas_assignment_columns(roster: Roster | None, assignments: list[Assignment]) -> list[str]:
    """``Title (id)`` for each assignment: the roster's column whose title is the assignment's
    name gives Canvas's id; with none, the bare name, which Canvas imports as a new assignment
    (its points from the Points Possible row)."""
    titled = {}
    for column in roster.header if roster else []:
        match = _CANVAS_TITLE.match(column)
        if match:
            titled.setdefault(match["title"], column)
    return [titled.get(a.name, a.name) for a in assignments]


def canvas_table(grades: Grades, roster: Roster | None):
    """(header, rows, left out) of Canvas's gradebook import: a Points Possible row, one row
    per student Canvas can identify (roster students with no submission included, scores
    empty); students it cannot identify are left out."""
    canvas = canvas_roster(roster, grades.students)
    header = [*CANVAS_COLUMNS, *canvas_assignment_columns(roster, grades.assignments)]
    rows = [
        (CANVAS_POINTS_ROW, "", "", "", "", *(points_text(a.max_score) for a in grades.assignments))
    ]
    for s in grades.students:
        if s.id in canvas:
            row = canvas[s.id]
            rows.append((*row.values(), *(grades.score(s.id, a.name) for a in grades.assignments)))
    matched = {tuple(r.values()) for r in canvas.values()}
    for r in roster.rows if roster else []:
        values = tuple(r.get(c, "") for c in CANVAS_COLUMNS)
        if values not in matched and (r.get("ID") or r.get("SIS User ID") or r.get("SIS Login ID")):
            rows.append((*values, *("" for _ in grades.assignments)))
    left_out = [
        f"{s.id!r}: not in the roster and no Canvas user id"
        for s in grades.students
        if s.id not in canvas
    ]
    return header, rows, left_out


# ---- Moodle -----------------------------------------------------------------------------


def moodle_table(grades: Grades, moodle_id: str, roster: Roster | None):
    """(header, rows, left out) of Moodle's grade import: ``moodle_id`` then one column per
    assignment. The identifier is the roster's column of that name for the student (roster
    column ``student`` = our id) or else the gradebook's: username = our student id, email =
    the student's email, idnumber = the LMS user id. A student without one is left out."""
    by_student = {r["student"]: r for r in roster.rows if r.get("student")} if roster else {}
    fallback = {"username": "id", "email": "email", "idnumber": "lms_user_id"}[moodle_id]
    rows, left_out = [], []
    for s in grades.students:
        ident = by_student.get(s.id, {}).get(moodle_id) or getattr(s, fallback)
        if not ident:
            left_out.append(f"{s.id!r}: no Moodle {moodle_id}")
            continue
        rows.append((ident, *(grades.score(s.id, a.name) for a in grades.assignments)))
    return [moodle_id, *(a.name for a in grades.assignments)], rows, left_out


# ---- Gradescope -------------------------------------------------------------------------


def write_gradescope(course: Course, grades: Grades, out: Path) -> list[str]:
    """One ``out/<assignment>/<student>/results.json`` per student and assignment (folder names
    percent-encoded where they are not plain); returns the students left out (none)."""
    rows = {(r.student, r.assignment, r.notebook, r.test): r for r in grade_rows(course)}
    for a in grades.assignments:
        notebooks = sorted(p.stem for p in (course.release_dir / a.name).glob("*.ipynb"))
        for s in grades.students:
            results = gradescope_results(course, grades, s.id, a, notebooks, rows)
            path = out / _folder_name(a.name) / _folder_name(s.id) / "results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return []


def gradescope_results(course, grades, student, assignment, notebooks, rows) -> dict:
    """Gradescope's results.json for one student and assignment: every grade cell as a test
    (scored where graded, its output the hint and the human grader's comment); ``score`` the
    assignment's total, absent when nothing was submitted."""
    sub = grades.submitted.get((student, assignment.name))
    tests = []
    for notebook in notebooks:
        hints = _hints(course, student, assignment.name, notebook) if sub else {}
        for cell in grade_cells(course.release_notebook(assignment.name, notebook)):
            key = (student, assignment.name, notebook, cell.grade_id)
            tests.append(_gradescope_test(notebook, cell, rows.get(key), sub, hints))
    results = {"visibility": "visible", "tests": tests}
    if sub is None:
        results["output"] = f"No submission of {assignment.name} was graded."
    else:
        results["score"] = sub.score
    return results


def _gradescope_test(notebook: str, cell: CellGrade, row, sub, hints) -> dict:
    score = row.score if row is not None else None
    test = {
        "name": spreadsheet_safe(f"{notebook}: {cell.grade_id}"),
        "max_score": cell.max_score,
        "visibility": "visible",
    }
    if sub is None:
        test["output"] = "no submission"
    elif score is None:
        test["output"] = "awaits a human grader"
    else:
        test["score"] = score
        test["status"] = "passed" if score >= cell.max_score else "failed"
        test["output"] = spreadsheet_safe(hints.get(cell.grade_id, ""))
    if row is not None and row.comment:
        said = f"{test['output']}\n\n" if test["output"] else ""
        test["output"] = spreadsheet_safe(f"{said}Grader's comment: {row.comment}")
    return test


def _hints(course: Course, student: str, assignment: str, notebook: str) -> dict[str, str]:
    """grade_id -> the hint a test left in the autograded notebook (what feedback shows); for a
    notebook that could not be graded, every test gets the reason."""
    path = course.state_path("autograded", student, assignment) / f"{notebook}.ipynb"
    if not path.is_file() or path.is_symlink():
        return {}
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0] if nb.cells else None
    note = first.source if first and first.source.startswith(NOT_GRADED) else None
    hints = {}
    for cell in nb.cells:
        grade_id = grade_id_of(cell)
        if grade_id and cell.cell_type == "code":
            hints[grade_id] = note or failure_message(cell)
    return hints


def _folder_name(name: str) -> str:
    """``name`` as one safe path component (``/``, ``..`` and the like percent-encoded)."""
    encoded = quote(name, safe="@=+-_")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


# ---- CSV --------------------------------------------------------------------------------


def write_csv(path: Path, header, rows) -> None:
    """A UTF-8 CSV with ``header`` and ``rows``, every text cell passed through
    ``spreadsheet_safe``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([spreadsheet_safe(str(h)) for h in header])
        writer.writerows([spreadsheet_safe(str(v)) for v in row] for row in rows)
