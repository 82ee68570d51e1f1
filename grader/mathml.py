"""Markdown with its LaTeX turned into MathML when a page is written, so formulas render in any
browser without scripts or network (a feedback page opened from disk, or in an LMS that strips
scripts): ``$...$``, ``$$...$$`` and ``\\begin{env}...\\end{env}`` become ``<math>`` elements
(latex2mathml); what it cannot convert shows as its LaTeX source in ``<code>``, without the
dollar signs. TeX already inside HTML text (a cell ``safehtml.safe_markdown`` stored as cleaned
HTML, e.g. one with highlighted code) is converted too. The HTML returned is not yet clean:
pass it through ``safehtml.clean_html``.
"""

from __future__ import annotations

import re
from html import escape, unescape

from latex2mathml.converter import convert
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath


def latex_to_mathml(tex: str, display: bool = False) -> str:
    """``<math>`` for the LaTeX ``tex`` (block when ``display``), or ``<code>tex</code>`` when
    latex2mathml cannot convert it (any error, deep nesting included)."""
    try:
        return convert(tex, display="block" if display else "inline")
    except Exception:  # latex2mathml raises many types on malformed input
        return f"<code>{escape(tex, quote=False)}</code>"


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer with math written as MathML instead of left for MathJax."""

    def block_math(self, body: str) -> str:
        return latex_to_mathml(body, display=True)

    def latex_environment(self, name: str, body: str) -> str:
        return latex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    def inline_math(self, body: str) -> str:
        return latex_to_mathml(body)


def markdown_to_html(source: str) -> str:
    """``source`` (a markdown cell) rendered as nbconvert renders it, math as MathML."""
    html = MarkdownWithMath(renderer=MathMLRenderer(escape=False)).render(source)
    return text_math_to_mathml(html)


_TAG = re.compile(r"(<[^>]*>)")
_TAG_NAME = re.compile(r"</?\s*([a-zA-Z0-9]+)")
_TEXT_MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$", re.DOTALL)
VERBATIM = ("code", "pre")


def text_math_to_mathml(html: str) -> str:
    """``html`` with the ``$$...$$`` and ``$...$`` in its text (not inside code or pre, not
    across tags) as MathML."""
    parts, verbatim = [], 0
    for part in _TAG.split(html):
        name = _TAG_NAME.match(part) if part.startswith("<") else None
        if name and name.group(1).lower() in VERBATIM:
            verbatim = max(0, verbatim + (-1 if part.startswith("</") else 1))
        parts.append(part if part.startswith("<") or verbatim else _TEXT_MATH.sub(_math, part))
    return "".join(parts)


def _math(found: re.Match) -> str:
    display = found.group(1) is not None
    return latex_to_mathml(unescape(found.group(1) if display else found.group(2)), display)
