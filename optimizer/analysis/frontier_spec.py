"""What a frontier sweeps: the sweep string read into a validated :class:`Sweep`, its values.

:func:`parse_sweep` refuses a sweep the case has nothing for (an unknown source or fund, a kind
with no money), naming what is valid; :func:`default_values` spans the values around the
case's own setting and :func:`check_values` checks a caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.cells import build_cells
from models.errors import OptionError
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.choices import SweepKind
from optimizer.formulation.exposures import check_cells, eligibility

SOURCE_KINDS = ("public", "private", "climate")
SWEEP_CHOICES = (
    "cvar_scale",
    "cvar_scale:<SOURCE>",
    "amount:<SOURCE>",
    "amount:public|private|climate",
    "depletion:<FUND>",
    "mobilization",
    "deforestation_priority",
)
"""Every sweep :func:`optimizer.analysis.frontier.frontier` accepts."""


def sweep_kind(sweep: str) -> SweepKind:
    """The kind (:class:`~optimizer.choices.SweepKind`) of a sweep string, e.g. ``"depletion:GP"`` →
    ``"depletion"``; no case needed, so a saved frontier can be labelled.

    Raises
    ------
    ValueError
        Not a sweep of any kind.
    """
    kind = str(sweep).partition(":")[0]
    if kind not in set(SweepKind):
        raise OptionError(f"sweep must be one of {', '.join(SWEEP_CHOICES)}; got {sweep!r}")
    return SweepKind(kind)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep.

    Attributes
    ----------
    name : str
        The sweep string, e.g. ``"amount:climate"``.
    kind : {"cvar_scale", "amount", "depletion", "mobilization", "deforestation_priority"}
    targets : tuple of str
        Sources (``cvar_scale``, ``amount``) or the fund (``depletion``) concerned.
    label : str
        What a value means, for tables and charts.
    base : float
        The value that leaves the case as it is (1 for a multiplier).
    multiplier : bool
        True when a value multiplies the case's figures, False when it replaces the figure.
    """

    name: str
    kind: str
    targets: tuple[str, ...]
    label: str
    base: float
    multiplier: bool


def _choices(ids: list[str] | tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "none in this case"


def parse_sweep(case: Case, scenarios: ScenarioSet | None, sweep: str) -> Sweep:
    """Validate a sweep string against the case; raise ValueError naming the valid choices.

    ``scenarios`` (checked against the case when given) may be None: the case's own cells are
    then used, so a command line can refuse a bad sweep before simulating.
    """
    head, _, arg = str(sweep).partition(":")
    src_ids = [s.id for s in case.sources]
    limited = [s.id for s in case.sources if s.cvar_alpha is not None]
    if head == "cvar_scale" and not limited:
        raise OptionError(f"sweep {sweep!r}: no source of case {case.name!r} has a CVaR limit")
    if sweep == "cvar_scale":
        return Sweep(
            sweep, "cvar_scale", tuple(limited), "scale on every funder's CVaR limit", 1.0, True
        )
    if head == "cvar_scale" and arg:
        if arg not in limited:
            raise OptionError(
                f"sweep {sweep!r}: {arg!r} is not a CVaR-limited source; choose from "
                f"{_choices(limited)}"
            )
        return Sweep(sweep, "cvar_scale", (arg,), f"scale on {arg}'s CVaR limit", 1.0, True)
    if head == "amount" and arg:
        if arg in src_ids:
            return Sweep(sweep, "amount", (arg,), f"multiple of {arg}'s money", 1.0, True)
        if arg in SOURCE_KINDS:
            ids = tuple(s.id for s in case.sources if s.kind.value == arg)
            if not ids:
                raise OptionError(f"sweep {sweep!r}: case {case.name!r} has no {arg} source")
            return Sweep(sweep, "amount", ids, f"multiple of all {arg} money", 1.0, True)
        raise OptionError(
            f"sweep {sweep!r}: unknown source {arg!r}; sources: {_choices(src_ids)}, or a kind: "
            f"{', '.join(SOURCE_KINDS)}"
        )
    if head == "depletion" and arg:
        cells = build_cells(case) if scenarios is None else check_cells(case, scenarios)
        covering = sorted(set(eligibility(case, cells).z_fund.tolist()))
        funds = [case.funds[g].id for g in covering]
        if arg not in funds:
            raise OptionError(
                f"sweep {sweep!r}: {arg!r} is not a fund that covers any lending in this case; "
                f"choose from {_choices(funds)}"
            )
        eps = next(f.max_depletion_probability for f in case.funds if f.id == arg)
        return Sweep(
            sweep, "depletion", (arg,), f"allowed depletion probability of {arg}", float(eps), False
        )
    if sweep == "mobilization":
        if not any(s.is_concessional for s in case.sources):
            raise OptionError(f"sweep {sweep!r}: case {case.name!r} has no concessional money")
        return Sweep(
            sweep,
            "mobilization",
            (),
            "private lending required per concessional US$",
            float(case.policy.min_private_per_concessional),
            False,
        )
    if sweep == "deforestation_priority":
        return Sweep(
            sweep,
            "deforestation_priority",
            (),
            "deforestation priority",
            float(case.policy.deforestation_priority),
            False,
        )
    raise OptionError(f"sweep must be one of {', '.join(SWEEP_CHOICES)}; got {sweep!r}")


def default_values(sweep: Sweep, points: int) -> np.ndarray:
    """``points`` values around the case's own: x0.5 to x2 for limits, 0 to x2 for money."""
    if sweep.kind == "cvar_scale":
        lo, hi = 0.5, 2.0
    elif sweep.kind == "amount":
        lo, hi = 0.0, 2.0
    elif sweep.kind == "depletion":
        lo, hi = sweep.base / 2, min(2 * sweep.base, (1 + sweep.base) / 2)
    else:  # a ratio or a priority: from none to twice the case's (at least to 1)
        lo, hi = 0.0, 2 * max(sweep.base, 0.5)
    return np.linspace(lo, hi, points)


def check_values(sweep: Sweep, values: Any) -> np.ndarray:
    """The values as a float array, or ValueError saying what is allowed."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise OptionError(f"values must be a non-empty 1-D list of finite numbers, got {values}")
    if sweep.kind == "depletion":
        if ((arr <= 0) | (arr >= 1)).any():
            raise OptionError(
                f"sweep {sweep.name!r}: values are depletion probabilities, each in (0, 1), "
                f"got {arr.tolist()}"
            )
    elif (arr < 0).any():
        what = "multipliers >= 0" if sweep.multiplier else f"{sweep.label} values >= 0"
        raise OptionError(f"sweep {sweep.name!r}: values must be {what}, got {arr.tolist()}")
    return arr
