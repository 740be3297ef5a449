"""Random risk limits as rows, and confidence margins written back into a case.

:func:`limit_rows` picks, from an :class:`~optimizer.analysis.evaluate.Evaluation`'s checks, the
limits whose figure is a Monte Carlo estimate (:data:`LIMIT_FAMILIES`), each keyed by its problem
family and owner. :func:`tightened_case` writes US$ margins into a copy of the case in the case's
own terms (a CVaR limit in US$ or as a share of commitment, an EL or hurdle rate of lending, a
fund's depletion level ε), and :func:`applied_margins` reads back, at an allocation, how many US$
each tightened limit stands inside the case's own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from models.risk_measures import conditional_value_at_risk
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.evaluate import Evaluation
from optimizer.analysis.holdings import holdings_of
from optimizer.analysis.limit_checks import BREACH_ATOL_USD, BREACH_RTOL
from optimizer.formulation.exposures import owner_losses
from optimizer.formulation.problem import depletion_floor
from optimizer.result import Allocation

LIMIT_FAMILIES = ("cvar_limit", "expected_loss_limit", "return_hurdle", "fund_depletion")
"""The limits whose figure is a Monte Carlo estimate, as :mod:`optimizer.formulation.problem`
names them."""
STABLE_SE = 0.1
"""A margin is stable within this many standard errors of ``z · SE`` (a tenth of an SE moves
the confidence level by under 4 points)."""
MARGIN_COLUMNS = (
    "family",
    "owner_kind",
    "owner",
    "what",
    "bound",
    "value_usd",
    "limit_usd",
    "std_error_usd",
    "margin_usd",
    "margin_in_se",
    "upper_bound_usd",
    "validation_value_usd",
    "validation_std_error_usd",
    "binding",
    "holds",
)
"""The columns of :attr:`optimizer.analysis.confidence.LimitConfidence.margins`."""


def limit_family(what: str, owner_kind: str) -> str | None:
    """The problem family of an evaluation check row, or None if it is not a random limit."""
    if owner_kind == "source":
        if what.startswith("cvar"):
            return "cvar_limit"
        return {"expected_loss": "expected_loss_limit", "return_hurdle": "return_hurdle"}.get(what)
    return "fund_depletion" if what.startswith("claims_cvar") else None


def limit_rows(ev: Evaluation) -> pd.DataFrame:
    """The rows of ``ev.checks`` that are random limits, with their ``family`` added."""
    checks = ev.checks
    family = [limit_family(w, k) for w, k in zip(checks["what"], checks["owner_kind"], strict=True)]
    out = checks.assign(family=family)
    return out[out["family"].notna()].reset_index(drop=True)


def limit_key(row: Any) -> tuple[str, str]:
    """A limit row's key: (family, owner id)."""
    return (row.family, row.owner)


def limit_room(r: Any) -> float:
    """How far a limit row's figure is inside its limit, US$ (negative: beyond it)."""
    return -float(r.excess)


def limit_tolerance(r: Any) -> float:
    """The breach tolerance of a limit row, US$ (as :mod:`optimizer.analysis.limit_checks`
    applies it)."""
    return BREACH_RTOL * abs(float(r.limit)) + BREACH_ATOL_USD


def margin_targets(
    ev: Evaluation, z: float, validation: Evaluation | None = None
) -> dict[tuple[str, str], float]:
    """The margin each random limit needs at the evaluated allocation, US$.

    ``z · SE`` of the in-sample figure; with ``validation`` (the same allocation evaluated on
    independent scenarios), ``z · SE_v`` plus how much worse the validation measured the
    figure (``value_v − value`` for a ``"max"`` limit, ``value − value_v`` for a ``"min"``
    one), at least 0: the in-sample limit less this margin puts the validation's upper bound
    ``value_v + z · SE_v`` on the limit. Validation identical to ``ev`` gives ``z · SE``.
    """
    rows = limit_rows(ev)
    if validation is None:
        return {limit_key(r): z * float(r.std_error) for r in rows.itertuples()}
    held = {limit_key(r): r for r in limit_rows(validation).itertuples()}
    out = {}
    for r in rows.itertuples():
        v = held[limit_key(r)]
        sign = 1.0 if r.bound == "max" else -1.0
        out[limit_key(r)] = max(
            z * float(v.std_error) + sign * (float(v.value) - float(r.value)), 0.0
        )
    return out


def tightened_case(
    case: Case,
    ev: Evaluation,
    margins: dict[tuple[str, str], float],
    scenarios: ScenarioSet,
    claims: Any,
    cells: pd.DataFrame,
    allocation: Allocation,
) -> Case:
    """``case`` with each random limit tighter by its margin (US$ at ``ev``'s allocation).

    Limits written as a share or a rate (CVaR share of commitment, EL and hurdle rates of
    lending) move by the margin over the volume they scale with, so the margin is exact at
    this allocation and scales with it; a fund's depletion level ε moves to the ε' whose
    claims CVaR is the margin above the ε one (on these claims).
    """
    raw = case.model_dump()
    src = ev.sources.set_index("source")
    for s in raw["sources"]:
        sid = s["id"]
        lend = float(src.at[sid, "lending_usd"])
        m = margins.get(("cvar_limit", sid), 0.0)
        if m > 0 and s["cvar_limit_usd"] is not None:
            s["cvar_limit_usd"] = max(s["cvar_limit_usd"] - m, 0.0)
        elif m > 0 and s["cvar_limit_share"] is not None:
            limit = float(src.at[sid, "cvar_limit_usd"])
            s["cvar_limit_share"] *= max(1.0 - m / limit, 0.0) if limit > 0 else 1.0
        m = margins.get(("expected_loss_limit", sid), 0.0)
        at_risk = lend + float(src.at[sid, "capital_usd"])
        if m > 0 and at_risk > 0:
            s["expected_loss_limit_rate"] = max(s["expected_loss_limit_rate"] - m / at_risk, 0.0)
        m = margins.get(("return_hurdle", sid), 0.0)
        if m > 0 and lend > 0:
            s["return_hurdle_rate"] = min(s["return_hurdle_rate"] + m / lend, 2.0)
    room = {
        r.owner: -float(r.excess)
        for r in limit_rows(ev).itertuples()
        if r.family == "fund_depletion"
    }
    fund_claim = None
    for g, f in enumerate(raw["funds"]):
        m = margins.get(("fund_depletion", f["id"]), 0.0)
        if m <= 0 or room.get(f["id"], 0.0) > 2.0 * m:
            # far inside its capital, a fund's level is left alone (the bisection costs ~60
            # CVaRs); should the re-solve bring it within its margin, the next round tightens it
            continue
        if fund_claim is None:
            fund_claim = _fund_losses(case, allocation, scenarios, claims, cells)
        f["max_depletion_probability"] = depletion_level(
            fund_claim[:, g], f["max_depletion_probability"], m, scenarios.probabilities
        )
    return Case.model_validate(raw)


def _fund_losses(case, allocation, scenarios, claims, cells) -> np.ndarray:
    """Each fund's scenario claims under ``allocation``, shape (n_scenarios, n_funds), US$."""
    h = holdings_of(case, allocation, cells)
    return owner_losses(scenarios.losses, claims, h.lending, h.covered)[1]


def depletion_level(claim: np.ndarray, eps: float, margin_usd: float, p: np.ndarray) -> float:
    """The ε' <= ε with ``CVaR_{1−ε'}(claim) = CVaR_{1−ε}(claim) + margin`` (bisection).

    The worst scenario (ε' at the smallest scenario probability) is as tight as these
    scenarios can hold the fund; a margin beyond it is taken there.
    """
    p = np.asarray(p, dtype=np.float64)
    floor = max(depletion_floor(p), 1e-15)
    target = conditional_value_at_risk(claim, 1.0 - eps, p).value + margin_usd

    def cvar(level: float) -> float:
        return float(conditional_value_at_risk(claim, 1.0 - level, p).value)

    lo, hi = floor, eps  # CVaR(lo) is the largest; CVaR decreases as ε grows
    if eps <= floor or cvar(lo) <= target:
        return min(floor, eps)
    for _ in range(60):  # on log ε: a relative width of 1e-9 within 60 halvings
        mid = math.sqrt(lo * hi)
        if cvar(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.0 + 1e-9:
            break
    return hi


def applied_margins(
    tightened: Case,
    ev: Evaluation,
    scenarios: ScenarioSet,
    claims: Any,
    cells: pd.DataFrame,
    allocation: Allocation,
) -> dict[tuple[str, str], float]:
    """The margin each tightened limit held at ``ev``'s allocation, US$ (limit minus tightened).

    The tightened limits are read off ``tightened`` at the volumes of ``ev`` (no second
    evaluation); a fund's is its claims CVaR at the tightened level less the one at its own.
    """
    out: dict[tuple[str, str], float] = {}
    src = ev.sources.set_index("source")
    fund_claim = None
    for r in limit_rows(ev).itertuples():
        key = limit_key(r)
        if r.family == "fund_depletion":
            g = [f.id for f in tightened.funds].index(r.owner)
            eps_t = tightened.funds[g].max_depletion_probability
            if eps_t == float(ev.funds.set_index("fund").at[r.owner, "max_depletion_probability"]):
                out[key] = 0.0  # its level was not moved
                continue
            if fund_claim is None:
                fund_claim = _fund_losses(tightened, allocation, scenarios, claims, cells)
            p = scenarios.probabilities
            tight_cvar = float(conditional_value_at_risk(fund_claim[:, g], 1 - eps_t, p).value)
            out[key] = tight_cvar - float(r.value)
            continue
        s = tightened.finance_source(r.owner)
        lend = float(src.at[r.owner, "lending_usd"])
        if r.family == "cvar_limit":
            commit = lend + float(src.at[r.owner, "capital_usd"])
            limit = (
                s.cvar_limit_usd if s.cvar_limit_usd is not None else s.cvar_limit_share * commit
            )
            out[key] = float(r.limit) - float(limit)
        elif r.family == "expected_loss_limit":
            at_risk = lend + float(src.at[r.owner, "capital_usd"])
            out[key] = float(r.limit) - s.expected_loss_limit_rate * at_risk
        else:  # return_hurdle, a "min" row: the tightened hurdle asks for more
            out[key] = s.return_hurdle_rate * lend - float(r.limit)
    return out


def margin_table(
    ev: Evaluation,
    validation: Evaluation | None,
    applied: dict[tuple[str, str], float],
    z: float,
) -> pd.DataFrame:
    """The margins table (:data:`MARGIN_COLUMNS`) of ``ev``'s allocation, one row per limit.

    ``applied`` is the US$ margin each limit was held to; the upper bound and ``holds`` are
    those of ``validation`` (the same allocation on independent scenarios) when given.
    """
    held = {limit_key(r): r for r in limit_rows(validation or ev).itertuples()}
    rows = []
    for r in limit_rows(ev).itertuples():
        key = limit_key(r)
        se = float(r.std_error)
        margin = applied.get(key, 0.0)
        sign = 1.0 if r.bound == "max" else -1.0
        v = held[key]  # the figure the limit is held to
        upper = float(v.value) + sign * z * float(v.std_error)
        slack = STABLE_SE * se + limit_tolerance(r)
        measured = validation is not None
        rows.append(
            {
                "family": r.family,
                "owner_kind": r.owner_kind,
                "owner": r.owner,
                "what": r.what,
                "bound": r.bound,
                "value_usd": float(r.value),
                "limit_usd": float(r.limit),
                "std_error_usd": se,
                "margin_usd": margin,
                "margin_in_se": margin / se if se > 0 else 0.0,
                "upper_bound_usd": upper,
                "validation_value_usd": float(v.value) if measured else math.nan,
                "validation_std_error_usd": float(v.std_error) if measured else math.nan,
                "binding": bool(margin > 0 and abs(limit_room(r) - margin) <= slack),
                "holds": bool(sign * (upper - float(r.limit)) <= slack),
            }
        )
    frame = pd.DataFrame(rows, columns=list(MARGIN_COLUMNS))
    return frame.astype({"binding": bool, "holds": bool})
