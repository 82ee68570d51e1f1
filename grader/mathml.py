"""Markdown with its LaTeX turned into MathML when a page is written, so formulas render in any
browser without scripts or network (a feedback page opened from disk, or in an LMS that strips
scripts): ``$...$``, ``$$...$$`` and ``\\begin{env}...\\end{env}`` become ``<math>`` elements
(latex2mathml); what it cannot convert shows as its LaTeX source in ``<code>``, without the
dollar signs. The HTML returned is not yet clean: pass it through ``safehtml.clean_html``.
"""

from __future__ import annotations

from html import escape

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
    return MarkdownWithMath(renderer=MathMLRenderer(escape=False)).render(source)
