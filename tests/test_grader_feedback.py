"""What leaves the grader: feedback shows verdicts, never graded outputs; student HTML is
cleaned; the terminal never receives a control character from a student; the summary a student
reads first (feedback page and `grader check` alike) names the mistake before the numbers; math
is MathML, kept to an allowlist."""

from __future__ import annotations

import re

import nbformat
from bleach._vendor import html5lib  # the HTML5 parser bleach uses, as a browser parses
from fixtures.toy import cell, release
from nbformat.v4 import new_markdown_cell, new_output, new_raw_cell

from grader.check import report
from grader.feedback import VERDICT, feedback_notebook, stored_notebook
from grader.mathml import latex_to_mathml
from grader.results import CellGrade, SubmissionResult
from grader.safehtml import (
    MATH_TAGS,
    TAGS,
    clean_html,
    safe_markdown,
    safe_outputs,
    static_markdown,
)
from grader.summary import Hint, hint_of, summary_html, summary_lines, total_text
from grader.text import printable


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


# --- the summary a student reads first (grader.summary), shared by feedback and check --------

EPS_MESSAGE = (
    "CheckFailure: [visible case, x of shape (5, 4)] out: relative error 2.8e-06 against the "
    "reference (must be below 1e-08). Likely mistake: it looks like eps is added outside the "
    "square root: use sqrt(var + eps), not sqrt(var) + eps"
)
EPS_HINT = "eps is added outside the square root: use sqrt(var + eps), not sqrt(var) + eps"
EPS_DETAILS = (
    "[visible case, x of shape (5, 4)] out: relative error 2.8e-06 against the reference "
    "(must be below 1e-08)."
)
TESTS = [
    CellGrade("test_stats", 1.0, 1.0),
    CellGrade("test_forward", 0.0, 3.0, EPS_MESSAGE),
    CellGrade("test_blank", 0.0, 1.0, "NotImplementedError: batchnorm_forward\nis not written"),
    CellGrade("written_why", None, 2.0, "", manual=True),
]


def test_a_check_failure_splits_into_the_named_mistake_then_the_numbers():
    assert hint_of(EPS_MESSAGE) == Hint(EPS_HINT, EPS_DETAILS, EPS_HINT)
    generic = "CheckFailure: out: relative error 1e-01. Likely mistake: the sign is flipped."
    assert hint_of(generic) == Hint("the sign is flipped.", "out: relative error 1e-01.", None)
    assert hint_of("AssertionError: double(3)\nreturned 9") == Hint(
        "AssertionError: double(3) returned 9", "", None
    )


def test_check_prints_one_line_per_test_hint_first_then_the_numbers_then_the_total():
    assert summary_lines(TESTS) == [
        "PASS  test_stats    1/1",
        f"FAIL  test_forward  0/3  {EPS_HINT}",
        f"{'':20}{EPS_DETAILS}",
        "FAIL  test_blank    0/1  NotImplementedError: batchnorm_forward is not written",
        "HUMAN written_why   ?/2  needs a human grader",
        "total 1/5 auto-graded points; written answers: 2 points still to be graded by hand",
    ]
    result = SubmissionResult("self-study", "toy", "toy", TESTS)
    assert report(result).splitlines()[1:] == summary_lines(TESTS)


def test_the_total_counts_written_answers_a_person_graded():
    graded = [*TESTS[:3], CellGrade("written_why", 1.5, 2.0, "graded by hand", manual=True)]
    assert total_text(graded) == "total 1/5 auto-graded points; written answers: 1.5/2 points"


def test_the_feedback_summary_is_a_table_linking_each_test_to_its_cell():
    page = summary_html("carol", "02_batchnorm_forward", "02_batchnorm_forward", TESTS)
    rows = re.findall(r"<tr class=\"normlab-(\w+)\">(.*?)</tr>", page)
    assert [kind for kind, _ in rows] == ["pass", "fail", "fail", "human"]
    assert '<a href="#test_forward">test_forward</a>' in rows[1][1]
    assert rows[1][1].index(EPS_HINT) < rows[1][1].index("relative error 2.8e-06")
    assert "<td>0/3</td><td>FAIL</td>" in rows[1][1]
    assert "Student <b>carol</b>" in page and "lesson <b>02_batchnorm_forward</b>" in page
    assert "Total 1/5 auto-graded points; written answers: 2 points still" in page


def test_the_summary_escapes_what_a_student_controls():
    hostile = [CellGrade('t"><script>x</script>', 0.0, 1.0, "<img src=x onerror=alert(1)>")]
    page = summary_html("<b>eve</b>", "a", "n", hostile)
    assert "<script>" not in page and "<img" not in page and "<b>eve</b>" not in page


def test_a_failed_test_cell_shows_the_hint_before_the_numbers():
    nb = feedback_notebook(_graded([], [CellGrade("test_double", 0.0, 2.0, EPS_MESSAGE)]))
    assert [o.text for o in cell(nb, "test_double").outputs] == [
        f"failed: 0 / 2 points\n{EPS_HINT}\n{EPS_DETAILS}\n"
    ]


# --- math without scripts: LaTeX as MathML, still cleaned -----------------------------------


def test_markdown_math_becomes_mathml_and_no_dollar_is_left():
    nb = release()
    nb.cells.append(new_markdown_cell("Scale $\\gamma = 1$ and\n\n$$\\frac{x - \\mu}{\\sigma}$$"))
    shown = feedback_notebook(nb).cells[-1].source
    assert shown.count("<math") == 2 and 'display="block"' in shown and "<mfrac>" in shown
    assert "$" not in shown and "\n" not in shown  # one raw HTML line: markdown passes it through


def test_math_in_a_cell_stored_as_cleaned_html_becomes_mathml_too():
    nb = release()
    source = "Probe $x$, $a < b$:\n\n```python\nx = 1  # costs $5\n```\n\n$$\\frac{1}{D}$$"
    nb.cells.append(new_markdown_cell(source))  # highlighted code: stored as cleaned HTML
    result = SubmissionResult("ann", "toy", "toy", [], None, nbformat.writes(nb))
    stored = nbformat.reads(stored_notebook(result), as_version=4)
    assert stored.cells[-1].source.startswith('<div class="normlab-sanitized">')
    shown = feedback_notebook(stored).cells[-1].source
    assert shown.count("<math") == 3 and "<mfrac>" in shown
    assert re.sub(r"<[^>]+>", "", shown).count("$") == 1  # the one in the code: "costs $5"


def test_latex_that_cannot_be_converted_shows_as_code():
    assert latex_to_mathml("\\frac{") == "<code>\\frac{</code>"
    assert static_markdown("broken $\\frac{$ formula").count("<code>\\frac{</code>") == 1


def test_latex_cannot_smuggle_links_script_or_colours():
    for tex in (
        "\\href{javascript:alert(1)}{x}",
        "\\text{<script>alert(1)</script>}",
        "\\text{<img src=x onerror=alert(1)>}",
        "\\color{red}{x}",
        "\\style{background:red}{x}",
    ):
        html = static_markdown(f"${tex}$")
        _assert_only_allowed_markup(html)
        assert "javascript" not in html and "mathcolor" not in html, tex


def test_mathml_in_student_html_keeps_to_the_allowlist():
    for hostile in (
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
        '<math><maction actiontype="statusline">x<mtext>y</mtext></maction></math>',
        "<math><semantics><annotation-xml encoding=text/html><img src=x onerror=1>",
        '<math href="javascript:alert(1)" mathbackground="red"><mi style="x">x</mi></math>',
        '<math xmlns="http://example.org/evil"><mi>x</mi></math>',
        "<svg><math><style><img src=x onerror=alert(1)></style></math></svg>",
    ):
        cleaned = clean_html(hostile)
        _assert_only_allowed_markup(cleaned)
        _assert_only_allowed_markup(clean_html(cleaned))
    honest = '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mi>x</mi></math>'
    assert clean_html(honest) == honest


# Elements that run code, load things, or switch MathML back to HTML parsing (mXSS).
NEVER = {"script", "style", "iframe", "object", "embed", "svg", "maction", "semantics"}
NEVER |= {"annotation", "annotation-xml", "foreignobject", "mglyph", "malignmark"}


def _assert_only_allowed_markup(html: str) -> None:
    """``html`` as a browser parses it: allowlisted elements only, no event handler, no URL
    attribute but a safe one."""
    tree = html5lib.parse(html, namespaceHTMLElements=False)
    for element in tree.iter():
        tag = element.tag.split("}")[-1]
        if tag in ("html", "head", "body"):
            continue
        assert tag in TAGS | MATH_TAGS and tag not in NEVER, (tag, html)
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (name, html)
            assert "javascript" not in value.lower(), (name, html)
            assert "style" not in name.lower(), (name, html)
