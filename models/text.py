"""User text made safe to show: on a terminal, in an error message, in a report.

Names, ids, file names and values come from people's files. A control character in them (an
ANSI escape such as ``ESC[2J`` clears the screen) or a file-name byte that is not UTF-8 (Latin-1
``Junín.yaml`` decodes to a lone surrogate that no UTF-8 writer accepts) must reach the reader
as visible text, never as an effect or a crash.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters, DEL and the bidirectional controls (U+202E shows text
backwards); tab and newline stay (they only lay text out)."""


def printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes written as ``\\xNN`` escapes.

    Examples
    --------
    >>> printable("a\\x1b[2Jb")
    'a\\\\x1b[2Jb'
    >>> printable("Jun\\udcedn.yaml")
    'Jun\\\\xedn.yaml'
    >>> printable("abc\\u202edef")
    'abc\\\\u202edef'
    """
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
