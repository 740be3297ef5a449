"""Typed errors of the ``models`` layer.

Every error says what is wrong and what would be valid, so a risk analyst can fix a case file
without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    file: str
    field: str
    value: str
    message: str

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
