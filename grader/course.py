"""Where a course's files live, and the nbgrader configuration that points at them.

The source tree holds ``solutions/`` (instructor notebooks) and ``notebooks/`` (the release).
Course state — gradebook, submitted and autograded copies, feedback — lives in a separate
course directory (default ``.course/`` in the source tree, git-ignored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

REPO_ROOT = Path(__file__).resolve().parents[1]
COURSE_ID = "normlab"
NOTEBOOK_TIMEOUT_FACTOR = 5  # a notebook may run this many per-cell timeouts (--timeout) in all


def ensure_venv_on_path() -> None:
    """Put this interpreter's bin first on PATH: nbgrader runs `alembic` through PATH."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def create_gradebook(db_path: Path) -> None:
    """Create an empty SQLite gradebook stamped with nbgrader's schema version, unless it exists.

    nbgrader stamps a new gradebook by running ``alembic heads`` in a subprocess that imports
    nbgrader again (seconds, on every fresh template); reading the head here is instant. nbgrader
    then creates its tables on first use, as for any gradebook it finds without them.
    """
    if db_path.exists():
        return
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (head,))


class ErrorCollector(logging.Handler):
    """Keeps the gist of each error nbgrader logs: a message's first line; for a traceback, its
    exception line (``SomeError: message``)."""

    _NOISE = ("Please see", "There was an error processing", "(Background on this error")
    _EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        lines = [line.strip() for line in record.getMessage().strip().splitlines() if line.strip()]
        if lines and lines[0].startswith("Traceback"):
            exceptions = [line for line in lines if self._EXCEPTION.match(line)]
            lines = exceptions[-1:] or lines[-1:]
        if lines and not lines[0].startswith(self._NOISE):
            self.messages.append(lines[0])


def capture_log(converter, name: str) -> ErrorCollector:
    """Route an nbgrader converter's log (and its preprocessors') into a fresh ErrorCollector,
    so a grading run prints nothing of nbgrader's warnings."""
    errors = ErrorCollector()
    converter.log = logging.getLogger(f"normlab.{name}")
    converter.log.propagate = False
    converter.log.handlers = [errors]
    return errors


@contextlib.contextmanager
def quiet_nbgrader():
    """Silence the SQLAlchemy warnings nbgrader's gradebook API emits when it adds submissions."""
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        yield


@dataclass(frozen=True)
class Course:
    """A course: its source tree (``root``) and its state directory (``course_dir``)."""

    root: Path = REPO_ROOT
    course_dir: Path = REPO_ROOT / ".course"

    @property
    def solutions_dir(self) -> Path:
        return self.root / "solutions"

    @property
    def release_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def db_path(self) -> Path:
        return self.course_dir / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def assignments(self) -> list[str]:
        """Assignment ids: the folders of solutions/ that hold a notebook, sorted."""
        if not self.solutions_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.solutions_dir.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))
        )

    def source_notebooks(self, assignment: str) -> list[Path]:
        return sorted((self.solutions_dir / assignment).glob("*.ipynb"))

    def release_notebook(self, assignment: str, notebook: str) -> Path:
        return self.release_dir / assignment / f"{notebook}.ipynb"

    def source_notebook(self, assignment: str, notebook: str) -> Path:
        return self.solutions_dir / assignment / f"{notebook}.ipynb"

    def state_path(self, step: str, student: str, assignment: str) -> Path:
        """course_dir/<step>/<student>/<assignment> for step in submitted, autograded, feedback."""
        return self.course_dir / step / student / assignment

    def nbgrader_config(self, release_dir: Path | None = None, db_url: str | None = None) -> Config:
        """nbgrader configuration rooted at this course; paths absolute, so cwd never matters."""
        c = Config()
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.course_id = COURSE_ID
        c.CourseDirectory.source_directory = str(self.solutions_dir)
        c.CourseDirectory.release_directory = str(release_dir or self.release_dir)
        c.CourseDirectory.submitted_directory = str(self.course_dir / "submitted")
        c.CourseDirectory.autograded_directory = str(self.course_dir / "autograded")
        c.CourseDirectory.feedback_directory = str(self.course_dir / "feedback")
        c.CourseDirectory.db_url = db_url or self.db_url
        c.Application.log_level = "WARN"
        return c

    def write_formgrader_config(self) -> Path:
        """course_dir/nbgrader_config.py, so formgrader started there (``cd COURSE_DIR &&
        jupyter lab``) finds this gradebook, the autograded notebooks and the sources."""
        path = self.course_dir / "nbgrader_config.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Written by `python -m grader`: formgrader configuration for this course directory.\n"
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.root = {str(self.course_dir)!r}\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
            f"c.CourseDirectory.source_directory = {str(self.solutions_dir)!r}\n"
            f"c.CourseDirectory.release_directory = {str(self.release_dir)!r}\n"
            f"c.CourseDirectory.db_url = {self.db_url!r}\n",
            encoding="utf-8",
        )
        return path
