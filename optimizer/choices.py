"""The optimizer's vocabulary: each set of named choices once, as an enum.

Options are checked against these by :func:`models.options.check_choice`, so every layer
refuses a bad one with the same sentence (the option, the value, the valid values).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CvarMethod", "Solver"]


class CvarMethod(StrEnum):
    """How the CVaR rows are solved: one LP with a row per scenario (Rockafellar–Uryasev, the
    reference), the cutting plane, or ``auto`` (the cutting plane above 5,000 scenarios or on
    widely weighted ones: :func:`optimizer.solve.auto_method`)."""

    auto = "auto"
    lp = "lp"
    cutting_plane = "cutting_plane"


class Solver(StrEnum):
    """The LP solvers ppcfin runs; the one not chosen is the other's fallback."""

    HIGHS = "HIGHS"
    CLARABEL = "CLARABEL"
