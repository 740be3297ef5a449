"""``diagnose``: the smallest relaxation that makes a case feasible, in the user's words.

The elastic re-solve takes the stage-1 allocation LP (:func:`optimizer.problem.build_problem`),
gives every row of every named constraint family one slack, ``lhs <= rhs + slack`` with
``slack >= 0`` (US$ millions, like every row), keeps every other constraint as it is, and
minimises ``Σ_f weight_f Σ_rows slack``. A zero optimum means the stage-1 problem is feasible;
otherwise the rows with positive slack are the relaxation, reported in US$ and mapped, where a
case field carries the row's right-hand side, to the new value of that field
(:meth:`Diagnosis.relaxed_case`).

Weights. Every row is ``lhs <= rhs`` in US$m, so slacks of different families are comparable:
with weight 1 everywhere the answer is the relaxation of least total US$. Families that are
levers a programme can move (money, risk limits, caps, policy shares, uptake) keep weight 1.
Rows that are data or identities of the model rather than levers — a segment's gap (need −
supply), cover at most lending, mandatory cover, technical assistance needed, and a fund's
claims-CVaR within its capital (no case field, its capital is a decision) — get
:data:`STRUCTURAL_WEIGHT` (a US$ of them counts as ten), so they give way only when the
levers would cost ten times more. ``weights=`` overrides any family's weight.

When is a case infeasible? A validated case never is at stage 1: lending, capital, cover and
TA all zero satisfy every family (each right-hand side at zero is an amount, a gap, a cap or a
CVaR limit, all >= 0 by the schema, or a share/ratio of money that is then 0), and the
scenario rows only define the excess variables. Infeasibility therefore comes from a case that
skipped validation (``model_copy(update=...)`` with a negative amount, gap or CVaR limit), from
numerical trouble at stage 2, or from a target that requires lending: ``diagnose(...,
max_weighted_gap_usd=X)`` asks what must give so that the weighted unmet gap can reach X, the
question a programme designer asks of a feasible case ("what would it take to close 60 %?").
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cvxpy as cp
import numpy as np
import pandas as pd
from cvxpy import settings as status_codes
from cvxpy.error import SolverError

from models.scenarios import ScenarioSet
from models.schema import Case, SourceKind
from optimizer.errors import InfeasibleCase, OptimizerError, SolverFailure
from optimizer.problem import USD_PER_UNIT, AllocationProblem, build_problem, segment_weights
from optimizer.result import Allocation

STRUCTURAL_WEIGHT = 10.0
"""Weight of a US$ of slack on a row that is data or a model identity, not a lever."""
FAMILY_WEIGHTS: Mapping[str, float] = MappingProxyType(
    dict.fromkeys(
        ("segment_gap", "cover_total", "must_cover", "technical_assistance", "fund_depletion"),
        STRUCTURAL_WEIGHT,
    )
)
"""Default slack weight per family; families not listed weigh 1 (per US$ of relaxation)."""
POSITIVE_SLACK_USD_M = 1e-6
"""A slack counts as a relaxation above US$1 (solver tolerances are ~1e-7 US$m)."""
MARGIN_SHARE, MARGIN_USD = 0.01, 1.0
"""``relaxed_case`` relaxes by ``slack · (1 + 1 %) + US$1`` so that re-solving succeeds."""
KNOWN_FAMILIES = (
    "segment_gap", "budget", "fund_capital_cap", "leverage", "technical_assistance",
    "cover_total", "uptake", "must_cover", "cvar_limit", "expected_loss_limit",
    "fund_depletion", "return_hurdle", "senior_cap", "mobilization", "segment_share",
    "region_share", "product_share", "climate_earmark",
)  # fmt: skip
"""The constraint families of :mod:`optimizer.problem` (names ``weights`` may use)."""
SOLVERS = ("HIGHS", "CLARABEL")
_SOLVED = (status_codes.OPTIMAL, status_codes.OPTIMAL_INACCURATE)
_TINY_USD_M = 1e-9
_SHARE_LABEL = {"segment_share": "segment", "region_share": "region", "product_share": "product"}
_FIELD = re.compile(r"^(?P<group>sources|funds|segments)\[(?P<id>[^\]]+)\]\.(?P<attr>\w+)$")

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


class RelaxationNotMappable(OptimizerError, ValueError):
    """A needed relaxation has no case field that carries it (change the case by hand)."""


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """The smallest relaxation making a case feasible (or reaching a gap target).

    Attributes
    ----------
    relaxations : DataFrame
        One row per constraint row with positive slack, columns :data:`RELAXATION_COLUMNS`:
        ``relaxation_usd`` (US$ the row's right-hand side must give), ``lhs_usd``/``rhs_usd``
        at the elastic solution, its ``weight``; the case ``field`` that carries it
        (``"sources[PRIV].cvar_limit_usd"``, ``"policy.max_share_per_segment"``) with
        ``direction`` (``"raise"`` or ``"lower"``), ``current_value`` and the
        ``relaxed_value`` that :meth:`relaxed_case` sets (the relaxation plus 1 % and US$1);
        ``mappable`` False with a ``reason`` when no case field carries it; ``message``.
        Empty when nothing needs relaxing.
    messages : tuple of str
        One sentence per row, e.g. "the climate earmark needs US$7.60m more high-pressure
        climate lending [climate_earmark: policy.climate_earmark_min_share 0.8 → 0.16]".
    total_relaxation_usd : float
        Sum of the relaxations, US$ (unweighted).
    weighted_relaxation_usd : float
        The elastic optimum ``Σ weight · slack``, US$.
    weights : dict of str to float
        Slack weight of each family present.
    case_name : str
    n_scenarios : int
    max_weighted_gap_usd : float or None
        The gap target diagnosed, if any.
    solver, status : str
    warnings : tuple of str
    timings_s : dict of str to float
        ``build_s``, ``solve_s``.
    """

    relaxations: pd.DataFrame
    messages: tuple[str, ...]
    total_relaxation_usd: float
    weighted_relaxation_usd: float
    weights: dict[str, float]
    case_name: str
    n_scenarios: int
    max_weighted_gap_usd: float | None
    solver: str
    status: str
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # holds a DataFrame

    @property
    def feasible(self) -> bool:
        """True when no row needs relaxing (the stage-1 problem, or the target, is feasible)."""
        return self.relaxations.empty

    def relaxed_case(self, case: Case) -> Case:
        """The case with every relaxation applied (rounded up by 1 % + US$1), re-validated.

        Where several rows map to one field (a policy share, a fund's uptake) the loosest
        value is kept. A relaxed source whose US$ CVaR limit would exceed its money has the
        limit clipped to ``amount_usd`` (a schema rule; no loss exceeds the lending). Each changed field gets a ``[D]`` provenance tag in ``field_sources``
        and the content hash is cleared (the case is no longer the file's).

        Raises
        ------
        ValueError
            ``case`` is not the diagnosed case.
        RelaxationNotMappable
            Naming each family whose relaxation no case field carries.
        """
        if case.name != self.case_name:
            raise ValueError(
                f"this diagnosis is of case {self.case_name!r}, got case {case.name!r}"
            )
        rel = self.relaxations
        if rel.empty:
            return case
        bad = rel[~rel["mappable"].astype(bool)]
        if not bad.empty:
            items = "; ".join(
                f"{r.family} ({r.subject}, US${r.relaxation_usd:,.0f}): {r.reason}"
                for r in bad.itertuples()
            )
            raise RelaxationNotMappable(
                f"case {case.name!r}: {len(bad)} relaxation(s) map to no case field — {items}; "
                "change the case by hand (the messages say what must give)"
            )
        changes: dict[str, float] = {}
        for r in rel.itertuples():
            old = changes.get(r.field)
            pick = max if r.direction == "raise" else min
            changes[r.field] = r.relaxed_value if old is None else pick(old, r.relaxed_value)
        raw = case.model_dump()
        tags = dict(raw.get("field_sources") or {})
        for path, value in changes.items():
            before = _set_field(raw, path, value)
            tags[path] = f"[D] relaxed by ppcfin diagnose from {before!r} to {value!r}"
        _clip_cvar_limits(raw, changes, tags)
        raw["field_sources"] = tags
        raw["content_sha256"] = None
        return Case.model_validate(raw)


def diagnose(
    case: Case,
    scenarios: ScenarioSet,
    *,
    solver: str = "HIGHS",
    weights: Mapping[str, float] | None = None,
    max_weighted_gap_usd: float | None = None,
    time_limit_s: float | None = None,
) -> Diagnosis:
    """Find the smallest relaxation of the case's constraint families that makes it feasible.

    Parameters
    ----------
    case : Case
    scenarios : ScenarioSet
        Simulated for ``case`` (shape (n_scenarios, n_cells)); the CVaR rows use it.
    solver : {"HIGHS", "CLARABEL"}, default "HIGHS"
        First solver tried; the other is the fallback.
    weights : mapping of family name to float > 0, optional
        Overrides of :data:`FAMILY_WEIGHTS` (weight of a US$ of slack).
    max_weighted_gap_usd : float >= 0, optional
        Also require the weighted unmet gap ``Σ_k w_k unmet_k`` to be at most this (US$):
        what must give to close that much? Lending beyond a segment's gap closes nothing.
    time_limit_s : float, optional
        Per solver call.

    Returns
    -------
    Diagnosis

    Raises
    ------
    ValueError
        Bad solver, weight or target (a target below what segments no source may lend to
        leave open can never be met).
    ScenarioMismatch
        The scenario set belongs to another case.
    SolverFailure
        Neither solver solved the elastic problem (which is always feasible).
    """
    name = str(solver).upper()
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    for fam, w in (weights or {}).items():
        if fam not in KNOWN_FAMILIES:
            raise ValueError(
                f"weights: unknown constraint family {fam!r}; known: {', '.join(KNOWN_FAMILIES)}"
            )
        if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
            raise ValueError(f"weights[{fam!r}] must be a finite number > 0, got {w!r}")
    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    prob = build_problem(case, scenarios)  # the one-LP formulation: every row explicit
    if max_weighted_gap_usd is not None:
        _check_target(prob, max_weighted_gap_usd)
    wmap = {
        f.name: float({**FAMILY_WEIGHTS, **(weights or {})}.get(f.name, 1.0)) for f in prob.families
    }

    own = {id(f.constraint) for f in prob.families}
    constraints = [c for c in prob.problem.constraints if id(c) not in own]
    slacks: list[cp.Variable] = []
    for fam in prob.families:
        lhs, rhs = fam.constraint.args
        s = cp.Variable(lhs.shape, nonneg=True, name=f"slack_{fam.name}")
        constraints.append(lhs <= rhs + s)
        slacks.append(s)
    if max_weighted_gap_usd is not None:
        gap_slack = next(
            s for f, s in zip(prob.families, slacks, strict=True) if f.name == "segment_gap"
        )
        counted = prob.weighted_gap + segment_weights(case) @ gap_slack
        constraints.append(counted <= max_weighted_gap_usd / USD_PER_UNIT)
    objective = sum(wmap[f.name] * cp.sum(s) for f, s in zip(prob.families, slacks, strict=True))
    elastic = cp.Problem(cp.Minimize(objective), constraints)
    timings["build_s"] = time.perf_counter() - start

    start = time.perf_counter()
    used, status = _solve(elastic, name, time_limit_s)
    timings["solve_s"] = time.perf_counter() - start
    warnings = ()
    if status == status_codes.OPTIMAL_INACCURATE:
        warnings = (f"{used} reports an inaccurate optimum of the elastic problem",)

    ctx = _Context.of(prob)
    target = max_weighted_gap_usd is not None
    rows = []
    for fam, s in zip(prob.families, slacks, strict=True):
        value = np.atleast_1d(np.asarray(s.value, dtype=float))
        lhs, rhs = (np.broadcast_to(np.atleast_1d(np.asarray(a.value, dtype=float)), value.shape)
                    for a in fam.constraint.args)  # fmt: skip
        for i in np.flatnonzero(value > POSITIVE_SLACK_USD_M):
            row = _row(case, ctx, fam, int(i), float(value[i]), lhs[i], rhs[i], wmap, target)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(RELAXATION_COLUMNS))
    frame = frame.sort_values("relaxation_usd", ascending=False, kind="stable")
    frame = frame.reset_index(drop=True)
    return Diagnosis(
        relaxations=frame,
        messages=tuple(frame["message"]),
        total_relaxation_usd=float(frame["relaxation_usd"].sum()),
        weighted_relaxation_usd=float(objective.value) * USD_PER_UNIT,
        weights=wmap,
        case_name=case.name,
        n_scenarios=scenarios.n_scenarios,
        max_weighted_gap_usd=None if max_weighted_gap_usd is None else float(max_weighted_gap_usd),
        solver=used,
        status=status,
        warnings=warnings,
        timings_s=timings,
    )


def optimize_or_diagnose(case: Case, scenarios: ScenarioSet, **kwargs: Any) -> Allocation:
    """:func:`optimizer.optimize`, and on :class:`InfeasibleCase` attach a :class:`Diagnosis`.

    The error is re-raised with ``exc.diagnosis`` set (``exc.diagnosis.messages`` say what must
    give; ``exc.diagnosis.relaxed_case(case)`` applies it). A stage-2 failure is numerical:
    its diagnosis comes back ``feasible`` (nothing to relax). Should the diagnosis itself fail,
    the original error is re-raised with a note saying so.
    """
    from optimizer.solve import optimize

    try:
        return optimize(case, scenarios, **kwargs)
    except InfeasibleCase as exc:
        try:
            exc.diagnosis = diagnose(case, scenarios, solver=kwargs.get("solver", "HIGHS"))
        except OptimizerError as failure:
            exc.add_note(f"the infeasibility diagnosis failed too: {failure}")
        raise


# --- solving ------------------------------------------------------------------------------------
def _check_target(prob: AllocationProblem, target_usd: float) -> None:
    if not (isinstance(target_usd, int | float) and math.isfinite(target_usd) and target_usd >= 0):
        raise ValueError(f"max_weighted_gap_usd must be a finite number >= 0, got {target_usd!r}")
    case = prob.case
    lendable = set(prob.scenarios.cells["segment"].to_numpy()[prob.elig.x_cell])
    w = segment_weights(case)
    floor = sum(w[k] * seg.gap_usd for k, seg in enumerate(case.segments) if seg.id not in lendable)
    if target_usd < floor * (1 - 1e-12):
        shut = [seg.id for seg in case.segments if seg.id not in lendable and seg.gap_usd > 0]
        raise ValueError(
            f"max_weighted_gap_usd={target_usd:,.0f} can never be met: no source may lend to "
            f"segments {shut}, whose weighted gap alone is US${floor:,.0f}"
        )


def _solve(problem: cp.Problem, primary: str, time_limit_s: float | None) -> tuple[str, str]:
    attempts = []
    status = "not run"
    for name in [primary] + [s for s in SOLVERS if s != primary]:
        opts: dict[str, Any]
        if name == "HIGHS":
            highs = {"output_flag": False}
            if time_limit_s is not None:
                highs["time_limit"] = float(time_limit_s)
            opts = {"highs_options": highs}
        else:
            opts = {} if time_limit_s is None else {"time_limit": float(time_limit_s)}
        try:
            problem.solve(solver=name, canon_backend="SCIPY", **opts)
            status = str(problem.status)
        except SolverError as exc:
            status = f"solver_error: {exc}"
        attempts.append(f"{name}: {status}")
        if status in _SOLVED:
            return name, status
    raise SolverFailure(
        name,
        status,
        1,
        "the elastic re-solve of the diagnosis (always feasible in exact arithmetic) got no "
        "usable answer; check the case for extreme values",
        tuple(attempts),
    )


# --- reading the relaxation ---------------------------------------------------------------------
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
    if isinstance(plan, _Change):
        money = plan.field.endswith("_usd")
        how = f"{plan.field} {_value(plan.current, money)} → {_value(plan.relaxed, money)}"
        message = f"{text} [{fam.name}: {how}]"
        return (fam.name, i, subject, label, usd, lhs * USD_PER_UNIT, rhs * USD_PER_UNIT,
                wmap[fam.name], plan.field, plan.direction, plan.current, plan.relaxed, True,
                "", message)  # fmt: skip
    message = f"{text} [{fam.name}: no case field; {plan}]"
    return (fam.name, i, subject, label, usd, lhs * USD_PER_UNIT, rhs * USD_PER_UNIT,
            wmap[fam.name], None, None, math.nan, math.nan, False, plan, message)  # fmt: skip


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
        return by_share(f"sources[{subject}].cvar_limit_share", src.cvar_limit_share,
                        ctx.commit[s], +1, 0.0, 1.0, f"{subject}'s commitment")  # fmt: skip
    if name in ("expected_loss_limit", "return_hurdle"):
        s = _pos(case.sources, subject)
        src = case.sources[s]
        if name == "expected_loss_limit":
            return by_share(f"sources[{subject}].expected_loss_limit_rate",
                            src.expected_loss_limit_rate, ctx.lend[s], +1, 0.0, 1.0,
                            f"{subject}'s lending")  # fmt: skip
        return by_share(f"sources[{subject}].return_hurdle_rate", src.return_hurdle_rate,
                        ctx.lend[s], -1, -1.0, 2.0, f"{subject}'s lending")  # fmt: skip
    if name == "senior_cap":
        src = case.finance_source(subject)
        return by_share(f"sources[{subject}].max_multiple_of_concessional",
                        src.max_multiple_of_concessional, ctx.concessional, +1, 0.0, 100.0,
                        "the concessional money used")  # fmt: skip
    if name == "leverage":
        g = _pos(case.funds, subject)
        return by_share(f"funds[{subject}].leverage_cap", case.funds[g].leverage_cap,
                        ctx.fund_capital[g], +1, 1.0, 100.0, f"{subject}'s capital")  # fmt: skip
    if name == "uptake":
        if len(fam.subjects) != ctx.z_fund.size:
            return "its rows do not line up with the cover variables"
        g = int(ctx.z_fund[i])
        fund = case.funds[g]
        return by_share(f"funds[{fund.id}].uptake_share", fund.uptake_share,
                        ctx.x[ctx.z_x[i]], +1, 0.0, 1.0, "the lending it covers")  # fmt: skip
    pol = case.policy
    if name == "mobilization":
        return by_share("policy.min_private_per_concessional", pol.min_private_per_concessional,
                        ctx.concessional, -1, 0.0, 100.0, "the concessional money used")  # fmt: skip
    if name == "climate_earmark":
        return by_share("policy.climate_earmark_min_share", pol.climate_earmark_min_share,
                        ctx.climate, -1, 0.0, 1.0, "climate lending")  # fmt: skip
    if name in _SHARE_LABEL:
        attr = f"max_share_per_{_SHARE_LABEL[name]}"
        return by_share(f"policy.{attr}", getattr(pol, attr), ctx.total, +1, 0.0, 1.0,
                        "programme lending")  # fmt: skip
    return {
        "cover_total": "cover beyond lending is no case setting",
        "must_cover": "raise the source's max_pd_unguaranteed above the cell's PD by hand",
        "technical_assistance": "lower the products' ta_cost_rate or add TA money by hand",
        "fund_depletion": "give the fund capital (budget, capital cap) or raise its "
        "max_depletion_probability by hand",
    }.get(name, "no case field is known to carry this family")


_SAYS = {
    "budget": "{subject} needs {amount} more money (it has {rhs})",
    "segment_gap": "segment {subject} would need {amount} more credit need than its gap of "
    "{rhs} (need − supply) allows",
    "fund_capital_cap": "fund {subject}'s capital cap must rise by {amount} (from {rhs})",
    "leverage": "fund {subject}'s leverage cap must allow {amount} more guaranteed volume",
    "uptake": "cover {subject} must exceed the fund's uptake share by {amount}",
    "cover_total": "cover of {subject} would have to exceed its lending by {amount}",
    "must_cover": "{subject} needs {amount} of lending allowed without guarantee cover",
    "technical_assistance": "the programme's loans need {amount} more technical assistance "
    "than is paid for",
    "expected_loss_limit": "{subject}'s expected-loss limit must rise by {amount} (from {rhs})",
    "fund_depletion": "fund {subject}'s claims CVaR exceeds its capital by {amount}: it needs "
    "{amount} more capital or less cover",
    "return_hurdle": "{subject}'s return hurdle needs {amount} more net income than its "
    "lending earns",
    "senior_cap": "{subject}'s senior cap must allow {amount} more lending (from {rhs})",
    "climate_earmark": "the climate earmark needs {amount} more high-pressure climate lending",
}
"""What a US$ of slack on each family means, in the user's words."""


def _describe(case, ctx, name: str, subject: str, label: str, usd: float, rhs_usd: float) -> str:
    """The row's relaxation in the user's words (``usd`` is the slack, US$)."""
    amount, rhs = _usd(usd), _usd(rhs_usd)
    if name in _SAYS:
        return _SAYS[name].format(subject=subject, amount=amount, rhs=rhs)
    if name == "cvar_limit":
        src = case.finance_source(subject)
        of = ""
        if src.cvar_limit_usd is None:
            commit = _usd(ctx.commit[_pos(case.sources, subject)] * USD_PER_UNIT)
            of = f", {src.cvar_limit_share:.1%} of its {commit} commitment"
        level = f"CVaR{src.cvar_alpha * 100:g}%"
        return f"{subject}'s {level} limit must rise by {amount} (from {rhs}{of})"
    if name == "mobilization":
        ratio = case.policy.min_private_per_concessional
        return (f"the mobilisation rule ({ratio:g} private per concessional dollar) needs "
                f"{amount} more private lending")  # fmt: skip
    if name in _SHARE_LABEL:
        kind = _SHARE_LABEL[name]
        share = getattr(case.policy, f"max_share_per_{kind}")
        return (f"the concentration cap on {kind} {subject} ({share:.0%} of programme lending) "
                f"must allow {amount} more lending")  # fmt: skip
    return f"{label} ({name}, {subject}) must be relaxed by {amount}"


# --- small helpers ------------------------------------------------------------------------------
def _pos(items, item_id: str) -> int:
    return next(k for k, item in enumerate(items) if item.id == item_id)


def _usd(value: float) -> str:
    """US$ amounts as people write them: US$12.4m, US$3.10m, US$250k, US$12."""
    sign, v = ("−" if value < 0 else ""), abs(value)
    if v >= 1e8:
        return f"{sign}US${v / 1e6:,.0f}m"
    if v >= 1e7:
        return f"{sign}US${v / 1e6:.1f}m"
    if v >= 1e6:
        return f"{sign}US${v / 1e6:.2f}m"
    if v >= 1e3:
        return f"{sign}US${v / 1e3:.1f}k"
    return f"{sign}US${v:,.0f}"


def _value(value: float, money: bool) -> str:
    """A field's value as the user would type it into the case file."""
    if money:
        return f"{'−' if value < 0 else ''}US${abs(value):,.0f}"
    return f"{value:.4g}"


def _clip_cvar_limits(raw: dict, changes: Mapping[str, float], tags: dict[str, str]) -> None:
    """Keep ``cvar_limit_usd <= amount_usd`` (a schema rule) for the sources a relaxation moved.

    A source's loss never exceeds its lending (loss per dollar <= 1, cover only lowers it), so a
    CVaR limit above its money is no limit: clipping it to ``amount_usd`` leaves the relaxed
    problem as it was. Without the clip, relaxing a budget that had been set below its CVaR
    limit (or a CVaR limit past the budget) gave a case that failed validation.
    """
    for src in raw["sources"]:
        moved = any(
            f"sources[{src['id']}].{a}" in changes for a in ("amount_usd", "cvar_limit_usd")
        )
        limit = src.get("cvar_limit_usd")
        if moved and limit is not None and limit > src["amount_usd"]:
            path = f"sources[{src['id']}].cvar_limit_usd"
            src["cvar_limit_usd"] = float(src["amount_usd"])
            tags[path] = (
                f"[D] clipped by ppcfin diagnose from {limit!r} to the source's amount_usd "
                f"{src['amount_usd']!r} (a CVaR limit above the money is no limit)"
            )


def _set_field(raw: dict, path: str, value: float) -> Any:
    """Set ``path`` (``policy.attr`` or ``group[id].attr``) in a dumped case; return the old value."""
    if path.startswith("policy."):
        node, attr = raw["policy"], path[len("policy.") :]
    else:
        m = _FIELD.match(path)
        if m is None:  # only paths built by _plan reach here
            raise ValueError(f"unknown case field path {path!r}")
        node = next(item for item in raw[m["group"]] if item["id"] == m["id"])
        attr = m["attr"]
    before = node[attr]
    node[attr] = float(value)
    return before
