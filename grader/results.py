"""What grading produces: a result per submitted notebook, a grade per test cell.

Plain dataclasses that pickle (local worker processes and Dask send them back) and that every
stage after grading reads: the gradebook's recorder, exports, feedback, the summary, ``check``,
``validate`` and the demo's comparison with ``samples/expected.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CellGrade:
    """One grade cell: ``score`` None means a human has yet to grade it (a written answer)."""

    grade_id: str
    score: float | None
    max_score: float
    message: str = ""
    manual: bool = False

    @property
    def passed(self) -> bool:
        return self.score is not None and self.score >= self.max_score


@dataclass
class SubmissionResult:
    """What grading one notebook produced; ``error`` set means 0 points and why."""

    student: str
    assignment: str
    notebook: str
    tests: list[CellGrade] = field(default_factory=list)
    error: str | None = None
    notebook_json: str | None = None
    comments: dict[str, str | None] = field(default_factory=dict)
    seconds: float = 0.0
    confinement: str = ""
    """What the operating system confined the kernel with (``grader.confine.describe()`` on
    the machine that graded it), or ``WEAKER: ...``."""
    stored_json: str | None = None
    """The autograded notebook as the course keeps it (``grader.feedback.stored_notebook``),
    made where it was graded, so the one process that records results only writes it."""

    @property
    def score(self) -> float:
        return sum(t.score or 0.0 for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)
