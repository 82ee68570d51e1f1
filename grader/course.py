"""Where a course's files live, and the nbgrader configuration that points at them.

The source tree holds ``solutions/`` (instructor notebooks) and ``notebooks/`` (the release).
Course state — gradebook, submitted and autograded copies, feedback — lives in a separate
course directory (default ``.course/`` in the source tree, git-ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

REPO_ROOT = Path(__file__).resolve().parents[1]
COURSE_ID = "normlab"
NOTEBOOK_TIMEOUT_FACTOR = 5  # a notebook may run this many per-cell timeouts (--timeout) in all


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
