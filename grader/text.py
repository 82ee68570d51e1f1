"""Text the grader shows a person: student-controlled strings made safe for a terminal.

A student chooses file names, folder names (student ids), notebook contents and so the hints
and reasons the CLI prints. An escape sequence among them (ESC ``[2J``, OSC 8 links, a C1
CSI byte) would be obeyed by the instructor's terminal. ``printable`` shows every control
character as a visible escape instead, so a line reads the same on any terminal.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls; and the Unicode format and line/paragraph
# separators a terminal or editor may act on (bidirectional overrides reorder what is shown).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` with every control character (C0 but tab and newline, DEL, C1, Unicode
    format and separator characters) written as a visible ``\\xNN``/``\\uNNNN`` escape.
    ANSI escape sequences therefore lose their ESC and print as plain text."""
    return _CONTROL.sub(_visible, str(text))


def printable_line(text: object) -> str:
    """``printable(text)`` on one line: newlines and tabs are escaped too (for names and
    reasons inside a table cell or a ``not graded:`` line)."""
    return printable(text).replace("\t", "\\t").replace("\n", "\\n")
