"""User text made safe to show: on a terminal, in an error message, in a report.

Names, ids, file names and values come from people's files. A control character in them (an
ANSI escape such as ``ESC[2J`` clears the screen) or a file-name byte that is not UTF-8 (Latin-1
``Junín.yaml`` decodes to a lone surrogate that no UTF-8 writer accepts) must reach the reader
as visible text, never as an effect or a crash.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 and C1 control characters and DEL; tab and newline stay (they only lay text out)."""


def printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes written as ``\\xNN`` escapes.

    Examples
    --------
    >>> printable("a\\x1b[2Jb")
    'a\\\\x1b[2Jb'
    >>> printable("Jun\\udcedn.yaml")
    'Jun\\\\xedn.yaml'
    """
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
