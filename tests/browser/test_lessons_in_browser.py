"""Every lesson as a student meets it: the release with the instructor's answers filled in,
opened in JupyterLab in Chromium, Run All through the UI, saved.

Judged from the SAVED notebook (the DOM's stderr area also shows harmless warnings): no cell
raised, every visible check printed its pass line, every figure cell drew an image, and the
slider demo's widget rendered. A screenshot of each lesson's first screen goes to
tests/browser/output/ for a human to look at.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "samples"))
import generate  # noqa: E402  (samples/generate.py fills a release with the solutions)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir() if any(p.glob("*.ipynb")))
# The visible checks end with "... — correct" (utils.diagnose.report and friends), gradcheck's
# "... passed"; the knowledge checks with "answer_q1 ... recorded".
PASS_LINE = re.compile(r"(— correct|: passed|\brecorded\b.*)$")
# A figure cell makes a figure at its top level (not inside a def, like the slider's callback).
FIGURE_CALL = re.compile(r"^\S.*\bplt\.(show|subplots|figure)\(", re.MULTILINE)
WIDGET_CALL = re.compile(r"\binteract\(")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, output_dir):
    """JupyterLab serving a folder with every lesson's release, solutions filled in."""
    from tests.browser.jupyter import JupyterLab

    root = tmp_path_factory.mktemp("lessons")
    for lesson in LESSONS:
        (root / lesson).mkdir()
        nbformat.write(generate.filled_release(lesson), root / lesson / f"{lesson}.ipynb")
    server = JupyterLab(root, tmp_path_factory.mktemp("home"), output_dir / "jupyter-lab.log")
    yield server
    server.stop()


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def errors(nb) -> list[str]:
    """'cell i: EName: value' for every error output."""
    return [
        f"cell {i}: {o.ename}: {o.evalue}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]


def checks_without_pass_line(nb) -> list[str]:
    """The grade cells (visible checks, knowledge checks) whose last printed line is not a
    pass line, with what they printed."""
    missing = []
    for cell in nb.cells:
        if cell.cell_type == "code" and _nbgrader(cell).get("grade"):
            lines = _stdout(cell).strip().splitlines()
            if not lines or not PASS_LINE.search(lines[-1]):
                missing.append(f"{_nbgrader(cell)['grade_id']}: printed {lines[-3:]!r}")
    return missing


def figures_without_image(nb) -> list[str]:
    """The figure cells with no image/png output."""
    return [
        f"cell {i}: {cell.source.splitlines()[0]!r}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and not _nbgrader(cell).get("grade")
        and FIGURE_CALL.search(cell.source)
        and not any("image/png" in o.get("data", {}) for o in cell.outputs)
    ]


def widget_cells(nb) -> list[int]:
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and WIDGET_CALL.search(cell.source)
    ]


def assert_widget_rendered(page, nb, index: int) -> None:
    """Cell ``index`` saved a widget view, and in the page its slider and figure are drawn."""
    from tests.browser.jupyter import KERNEL_IDLE_TIMEOUT_MS

    outputs = nb.cells[index].outputs
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs), f"cell {index}: no widget"
    page.wait_for_function(
        """index => {
            const notebook = window.jupyterapp.shell.currentWidget.content;
            notebook.scrollToItem(index, 'center');  // a windowed notebook renders what is seen
            const cell = notebook.widgets[index];
            return !!(cell.node.querySelector('.widget-slider')
                      && cell.node.querySelector('.jp-OutputArea-output img'));
        }""",
        arg=index,
        timeout=KERNEL_IDLE_TIMEOUT_MS,
    )


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_top_to_bottom_in_jupyterlab(lab, page, output_dir, lesson):
    from tests.browser.jupyter import open_notebook, run_all_and_save

    path = f"{lesson}/{lesson}.ipynb"
    open_notebook(page, lab, path)
    page.screenshot(path=str(output_dir / f"{lesson}.png"))
    try:
        ran = run_all_and_save(page)
        saved = nbformat.read(lab.root / path, as_version=4)

        assert not errors(saved), errors(saved)
        assert ran is True, f"Run All Cells resolved to {ran!r}"
        assert not checks_without_pass_line(saved), checks_without_pass_line(saved)
        assert not figures_without_image(saved), figures_without_image(saved)
        for index in widget_cells(saved):
            assert_widget_rendered(page, saved, index)
    finally:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
