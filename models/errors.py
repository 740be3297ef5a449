"""Typed errors of the ``models`` layer.

Every error says what is wrong and what would be valid, so a risk analyst can fix a case file
without reading code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from models.text import printable

_LAYOUT = re.compile("[\t\n\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")
"""What :func:`models.text.printable` leaves and one line of a message may not hold: tab and
newline (they would break the line), line and paragraph separators, and bidirectional-text
controls (shown raw they reorder what a terminal displays around them)."""


def one_line(text: str) -> str:
    """``text`` as one printable line: :func:`models.text.printable`, tab, newline and
    bidirectional controls escaped too (``\\t``, ``\\n``, ``\\u202e``).

    Parameters
    ----------
    text : str
        Any text (a value, a field path, a file name, a message).

    Returns
    -------
    str
        The same text with no control character left raw; unchanged when it holds none.
    """
    text = printable(text)
    if text.isprintable():  # the common case, in C
        return text
    return _LAYOUT.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True)
class CaseProblem:
    """One thing wrong with a case.

    Attributes
    ----------
    file : str
        The file the value came from (the YAML case, an overlay or a CSV table).
    field : str
        Dotted field path, e.g. ``sources[PRIV_MFI].cvar_limit_share``; CSV rows add the line.
    value : str
        The offending value as text (shortened when long), or ``"-"`` when the field is missing.
    message : str
        What is wrong and what would be valid.

    Every part is stored through :func:`one_line`: a problem never carries a raw control
    character nor a line break, whatever the case file or its file name holds.
    """

    file: str
    field: str
    value: str
    message: str

    def __post_init__(self) -> None:
        for part in fields(self):
            # frozen: set through object, once, before anyone can read the raw text
            object.__setattr__(self, part.name, one_line(str(getattr(self, part.name))))

    def __str__(self) -> str:
        return f"{self.file}: {self.field} = {self.value}: {self.message}"


class CaseError(ValueError):
    """A case file that cannot be used; lists every problem found, not just the first."""

    def __init__(self, problems: list[CaseProblem] | tuple[CaseProblem, ...]):
        self.problems: tuple[CaseProblem, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the case"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))

    @property
    def fields(self) -> list[str]:
        """The field paths of every problem, in the order found."""
        return [p.field for p in self.problems]


class SimulationError(ValueError):
    """Bad arguments to the Monte Carlo simulator (scenario count, method, seed...)."""


class ScenarioFileError(ValueError):
    """A saved scenario set that cannot be read: missing, truncated or of another format version."""
