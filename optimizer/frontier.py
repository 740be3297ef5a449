"""Efficient frontiers: the optimal gap against a swept risk appetite or amount of money.

The allocation problem is compiled once; each point only changes cvxpy parameter values (DPP),
so a sweep re-solves one compiled problem instead of rebuilding it. A point that fails stays in
the table with its reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.errors import OptimizerError
from optimizer.problem import USD_PER_UNIT, build_problem
from optimizer.solve import PROGRAMME_FAMILIES, binding_constraints, solve_stage

FRONTIER_COLUMNS = (
    "value", "weighted_gap_usd", "gap_closed_usd", "gap_closed_share", "public_usd",
    "private_usd", "climate_usd", "binding", "status", "reason", "seconds",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Frontier:
    """One row per swept value (in sweep order), failed points included.

    Attributes
    ----------
    sweep : str
        ``"cvar_scale"`` (every funder's CVaR limit times the value) or ``"amount:<SOURCE>"``
        (that source's money times the value).
    label : str
        What the value means, for tables and charts.
    table : DataFrame
        Columns :data:`FRONTIER_COLUMNS`; money in US$.
    compiled_once : bool
        True when every point re-used the first point's compiled problem.
    """

    sweep: str
    label: str
    table: pd.DataFrame
    compiled_once: bool


def _parse_sweep(case: Case, sweep: str) -> tuple[str, str | None, str]:
    if sweep == "cvar_scale":
        return "cvar_scale", None, "scale on every funder's CVaR limit"
    if sweep.startswith("amount:"):
        sid = sweep.split(":", 1)[1]
        ids = [s.id for s in case.sources]
        if sid not in ids:
            raise ValueError(f"sweep {sweep!r}: unknown source {sid!r}; sources: {', '.join(ids)}")
        return "amount", sid, f"multiple of {sid}'s money"
    raise ValueError(f"sweep must be 'cvar_scale' or 'amount:<SOURCE_ID>', got {sweep!r}")


def frontier(
    case: Case,
    scenarios: ScenarioSet,
    sweep: str = "cvar_scale",
    values: np.ndarray | list[float] | None = None,
    points: int = 7,
    solver: str = "HIGHS",
) -> Frontier:
    """Sweep a risk appetite or an amount and record the optimal (stage-1) gap at each point.

    Parameters
    ----------
    case, scenarios
        As for :func:`optimizer.optimize`.
    sweep : {"cvar_scale", "amount:<SOURCE_ID>"}
    values : array_like, optional
        Multipliers to sweep; default ``points`` values from 0.5 to 2 (``cvar_scale``) or 0 to 2
        (``amount``).
    points : int
        Number of default values.

    Returns
    -------
    Frontier
    """
    kind, source, label = _parse_sweep(case, sweep)
    if values is None:
        values = np.linspace(0.5 if kind == "cvar_scale" else 0.0, 2.0, int(points))
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0 or (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(
            f"values must be a non-empty list of finite multipliers >= 0, got {values}"
        )
    prob = build_problem(case, scenarios, "lp")
    base_amount = prob.amount.value.copy()
    rows, programs = [], set()
    for value in values:
        if kind == "cvar_scale" and prob.cvar_scale is not None:
            prob.cvar_scale.value = np.full(prob.cvar_scale.shape, value)
        elif kind == "amount":
            amount = base_amount.copy()
            amount[[s.id for s in case.sources].index(source)] *= value
            prob.amount.value = amount
        start = time.perf_counter()
        rows.append(_solve_point(prob, case, float(value), solver))
        rows[-1]["seconds"] = time.perf_counter() - start
        cache = getattr(prob.problem, "_cache", None)
        programs.add(id(getattr(cache, "param_prog", None)))
    table = pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))
    return Frontier(sweep=sweep, label=label, table=table, compiled_once=len(programs) == 1)


def _solve_point(prob, case: Case, value: float, solver: str) -> dict:
    row: dict = {"value": value}
    try:
        solve_stage(prob, 1, solver)
    except OptimizerError as exc:
        return {**row, "status": "failed", "reason": str(exc)}
    e = prob.elig
    spend = (
        np.bincount(e.x_source, prob.x.value, minlength=len(case.sources))
        + np.bincount(e.c_source, prob.c.value, minlength=len(case.sources))
        + np.bincount(e.t_source, prob.t.value, minlength=len(case.sources))
    ) * USD_PER_UNIT
    kinds = np.array([s.kind.value for s in case.sources])
    gap = case.total_gap_usd
    unmet = float(np.clip(prob.weighted_gap.value, 0, None))  # weighted, US$m
    credit = float(np.bincount(e.x_source, prob.x.value).sum()) * USD_PER_UNIT
    binding = binding_constraints(prob)
    binding = binding[binding["family"].isin(PROGRAMME_FAMILIES) & (binding["shadow_price"] > 1e-6)]
    return {
        **row,
        "weighted_gap_usd": unmet * USD_PER_UNIT,
        "gap_closed_usd": min(credit, gap),
        "gap_closed_share": min(credit, gap) / gap if gap > 0 else 0.0,
        "public_usd": float(spend[kinds == "public"].sum()),
        "private_usd": float(spend[kinds == "private"].sum()),
        "climate_usd": float(spend[kinds == "climate"].sum()),
        "binding": "; ".join(f"{r.family} {r.subject}" for r in binding.itertuples()),
        "status": str(prob.problem.status),
        "reason": "",
    }
