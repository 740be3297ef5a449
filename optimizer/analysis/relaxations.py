"""Reading an elastic solution in the case's terms: each positive slack, the field that carries it.

For every row the elastic re-solve (:mod:`optimizer.analysis.elastic`) had to relax,
:func:`relaxation_table` gives the US$ it must give, the case field that carries its right-hand side
with its current and relaxed value (:data:`MARGIN_SHARE` and :data:`MARGIN_USD` over the slack, so
re-solving succeeds), or why no field does, and a sentence in the user's words. A share or a rate
moves by the slack over the money it is a share of at the elastic solution. Money is US$ in the
table (the problem's rows are in US$ millions). The sentences, and amounts as people write them,
are in :mod:`optimizer.analysis.relaxation_text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd

from models.schema import Case, SourceKind
from optimizer.analysis.relaxation_text import _SHARE_LABEL, _describe, _pos, _value
from optimizer.formulation.problem import USD_PER_UNIT, AllocationProblem
from optimizer.formulation.problem_targets import HOUSEHOLDS_PER_UNIT

POSITIVE_SLACK_USD_M = 1e-6
"""A slack counts as a relaxation above US$1 (solver tolerances are ~1e-7 US$m)."""
MARGIN_SHARE, MARGIN_USD = 0.01, 1.0
"""``relaxed_case`` relaxes by ``slack · (1 + 1 %) + US$1`` so that re-solving succeeds."""
_TINY_USD_M = 1e-9
_TARGET_FIELDS = {
    "climate_earmark_usd": "climate_earmark_min_usd",
    "min_gap_closed": "min_gap_closed_usd",
    "min_households": "min_households",
}
"""The policy field each programme target's row is written from (lowered to relax it)."""

RELAXATION_COLUMNS = (
    "family",
    "row",
    "subject",
    "label",
    "relaxation_usd",
    "lhs_usd",
    "rhs_usd",
    "weight",
    "field",
    "direction",
    "current_value",
    "relaxed_value",
    "mappable",
    "reason",
    "message",
)


def relaxation_table(
    prob: AllocationProblem,
    slacks: list[cp.Variable],
    weights: Mapping[str, float],
    target: bool,
) -> pd.DataFrame:
    """One row per constraint row with positive slack at the elastic solution, largest first.

    Parameters
    ----------
    prob : AllocationProblem
        The problem the elastic form was made of, its variables at the elastic solution.
    slacks : list of cvxpy Variable
        One per family of ``prob``, solved (US$m).
    weights : mapping of family name to float
        Each family's slack weight.
    target : bool
        Whether a gap target was diagnosed (a segment's gap is then no lever).

    Returns
    -------
    DataFrame with columns :data:`RELAXATION_COLUMNS` (money in US$).
    """
    case = prob.case
    ctx = _Context.of(prob)
    rows = []
    for fam, s in zip(prob.families, slacks, strict=True):
        value = np.atleast_1d(np.asarray(s.value, dtype=float))
        lhs, rhs = (
            np.broadcast_to(np.atleast_1d(np.asarray(a.value, dtype=float)), value.shape)
            for a in fam.constraint.args
        )
        for i in np.flatnonzero(value > POSITIVE_SLACK_USD_M):
            row = _row(case, ctx, fam, int(i), float(value[i]), lhs[i], rhs[i], weights, target)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(RELAXATION_COLUMNS))
    frame = frame.sort_values("relaxation_usd", ascending=False, kind="stable")
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class _Context:
    """Totals of the elastic solution (US$m) that shares and rates are taken of."""

    x: np.ndarray
    lend: np.ndarray
    commit: np.ndarray
    concessional: float
    climate: float
    total: float
    fund_capital: np.ndarray
    z_fund: np.ndarray
    z_x: np.ndarray

    @classmethod
    def of(cls, prob: AllocationProblem) -> _Context:
        case, e = prob.case, prob.elig

        def val(var: cp.Variable) -> np.ndarray:
            return np.zeros(var.shape) if var.value is None else np.asarray(var.value, float)

        x, c, t = val(prob.x), val(prob.c), val(prob.t)
        n_src = len(case.sources)
        lend = np.bincount(e.x_source, x, minlength=n_src)
        capital = np.bincount(e.c_source, c, minlength=n_src)
        spend = lend + capital + np.bincount(e.t_source, t, minlength=n_src)
        conc = np.array([s.is_concessional for s in case.sources])
        clim = np.array([s.kind is SourceKind.climate for s in case.sources])
        return cls(
            x=x,
            lend=lend,
            commit=lend + capital,
            concessional=float(spend[conc].sum()),
            climate=float(x[clim[e.x_source]].sum()),
            total=float(x.sum()),
            fund_capital=np.bincount(e.c_fund, c, minlength=len(case.funds)),
            z_fund=e.z_fund,
            z_x=e.z_x,
        )


@dataclass(frozen=True)
class _Change:
    field: str
    direction: str  # "raise" or "lower"
    current: float
    relaxed: float


def _row(case, ctx, fam, i, slack, lhs, rhs, wmap, target: bool) -> tuple:
    subject, label = fam.subjects[i], fam.labels[i]
    need = slack * (1 + MARGIN_SHARE) + MARGIN_USD / USD_PER_UNIT  # US$m, rounded up
    plan = _plan(case, ctx, fam, i, subject, need, target)
    usd = slack * USD_PER_UNIT
    text = _describe(case, ctx, fam.name, subject, label, usd, rhs * USD_PER_UNIT)
    lhs_usd, rhs_usd = lhs * USD_PER_UNIT, rhs * USD_PER_UNIT
    row = (fam.name, i, subject, label, usd, lhs_usd, rhs_usd, wmap[fam.name])  # shared columns
    if isinstance(plan, _Change):
        money = plan.field.endswith("_usd")
        how = f"{plan.field} {_value(plan.current, money)} → {_value(plan.relaxed, money)}"
        message = f"{text} [{fam.name}: {how}]"
        return (*row, plan.field, plan.direction, plan.current, plan.relaxed, True, "", message)
    message = f"{text} [{fam.name}: no case field; {plan}]"
    return (*row, None, None, math.nan, math.nan, False, plan, message)


def _plan(
    case: Case, ctx: _Context, fam, i: int, subject: str, need: float, target: bool
) -> _Change | str:
    """The case field carrying row ``i`` of ``fam`` and its relaxed value, or why none does.

    ``need`` is the relaxation in US$m, already rounded up. A US$ field moves by ``need``; a
    share or rate moves by ``need / base``, ``base`` the money it is a share of at the elastic
    solution (which then satisfies the relaxed row, so re-solving succeeds). Under a gap
    ``target`` a segment's gap is no lever: lending past it closes nothing (it only serves
    other rules), and raising ``need_usd`` would move the very gap the target measures.
    """
    name, add = fam.name, need * USD_PER_UNIT

    def by_share(path: str, current: float, base: float, sign: int, lo: float, hi: float, what):
        if base <= _TINY_USD_M:
            return f"{what} is zero at the relaxed solution, so no {path} can carry it"
        new = current + sign * need / base
        if new > hi and hi > 1.0:  # leverage or senior multiples: past the schema's ceiling
            return f"{path} would need to be {new:.4g}, above the schema maximum {hi:g}"
        return _Change(path, "raise" if sign > 0 else "lower", current, min(max(new, lo), hi))

    if name == "budget":
        src = case.finance_source(subject)
        return _Change(
            f"sources[{subject}].amount_usd", "raise", src.amount_usd, src.amount_usd + add
        )
    if name == "segment_gap" and target:
        return (
            "under a gap target, lending past a segment's gap only serves other rules "
            "(earmark, shares); relax those by hand"
        )
    if name == "segment_gap":
        seg = case.segment(subject)
        return _Change(f"segments[{subject}].need_usd", "raise", seg.need_usd, seg.need_usd + add)
    if name == "fund_capital_cap":
        cap = case.fund(subject).capital_cap_usd
        return _Change(f"funds[{subject}].capital_cap_usd", "raise", cap, cap + add)
    if name == "cvar_limit":
        s = _pos(case.sources, subject)
        src = case.sources[s]
        if src.cvar_limit_usd is not None:
            path = f"sources[{subject}].cvar_limit_usd"
            return _Change(path, "raise", src.cvar_limit_usd, src.cvar_limit_usd + add)
        return by_share(
            f"sources[{subject}].cvar_limit_share",
            src.cvar_limit_share,
            ctx.commit[s],
            +1,
            0.0,
            1.0,
            f"{subject}'s commitment",
        )
    if name in ("expected_loss_limit", "return_hurdle"):
        s = _pos(case.sources, subject)
        src = case.sources[s]
        if name == "expected_loss_limit":
            return by_share(
                f"sources[{subject}].expected_loss_limit_rate",
                src.expected_loss_limit_rate,
                ctx.commit[s],
                +1,
                0.0,
                1.0,
                f"{subject}'s lending and fund capital",
            )
        return by_share(
            f"sources[{subject}].return_hurdle_rate",
            src.return_hurdle_rate,
            ctx.lend[s],
            -1,
            -1.0,
            2.0,
            f"{subject}'s lending",
        )
    if name == "senior_cap":
        src = case.finance_source(subject)
        return by_share(
            f"sources[{subject}].max_multiple_of_concessional",
            src.max_multiple_of_concessional,
            ctx.concessional,
            +1,
            0.0,
            100.0,
            "the concessional money used",
        )
    if name == "leverage":
        g = _pos(case.funds, subject)
        return by_share(
            f"funds[{subject}].leverage_cap",
            case.funds[g].leverage_cap,
            ctx.fund_capital[g],
            +1,
            1.0,
            100.0,
            f"{subject}'s capital",
        )
    if name == "uptake":
        if len(fam.subjects) != ctx.z_fund.size:
            return "its rows do not line up with the cover variables"
        g = int(ctx.z_fund[i])
        fund = case.funds[g]
        return by_share(
            f"funds[{fund.id}].uptake_share",
            fund.uptake_share,
            ctx.x[ctx.z_x[i]],
            +1,
            0.0,
            1.0,
            "the lending it covers",
        )
    pol = case.policy
    if name == "mobilization":
        return by_share(
            "policy.min_private_per_concessional",
            pol.min_private_per_concessional,
            ctx.concessional,
            -1,
            0.0,
            100.0,
            "the concessional money used",
        )
    if name == "climate_earmark":
        return by_share(
            "policy.climate_earmark_min_share",
            pol.climate_earmark_min_share,
            ctx.climate,
            -1,
            0.0,
            1.0,
            "climate lending",
        )
    if name == "min_deploy":
        src = case.finance_source(subject)
        current = float(src.min_deploy_usd)
        return _Change(
            f"sources[{subject}].min_deploy_usd", "lower", current, max(current - add, 0.0)
        )
    if name in _TARGET_FIELDS:
        attr = _TARGET_FIELDS[name]
        current = float(getattr(pol, attr))
        step = need * HOUSEHOLDS_PER_UNIT if name == "min_households" else add
        return _Change(f"policy.{attr}", "lower", current, max(current - step, 0.0))
    if name in _SHARE_LABEL:
        attr = f"max_share_per_{_SHARE_LABEL[name]}"
        return by_share(
            f"policy.{attr}", getattr(pol, attr), ctx.total, +1, 0.0, 1.0, "programme lending"
        )
    return {
        "cover_total": "cover beyond lending is no case setting",
        "must_cover": "raise the source's max_pd_unguaranteed above the cell's PD by hand",
        "technical_assistance": "lower the products' ta_cost_rate or add TA money by hand",
        "fund_depletion": "give the fund capital (budget, capital cap) or raise its "
        "max_depletion_probability by hand",
    }.get(name, "no case field is known to carry this family")
