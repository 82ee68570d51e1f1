"""Student content made safe for the HTML an instructor opens: feedback pages and the
autograded notebook formgrader renders.

Everything a student controls in a notebook can reach those pages: markdown cells (answers,
and the lesson prose they may edit), raw cells, display outputs (``text/html``,
``image/svg+xml``, ``text/markdown``, widgets), output and cell metadata that templates put
into attributes, the notebook's title. nbconvert renders markdown with raw HTML and
``javascript:`` links passed through, so HTML is cleaned *after* rendering, with bleach (the
sanitizer nbconvert itself uses) and an allowlist: no script, no event handlers, no style or
class (which could dress student text as a verdict), links only to http(s), mailto or
relative URLs. MathJax macros that make links or load code (``\\href``, ``\\require``, ...)
lose their backslash.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid

import bleach
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from grader.mathml import markdown_to_html

TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl", "dt",
        "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol",
        "p", "pre", "q", "s", "samp", "span", "strong", "sub", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "u", "ul", "var",
    }
)  # fmt: skip
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Presentation MathML as latex2mathml writes it (``grader.mathml``), with layout attributes
# only: no href, no colour or style, no maction/semantics/annotation (they can carry HTML).
MATH_TAGS = frozenset(
    {
        "math", "mi", "mn", "mo", "ms", "mtext", "mspace", "mrow", "mfrac", "msqrt", "mroot",
        "msub", "msup", "msubsup", "mover", "munder", "munderover", "mstyle", "menclose",
        "mpadded", "mphantom", "mtable", "mtr", "mtd", "mfenced", "merror",
    }
)  # fmt: skip
MATH_ATTRIBUTES = frozenset(
    {
        "display", "mathvariant", "stretchy", "fence", "separator", "form", "accent",
        "accentunder", "lspace", "rspace", "minsize", "maxsize", "movablelimits", "largeop",
        "symmetric", "displaystyle", "scriptlevel", "width", "height", "depth", "voffset",
        "linethickness", "notation", "columnalign", "rowalign", "columnspacing", "rowspacing",
        "columnlines", "rowlines", "frame", "align", "open", "close", "separators",
    }
)  # fmt: skip
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"


def _allowed(tag: str, name: str, value: str) -> bool:
    """Bleach's attribute test: the allowlist below, plus what nbconvert gives a heading (an
    id and a pilcrow link of class ``anchor-link``), so honest headings stay markdown, and
    MathML's layout attributes."""
    if tag in HEADINGS and name == "id":
        return True
    if tag == "a" and name == "class":
        return value == "anchor-link"
    if tag in MATH_TAGS:
        return name in MATH_ATTRIBUTES or (name == "xmlns" and value == MATHML_NAMESPACE)
    return name in ATTRIBUTES.get(tag, ())


ATTRIBUTES = {
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align"],
    "ol": ["start"],
}
PROTOCOLS = frozenset({"http", "https", "mailto"})
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
PLAIN_TYPES = ("text/plain", "application/json")
METADATA_KEYS = ("nbgrader",)  # the only cell metadata a rendered page may use
_MACROS = re.compile(r"\\(?=(?:href|url|require|class|cssId|style|html|unicode)\b)")
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CLEANER = bleach.Cleaner(
    tags=TAGS | MATH_TAGS,
    attributes=_allowed,
    protocols=PROTOCOLS,
    strip=False,
    strip_comments=True,
)
REMOVED = "[{mime} output removed: it could run script in the page]"


def clean_html(html: str) -> str:
    """``html`` with only allowlisted tags, attributes and URL protocols (others escaped, so
    they show as text), and no MathJax macro that links or loads code."""
    return _CLEANER.clean(_MACROS.sub("\u2216", html))


MARKDOWN_CACHE = 4096
"""Distinct markdown sources each process keeps the cleaned form of: a lesson's own text is
the same in every student's notebook, so it is rendered and cleaned once per process, not once
per notebook (both functions below are pure functions of the source)."""


@functools.lru_cache(maxsize=MARKDOWN_CACHE)
def safe_markdown(source: str) -> str:
    """A markdown cell source that renders to clean HTML: ``source`` itself when its rendering
    is already clean, else that rendering, cleaned, as one raw HTML line (markdown passes a
    one-line ``<div>`` through untouched, whoever renders it)."""
    html = markdown2html_mistune(source)
    cleaned = clean_html(html)
    if cleaned == html and not _MACROS.search(source):
        return source
    return _one_line(cleaned, "normlab-sanitized")


@functools.lru_cache(maxsize=MARKDOWN_CACHE)
def static_markdown(source: str) -> str:
    """A markdown cell source for a page without scripts: ``source`` rendered with its LaTeX
    as MathML (``grader.mathml``), cleaned, as one raw HTML line."""
    return _one_line(clean_html(markdown_to_html(source)), "normlab-markdown")


def _one_line(cleaned: str, kind: str) -> str:
    one_line = cleaned.replace("\r", "").replace("\n", "&#10;")
    return f'<div class="{kind}">{one_line}</div>'


def safe_outputs(outputs: list) -> list:
    """``outputs`` with every display cleaned: HTML through ``clean_html``, markdown rendered
    and cleaned, images only as valid base64 PNG/JPEG/GIF, text and JSON as they are; any other
    type (SVG, JavaScript, widgets, LaTeX) replaced by a note. Output metadata is dropped but
    numeric image sizes."""
    for output in outputs:
        if output.get("output_type") not in ("display_data", "execute_result"):
            continue
        output["data"] = _safe_data(output.get("data", {}))
        output["metadata"] = _image_sizes(output.get("metadata", {}))
    return outputs


def _safe_data(data: dict) -> dict:
    safe, removed = {}, []
    for mime, value in data.items():
        text = "".join(value) if isinstance(value, list) else value
        if not isinstance(text, str):
            removed.append(mime)
        elif mime in PLAIN_TYPES:
            safe[mime] = text
        elif mime == "text/html":
            safe[mime] = clean_html(text)
        elif mime == "text/markdown":
            safe["text/html"] = clean_html(markdown2html_mistune(text))
        elif mime in IMAGE_TYPES and _is_base64(text):
            safe[mime] = text
        else:
            removed.append(mime)
    if removed and not safe:
        safe["text/plain"] = "\n".join(REMOVED.format(mime=m) for m in removed)
    return safe


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _image_sizes(metadata: dict) -> dict:
    kept = {}
    for mime in IMAGE_TYPES:
        sizes = metadata.get(mime)
        if isinstance(sizes, dict):
            numbers = {
                k: v
                for k, v in sizes.items()
                if k in ("width", "height") and isinstance(v, int) and not isinstance(v, bool)
            }
            if numbers:
                kept[mime] = numbers
    return kept


def safe_notebook(nb):
    """``nb`` (in place) as an instructor's browser may render it: markdown and raw cells
    through ``safe_markdown``/``clean_html``, outputs through ``safe_outputs``, attachments
    only as valid base64 images, cell metadata but ``nbgrader`` dropped, cell ids valid, and
    no notebook metadata a template could print (title, authors)."""
    for cell in nb.cells:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in METADATA_KEYS}
        if "id" in cell and not _CELL_ID.match(str(cell["id"])):
            cell["id"] = uuid.uuid4().hex[:8]
        if cell.cell_type == "markdown":
            cell.source = safe_markdown(cell.source)
            _keep_image_attachments(cell)
        elif cell.cell_type == "raw":
            cell.source = clean_html(cell.source)
            _keep_image_attachments(cell)
        elif cell.cell_type == "code":
            cell.outputs = safe_outputs(cell.get("outputs", []))
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    return nb


def _keep_image_attachments(cell) -> None:
    attachments = cell.get("attachments")
    if not attachments:
        return
    kept = {}
    for name, bundle in attachments.items():
        images = {m: v for m, v in bundle.items() if m in IMAGE_TYPES and _is_base64(v)}
        if images and re.fullmatch(r"[\w.-]{1,128}", name):
            kept[name] = images
    cell["attachments"] = kept
