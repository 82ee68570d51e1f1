"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, one fresh profile
per session, and a folder for screenshots and server logs a human can look at.

Without chromium (or the playwright package) the tests skip and say why; with ``CI`` set
they fail instead, since CI (``.ci/run``) installs chromium and must run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parent / "output"
VIEWPORT = {"width": 1280, "height": 900}


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """tests/browser/output/: screenshots and server logs (git-ignored)."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("no `chromium` on PATH: `apt-get install chromium` (.ci/run does it in CI)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing: `make .venv/.installed` installs it")
    return path


@pytest.fixture(scope="session")
def browser(chromium_executable, tmp_path_factory):
    """A Chromium context with a fresh profile (``--user-data-dir``), headless."""
    from playwright.sync_api import sync_playwright

    from tests.browser.jupyter import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()
