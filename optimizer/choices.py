"""The optimizer's vocabulary: each set of named choices once, as an enum.

Options are checked against these by :func:`models.options.check_choice`, so every layer
refuses a bad one with the same sentence (the option, the value, the valid values).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAILED_STATUSES", "CvarMethod", "PointStatus", "Solver", "SweepKind"]


class CvarMethod(StrEnum):
    """How the CVaR rows are solved: one LP with a row per scenario (Rockafellar–Uryasev, the
    reference), the cutting plane, or ``auto`` (the cutting plane, on every scenario set:
    :func:`optimizer.solve.auto_method`)."""

    auto = "auto"
    lp = "lp"
    cutting_plane = "cutting_plane"


class Solver(StrEnum):
    """The LP solvers ppcfin runs; the one not chosen is the other's fallback."""

    HIGHS = "HIGHS"
    CLARABEL = "CLARABEL"


class SweepKind(StrEnum):
    """What a frontier's swept value is: a multiplier of the case's CVaR limits or money, a
    fund's depletion probability, private US$ per concessional US$, or a priority weight."""

    cvar_scale = "cvar_scale"
    amount = "amount"
    depletion = "depletion"
    mobilization = "mobilization"
    deforestation_priority = "deforestation_priority"


class PointStatus(StrEnum):
    """How one re-solved point of an analysis ended (a frontier, sensitivity or stress row):
    solved (cvxpy's two optimal statuses), infeasible (``reason`` says what must give), failed
    (no usable answer from either solver), or invalid (the changed case fails the case checks)."""

    optimal = "optimal"
    optimal_inaccurate = "optimal_inaccurate"
    infeasible = "infeasible"
    failed = "failed"
    invalid = "invalid"


FAILED_STATUSES = (PointStatus.infeasible.value, PointStatus.failed.value)
"""Statuses of frontier points without a solution (their ``reason`` says why)."""
