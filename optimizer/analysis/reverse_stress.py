"""Reverse stress: how far a risk driver must move before a binding limit of a fixed
allocation breaks.

For every risk limit the allocation binds on (a funder's CVaR, expected-loss limit or return
hurdle; a fund's claims CVaR and depletion probability), :func:`reverse_stress` finds

- the smallest **PD multiplier** (every product's base PD times ``m``, up to
  :data:`MAX_PD_MULTIPLIER`) at which it breaks: each tried ``m`` is re-simulated with the
  base's recipe (common random numbers), on a grid (:data:`PD_GRID`) and then by bisection
  inside the bracket (:data:`PD_BISECTIONS` steps); the answer is the smallest multiplier
  tried that breaks, ``resolution`` above the largest that holds;
- the smallest **probability of each shock event** at which it breaks. The event is drawn
  independently of the rest of the year, so the base's own scenarios priced with weights
  ``π·q/q₀`` where it happened and ``π·(1 − q)/(1 − q₀)`` where it did not (normalised) are
  the year with probability ``q``: every ``q`` costs no simulation, ``q = q₀`` is the base
  evaluation to the digit, and a bisection of :data:`EVENT_BISECTIONS` steps follows the
  grid. Far above ``q₀`` it leans on the scenarios where the event happened (their count is
  ``n_event`` in the table).

The allocation is held as it stands (no money or uptake changes here), and a limit breaks as
in the limit checks (:func:`optimizer.analysis.limit_checks.breach`): beyond the optimiser's
tolerance, whatever the Monte Carlo error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import Case, Recipe, ScenarioSet
from models.case_edit import with_changes
from models.risk_measures import conditional_value_at_risk
from optimizer.analysis.evaluate import evaluate
from optimizer.analysis.holdings import Holdings, holdings_of
from optimizer.analysis.limit_checks import breach, income_before_loss
from optimizer.formulation.claims import DEPLETION_ATOL_USD, DEPLETION_RTOL
from optimizer.formulation.exposures import check_cells, fund_claims
from optimizer.result import Allocation

MAX_PD_MULTIPLIER = 3.0
PD_GRID = (1.25, 1.5, 2.0, MAX_PD_MULTIPLIER)
"""PD multipliers tried first; a limit that holds at the last one is reported as holding."""
PD_BISECTIONS = 3
"""Bisections of a limit's PD bracket (a grid step of 0.25 ends within 0.03)."""
EVENT_BISECTIONS = 10
"""Bisections of an event probability's bracket (within ``(1 − q₀)/1024``)."""
REVERSE_COLUMNS = (
    "owner_kind",
    "owner",
    "what",
    "bound",
    "limit",
    "unit",
    "value",
    "driver",
    "event",
    "base_setting",
    "n_event",
    "breaks_at",
    "resolution",
    "value_at_break",
    "status",
)
"""One row per binding limit and driver. ``driver`` is ``"pd_multiplier"`` or
``"event_probability"`` (``event`` names it); ``base_setting`` is 1 or the event's own
probability; ``n_event`` how many of the base's scenarios have the event (the ones a high
probability leans on; NaN for the PD multiplier); ``breaks_at`` the smallest setting found to break the limit (NaN when it holds
to the end of the range or is breached already), within ``resolution``; ``value_at_break`` the
limit's figure there; ``status`` ``"breaks"``, ``"holds"`` (up to
:data:`MAX_PD_MULTIPLIER` or probability 1) or ``"breached"`` (at the base setting)."""
_FAMILY_CHECKS = {
    "cvar_limit": ("source", ("cvar",)),
    "expected_loss_limit": ("source", ("expected_loss",)),
    "return_hurdle": ("source", ("return_hurdle",)),
    "fund_depletion": ("fund", ("claims_cvar", "depletion_probability")),
}


@dataclass(frozen=True)
class _Target:
    """One binding limit, as a row of the limit checks."""

    owner_kind: str
    owner: str
    what: str
    bound: str
    limit: float
    unit: str
    index: int  # the source's or fund's position in the case


@dataclass(frozen=True)
class _Losses:
    """Per-scenario figures of the holdings on one scenario set (or a mixture of two)."""

    total: np.ndarray  # (S, n_sources): each funder's whole loss
    lending: np.ndarray  # (S, n_sources): its loss on lending
    claims: np.ndarray  # (S, n_funds)
    p: np.ndarray  # (S,)

    def stacked_with(self, other: _Losses) -> _Losses:
        """This set's scenarios then ``other``'s (weights to be set: :meth:`weighted`)."""
        return _Losses(
            np.vstack([self.total, other.total]),
            np.vstack([self.lending, other.lending]),
            np.vstack([self.claims, other.claims]),
            np.concatenate([self.p, other.p]),
        )


def binding_targets(case: Case, allocation: Allocation, checks: pd.DataFrame) -> list[_Target]:
    """The risk limits the allocation binds on (its ``binding`` rows of a risk family),
    as rows of ``checks`` (an evaluation's limit checks of the same case)."""
    src_pos = {s.id: i for i, s in enumerate(case.sources)}
    fund_pos = {f.id: g for g, f in enumerate(case.funds)}
    out: list[_Target] = []
    seen: set[tuple[str, str]] = set()
    for row in allocation.binding.itertuples():
        kind_whats = _FAMILY_CHECKS.get(str(row.family))
        if kind_whats is None:
            continue
        kind, whats = kind_whats
        mine = checks[(checks["owner_kind"] == kind) & (checks["owner"] == row.subject)]
        for check in mine.itertuples():
            if check.what.startswith(whats) and (check.owner, check.what) not in seen:
                seen.add((check.owner, check.what))
                pos = src_pos if kind == "source" else fund_pos
                out.append(
                    _Target(
                        kind,
                        str(check.owner),
                        str(check.what),
                        str(check.bound),
                        float(check.limit),
                        str(check.unit),
                        pos[check.owner],
                    )
                )
    return out


def reverse_stress(
    case: Case,
    allocation: Allocation,
    recipe: Recipe,
    scenarios: ScenarioSet | None = None,
    on_step: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Per binding risk limit: the smallest PD multiplier and event probabilities that break it.

    Parameters
    ----------
    case : Case
        The case the allocation was optimised for.
    allocation : Allocation
        Held fixed, as it stands.
    recipe : Recipe
        How every set is drawn (count, seed, sampling): the base's, so every setting shares
        its random numbers.
    scenarios : ScenarioSet, optional
        ``recipe.draw(case)`` when already drawn (the headline's set).
    on_step : callable, optional
        Called with a short description before each draw.

    Returns
    -------
    DataFrame
        Columns :data:`REVERSE_COLUMNS`, limits in the order of ``allocation.binding``, the PD
        multiplier first, then each event in the case's order.
    """
    step = on_step or (lambda what: None)
    base = recipe.draw(case) if scenarios is None else scenarios
    cells = check_cells(case, base)
    holdings = holdings_of(case, allocation, cells)
    income = [income_before_loss(case, cells, holdings, s) for s in range(len(case.sources))]
    losses0 = _losses(case, holdings, base)
    checks = evaluate(case, allocation, base).checks
    targets = binding_targets(case, allocation, checks)
    if not targets:
        return pd.DataFrame(columns=list(REVERSE_COLUMNS))

    def figures(losses: _Losses) -> list[tuple[float, bool]]:
        out = []
        for t in targets:
            value = _figure(case, t, losses, holdings, income)
            out.append((value, breach(value, t.limit, t.bound, t.unit)[1]))
        return out

    at_base = figures(losses0)
    rows: list[dict] = []

    # PD multiplier: a draw per setting tried, shared by every limit
    tried: dict[float, list[tuple[float, bool]]] = {1.0: at_base}

    def at_pd(m: float) -> list[tuple[float, bool]]:
        if m not in tried:
            step(f"reverse stress: PD x {m:g}")
            edited = _pd_times(case, m)
            tried[m] = figures(_losses(edited, holdings, recipe.draw(edited)))
        return tried[m]

    for i, t in enumerate(targets):
        rows.append(_search(t, i, "pd_multiplier", "", 1.0, PD_GRID, PD_BISECTIONS, at_pd))

    # event probabilities: the base's own scenarios, reweighted to the event's new probability
    for event in case.risk_model.events:
        q0 = float(event.probability)
        if not 0.0 < q0 < 1.0 or event.id not in base.event_ids:
            continue
        hit = np.asarray(base.events[:, base.event_ids.index(event.id)], dtype=bool)
        cache: dict[float, list[tuple[float, bool]]] = {q0: at_base}

        def at_q(q: float, hit=hit, q0=q0, cache=cache) -> list[tuple[float, bool]]:
            if q not in cache:
                cache[q] = figures(
                    dataclasses.replace(losses0, p=_reweighted(losses0.p, hit, q, q0))
                )
            return cache[q]

        grid = tuple(q0 + (1.0 - q0) * k / 4 for k in range(1, 5))
        for i, t in enumerate(targets):
            row = _search(t, i, "event_probability", event.id, q0, grid, EVENT_BISECTIONS, at_q)
            rows.append({**row, "n_event": int(hit.sum())})
    return pd.DataFrame(rows, columns=list(REVERSE_COLUMNS))


def _search(
    t: _Target,
    i: int,
    driver: str,
    event: str,
    start: float,
    grid: tuple[float, ...],
    bisections: int,
    at: Callable[[float], list[tuple[float, bool]]],
) -> dict:
    """Bracket the smallest setting that breaks target ``i`` on ``grid``, then bisect."""
    value0, broken0 = at(start)[i]
    row = {
        "owner_kind": t.owner_kind,
        "owner": t.owner,
        "what": t.what,
        "bound": t.bound,
        "limit": t.limit,
        "unit": t.unit,
        "value": value0,
        "driver": driver,
        "event": event,
        "base_setting": start,
        "n_event": math.nan,
        "breaks_at": math.nan,
        "resolution": math.nan,
        "value_at_break": math.nan,
        "status": "breached" if broken0 else "holds",
    }
    if broken0:
        return row
    lo = start
    hi = next((g for g in grid if at(g)[i][1]), None)
    if hi is None:
        return row
    lo = max([g for g in grid if g < hi] + [start])
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if at(mid)[i][1] else (mid, hi)
    return {
        **row,
        "breaks_at": hi,
        "resolution": hi - lo,
        "value_at_break": at(hi)[i][0],
        "status": "breaks",
    }


def _reweighted(p: np.ndarray, hit: np.ndarray, q: float, q0: float) -> np.ndarray:
    """Scenario weights for the event's probability ``q`` instead of ``q0``: the likelihood
    ratio ``q/q0`` where it happened, ``(1 − q)/(1 − q0)`` where it did not (the event is
    drawn independently of everything else), normalised to sum to 1."""
    w = p * np.where(hit, q / q0, (1.0 - q) / (1.0 - q0))
    return w / w.sum()


def _losses(case: Case, holdings: Holdings, scenarios: ScenarioSet) -> _Losses:
    att = holdings.attribution(case, fund_claims(case, scenarios), scenarios.losses)
    p = np.asarray(scenarios.probabilities, dtype=np.float64)
    return _Losses(att.total, att.lending, att.claims, p)


def _figure(case: Case, t: _Target, losses: _Losses, h: Holdings, income: list[float]) -> float:
    """The target limit's figure on (possibly mixed) losses, as the limit checks compute it."""
    p, k = losses.p, t.index
    if t.owner_kind == "source":
        if t.what.startswith("cvar"):
            alpha = case.sources[k].cvar_alpha
            return conditional_value_at_risk(losses.total[:, k], alpha, p).value
        if t.what == "expected_loss":
            return float(p @ losses.total[:, k])
        return income[k] - float(p @ losses.lending[:, k])  # return hurdle
    fund = case.funds[k]
    claim = losses.claims[:, k]
    if t.what.startswith("claims_cvar"):
        return conditional_value_at_risk(claim, 1.0 - fund.max_depletion_probability, p).value
    capital = h.capital[:, k].sum()
    return float(p @ (claim > capital * (1 + DEPLETION_RTOL) + DEPLETION_ATOL_USD))


def _pd_times(case: Case, m: float) -> Case:
    """``case`` with every product's base PD times ``m`` (at most 1)."""
    changes = {f"products[{p.id}].base_pd": min(p.base_pd * m, 1.0) for p in case.products}
    return with_changes(case, changes)
