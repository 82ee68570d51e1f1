"""What leaves the grader: feedback shows verdicts, never graded outputs; student HTML is
cleaned; the terminal never receives a control character from a student."""

from __future__ import annotations

import nbformat
from fixtures.toy import cell, release
from nbformat.v4 import new_markdown_cell, new_output, new_raw_cell

from grader.feedback import VERDICT, feedback_notebook, stored_notebook
from grader.safehtml import clean_html, safe_markdown, safe_outputs
from grader.text import printable
from grader.worker import CellGrade, SubmissionResult


def _graded(outputs, tests):
    nb = release()
    cell(nb, "test_double").outputs = outputs
    cell(nb, "test_double").metadata[VERDICT] = {"score": 99, "max_score": 2, "message": ""}
    result = SubmissionResult("ann", "toy", "toy", tests, None, nbformat.writes(nb))
    return nbformat.reads(stored_notebook(result), as_version=4)


def test_feedback_holds_the_verdict_and_no_output_of_the_graded_code():
    leak = new_output("display_data", data={"text/plain": "SECRET-HIDDEN-TEST-BASE64"})
    tests = [CellGrade("test_double", 0.0, 2.0, "AssertionError: double(3) returned 9")]
    nb = feedback_notebook(_graded([leak], tests))
    text = nbformat.writes(nb)
    assert "SECRET-HIDDEN-TEST-BASE64" not in text
    assert [o.text for o in cell(nb, "test_double").outputs] == [
        "failed: 0 / 2 points\nAssertionError: double(3) returned 9\n"
    ]
    assert all(
        not c.get("outputs")
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") != "test_double"
    )


def test_a_verdict_written_by_the_student_is_replaced_by_the_graders():
    nb = _graded([], [CellGrade("test_double", 0.0, 2.0, "wrong")])
    assert cell(nb, "test_double").metadata[VERDICT] == {
        "score": 0.0,
        "max_score": 2.0,
        "message": "wrong",
    }


def test_markdown_script_handlers_and_javascript_links_are_cleaned():
    for hostile in (
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "<javascript:alert(1)>",
    ):
        out = safe_markdown(hostile)
        assert "<script" not in out and "onerror" not in out and 'href="javascript' not in out
    honest = "# Title\n\nThe mean is $\\mu$ and **bold**."
    assert safe_markdown(honest) == honest


def test_html_and_svg_outputs_are_cleaned_or_removed():
    html = new_output("display_data", data={"text/html": "<b onclick=x>hi</b><script>1</script>"})
    svg = new_output("display_data", data={"image/svg+xml": "<svg onload=alert(1)/>"})
    png = new_output(
        "display_data",
        data={"image/png": 'x"><script>'},
        metadata={"image/png": {"width": "1 onerror=alert(1)"}},
    )
    outs = safe_outputs([html, svg, png])
    assert outs[0].data == {"text/html": "<b>hi</b>&lt;script&gt;1&lt;/script&gt;"}
    assert outs[1].data == {
        "text/plain": "[image/svg+xml output removed: it could run script in the page]"
    }
    assert "image/png" not in outs[2].data and outs[2].metadata == {}
    assert clean_html('<a href="https://x.org">ok</a>') == '<a href="https://x.org">ok</a>'


def test_raw_cells_are_cleaned_in_the_stored_notebook():
    nb = release()
    nb.cells.append(new_raw_cell("<script>alert(1)</script>", metadata={"format": "text/html"}))
    nb.cells.append(new_markdown_cell("<iframe src=javascript:alert(1)>"))
    result = SubmissionResult("ann", "toy", "toy", [], None, nbformat.writes(nb))
    text = stored_notebook(result)
    assert "<script>" not in text and "<iframe" not in text


def test_control_characters_print_as_visible_escapes():
    assert printable("a\x1b[2J\x9b\x7f\u202eb\tc\n") == "a\\x1b[2J\\x9b\\x7f\\u202eb\tc\n"
    assert printable("plain name_1.ipynb") == "plain name_1.ipynb"
