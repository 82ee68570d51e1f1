"""What running nbgrader in-process needs: its ``alembic`` on PATH, an empty gradebook stamped
without a subprocess, its log routed away from the terminal, its SQLAlchemy warnings silenced."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import sys
import warnings
from pathlib import Path


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
