"""ppcfin's one error tree, and the typed errors of the ``models`` layer.

Every error ppcfin raises on purpose descends from :class:`PpcfinError`, in one of three
branches named by what the user does about it:

- :class:`InputError`: something given must change (a case, an option's value, a saved file,
  a scenario set of another case); nothing was done. Exit code 2.
- :class:`ComputationError`: good input the machine or the solver could not carry through (no
  usable answer, lost workers). Exit code 1, except :class:`~optimizer.errors.InfeasibleCase`
  (2: the case as given has no answer).
- :class:`OutputError`: an output that cannot be written (1), or a folder ppcfin may not
  replace (:class:`~optimizer.door.outputs.OutputRefused`, 2).

Two layer families, :class:`SimulationError` and :class:`~optimizer.errors.OptimizerError`,
group errors by the layer that raises them, for callers that catch them so; each error they
hold is also in one branch. Each class's ``exit_code`` is the command line's exit code for it.
Anything else reaching the command line is a bug (:mod:`optimizer.door.cli_errors`).

Every error says what is wrong and what would be valid, so a risk analyst can fix a case file
without reading code. This module sits at the bottom of the layers (everything imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import ClassVar

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


class PpcfinError(Exception):
    """Root of every error ppcfin raises on purpose; anything else is a bug."""

    exit_code: ClassVar[int] = 1
    """The command line's exit code for this error."""


class InputError(PpcfinError):
    """Something the user gave that must change before ppcfin can do the work (exit 2)."""

    exit_code = 2


class OptionError(InputError, ValueError):
    """An argument that cannot be used: an option's value (``n_jobs``, ``method``, ``points``,
    ``shock``...) or arguments that do not belong together (an allocation of another case).

    Still a ``ValueError``, as the Python API's ``Raises`` sections say. The message names the
    argument, the value given and what would be valid.
    """


class ComputationError(PpcfinError):
    """Good input the machine or the solver could not carry through (exit 1)."""

    exit_code = 1


class OutputError(PpcfinError):
    """An output file or directory that cannot be written; earlier outputs are intact."""

    exit_code = 1


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


class CaseError(InputError, ValueError):
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


class SimulationError(PpcfinError, ValueError):
    """The family of the Monte Carlo simulator's errors: :class:`SimulationOptionError` (bad
    arguments) and :class:`~models.workers.WorkersLost` (the machine could not run it)."""

    exit_code = 2


class SimulationOptionError(SimulationError, OptionError):
    """Bad arguments to the Monte Carlo simulator (scenario count, method, seed, more scenarios
    than memory holds, a dask scheduler that cannot be reached...)."""


class ScenarioFileError(InputError, ValueError):
    """A saved scenario set that cannot be read: missing, truncated or of another format version."""
