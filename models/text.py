"""User text made safe to show: on a terminal, in an error message, in a report.

Names, ids, file names and values come from people's files. A control character in them (an
ANSI escape such as ``ESC[2J`` clears the screen) or a file-name byte that is not UTF-8 (Latin-1
``Junín.yaml`` decodes to a lone surrogate that no UTF-8 writer accepts) must reach the reader
as visible text, never as an effect or a crash.
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""C0 and C1 control characters, DEL and the bidirectional controls (U+202E shows text
backwards), as a regex character class: the one definition of a control character."""
_ANY_CONTROL = re.compile(f"[{_CONTROLS}]")
_CONTROL = re.compile(f"(?![\\t\\n])[{_CONTROLS}]")
"""What :func:`printable` escapes: every control character but tab and newline (they only lay
text out)."""


def first_control(text: str, allowed: str = "") -> tuple[int, str] | None:
    """Position (1-based) and ``U+XXXX`` code of the first control character not in ``allowed``.

    Examples
    --------
    >>> first_control("ab\\u202ecd")
    (3, 'U+202E')
    >>> first_control("a\\tb", allowed="\\t") is None
    True
    """
    for match in _ANY_CONTROL.finditer(text):
        if match[0] not in allowed:
            return match.start() + 1, f"U+{ord(match[0]):04X}"
    return None


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
