"""Shared pytest set-up: a headless matplotlib, the hypothesis profiles, the lesson fixture.

Hypothesis: both profiles are derandomized (each test draws the same examples on every run, on
every machine), so a CI failure reproduces locally with ``CI=1 pytest ...``; ``ci`` draws more
of them than ``dev``.
"""

import os

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="module")
def nb(request):
    """The solution notebook of this lesson test file, executed once per module."""
    from tests.harness import SolvedNotebook, lesson_of  # only lesson tests need these

    return SolvedNotebook(lesson_of(request.module.__file__))
