"""What a grading kernel of each lesson may import, and where its test cells run.

One row per lesson (assignment id). The worker hands the row to the kernel's launcher, which
enforces it: the operating system (``grader.confine``: Landlock) lets the kernel read only the
Python installation, the third-party packages the row allows and the course modules it lists;
an import hook in the kernel (``grader.kernel_side``) turns a refused import into an
ImportError that says why. ``utils.checks`` is never readable from a kernel whose test cells run
in the checker: its modules hold the hidden cases.

Fields of ``LessonPolicy``:

* ``torch``: the kernel may import torch. Lessons whose own cells (comparisons, demos) or whose
  course modules import torch need it; the others run without it, so a numpy exercise cannot
  call PyTorch at all.
* ``numpy_only``: the learner's graded functions must not call PyTorch. Where ``torch`` is
  False the operating system enforces it; where it is True the kernel's in-process guard
  reports a call, which fails the check (flagged, not a guarantee: docs/grading-safety.md).
* ``checker``: test cells run in the trusted checker (``grader.checker``), which calls the
  learner's functions over a plain-data channel and records each verdict. Every NormLab
  lesson does. False keeps the older path for a course's own notebook that asks for it (test
  cells run in the kernel, scored from their outputs, watched by the integrity probe).
* ``modules``: the course modules (``utils.*``) the kernel may import: those the lesson's
  locked cells import, and what they import. None of them answers this lesson or an earlier
  one (``tests/test_grader_policy.py`` keeps that true).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

CHECK_PACKAGE = "utils.checks"
"""The package of the checks: stubs in a checker kernel, never its files."""


@dataclass(frozen=True)
class LessonPolicy:
    torch: bool
    numpy_only: bool
    checker: bool
    modules: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


EVERY_MODULE = ("*",)
"""``modules`` of a lesson whose kernel may import every course module (checks included)."""

LESSONS: dict[str, LessonPolicy] = {
    "00_gradient_checking": LessonPolicy(torch=False, numpy_only=True, checker=True),
    "01_why_normalize": LessonPolicy(
        torch=False, numpy_only=True, checker=True, modules=("utils.data", "utils.plots")
    ),
    "02_batchnorm_forward": LessonPolicy(torch=False, numpy_only=True, checker=True),
    "03_batchnorm_backward": LessonPolicy(torch=True, numpy_only=True, checker=True),
    "04_running_statistics": LessonPolicy(torch=True, numpy_only=True, checker=True),
    "05_batchnorm_in_networks": LessonPolicy(
        torch=False,
        numpy_only=True,
        checker=True,
        modules=("utils.data", "utils.nn", "utils.plots", "utils.training"),
    ),
    "06_spatial_batchnorm": LessonPolicy(
        torch=True, numpy_only=True, checker=True, modules=("utils.data",)
    ),
    "07_normalization_variants": LessonPolicy(
        torch=True, numpy_only=True, checker=True, modules=("utils.variants", "utils.data")
    ),
    # utils.data: the learner-only experiments load the digits (a cell a learner edits is run)
    "08_why_batchnorm_works": LessonPolicy(
        torch=True, numpy_only=False, checker=True, modules=("utils.data", "utils.landscape")
    ),
    "09_batchnorm_in_pytorch": LessonPolicy(
        torch=True, numpy_only=False, checker=True, modules=("utils.autograd_call",)
    ),
    "10_sync_batchnorm": LessonPolicy(
        torch=False, numpy_only=True, checker=True, modules=("utils.sync",)
    ),
    "11_fused_batchnorm_kernel": LessonPolicy(
        torch=True, numpy_only=False, checker=True, modules=("utils.autograd_call",)
    ),
}

DEFAULT = LessonPolicy(torch=True, numpy_only=False, checker=True, modules=EVERY_MODULE)
"""An assignment with no row and no policy of its own: test cells in the checker, every course
module but the checks, torch allowed."""

METADATA_KEY = "normlab_policy"
"""Where a course's own notebook (metadata of its release) states its row, as a dict."""


def policy_for(assignment: str, metadata: dict | None = None) -> LessonPolicy:
    """The row of ``assignment``: NormLab's table, else the release notebook's ``metadata``
    (``{"normlab_policy": {"torch": false, ...}}``), else ``DEFAULT``."""
    if assignment in LESSONS:
        return LESSONS[assignment]
    stated = (metadata or {}).get(METADATA_KEY)
    if isinstance(stated, dict):
        fields = {k: stated[k] for k in ("torch", "numpy_only", "checker") if k in stated}
        modules = tuple(str(m) for m in stated.get("modules", DEFAULT.modules))
        return LessonPolicy(**{**DEFAULT.as_dict(), **fields, "modules": modules})
    return DEFAULT
