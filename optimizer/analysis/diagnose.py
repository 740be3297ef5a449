"""``diagnose``: the smallest relaxation that makes a case feasible, in the user's words.

The elastic re-solve takes the stage-1 allocation LP
(:func:`optimizer.formulation.problem.build_problem`), gives every row of every named constraint
family one slack, ``lhs <= rhs + slack`` with ``slack >= 0`` (US$ millions, like every row), keeps
every other constraint as it is, and minimises ``Σ_f weight_f Σ_rows slack``. A zero optimum means
the stage-1 problem is feasible; otherwise the rows with positive slack are the relaxation, reported
in US$ and mapped, where a case field carries the row's right-hand side, to the new value of that
field (:meth:`Diagnosis.relaxed_case`).

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

The work is split by job: :mod:`optimizer.analysis.elastic` builds and solves the elastic problem,
:mod:`optimizer.analysis.relaxations` reads its slacks back into case fields and sentences,
:mod:`optimizer.analysis.diagnose_targets` checks a gap target and says what the case's
requirements in money must give alone; this module holds the entry points, the weights and the
:class:`Diagnosis` (which applies a relaxation to a case), and re-exports the names that moved.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from cvxpy import settings as status_codes

from models.case_edit import with_changes
from models.errors import InputError, OptionError
from models.options import check_choice
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.diagnose_targets import TARGET_FAMILIES, _check_target, _targets_alone
from optimizer.analysis.elastic import elastic_problem, solve_elastic
from optimizer.analysis.relaxations import (
    MARGIN_SHARE,
    MARGIN_USD,
    POSITIVE_SLACK_USD_M,
    RELAXATION_COLUMNS,
    relaxation_table,
)
from optimizer.choices import Solver
from optimizer.errors import InfeasibleCase, OptimizerError
from optimizer.formulation.problem import USD_PER_UNIT, build_problem
from optimizer.result import Allocation

__all__ = [
    "FAMILY_WEIGHTS",
    "KNOWN_FAMILIES",
    "MARGIN_SHARE",
    "MARGIN_USD",
    "POSITIVE_SLACK_USD_M",
    "RELAXATION_COLUMNS",
    "STRUCTURAL_WEIGHT",
    "Diagnosis",
    "RelaxationNotMappable",
    "diagnose",
    "optimize_or_diagnose",
]

STRUCTURAL_WEIGHT = 10.0
"""Weight of a US$ of slack on a row that is data or a model identity, not a lever."""
FAMILY_WEIGHTS: Mapping[str, float] = MappingProxyType(
    dict.fromkeys(
        ("segment_gap", "cover_total", "must_cover", "technical_assistance", "fund_depletion"),
        STRUCTURAL_WEIGHT,
    )
)
"""Default slack weight per family; families not listed weigh 1 (per US$ of relaxation)."""
KNOWN_FAMILIES = (
    "segment_gap",
    "budget",
    "fund_capital_cap",
    "leverage",
    "technical_assistance",
    "cover_total",
    "uptake",
    "must_cover",
    "cvar_limit",
    "expected_loss_limit",
    "fund_depletion",
    "return_hurdle",
    "senior_cap",
    "mobilization",
    "segment_share",
    "region_share",
    "product_share",
    "climate_earmark",
    "min_deploy",
    "climate_earmark_usd",
    "min_gap_closed",
    "min_households",
)
"""The constraint families of :mod:`optimizer.formulation.problem` (names ``weights`` may use)."""
DIAGNOSIS_MAX_SCENARIOS = 1_000
"""The elastic problem is the one-LP formulation: beyond this many scenarios it is solved on
an evenly spaced subset (weights renormalised), said in its warnings. Measured on the default
case: at 1,000 scenarios the diagnosis took ~10 s; at 10^5 the one LP would not fit in memory."""


def thinned(scenarios: ScenarioSet, n_max: int) -> ScenarioSet:
    """Every k-th scenario, ``k = ceil(S / n_max)``, probabilities renormalised; the set itself
    when it has at most ``n_max`` scenarios."""
    n = scenarios.n_scenarios
    if n <= n_max:
        return scenarios
    rows = np.arange(0, n, math.ceil(n / n_max))
    p = np.asarray(scenarios.probabilities, dtype=np.float64)[rows]
    return dataclasses.replace(
        scenarios,
        losses=np.asarray(scenarios.losses[rows]),
        probabilities=p / p.sum(),
        factors=np.asarray(scenarios.factors[rows]),
        events=np.asarray(scenarios.events[rows]),
        metadata={**scenarios.metadata, "thinned_from": n},
    )


class RelaxationNotMappable(OptimizerError, InputError, ValueError):
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
        InvalidEdit
            The relaxed case still breaks a case rule (:func:`models.case_edit.with_changes`).
        """
        if case.name != self.case_name:
            raise OptionError(
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
            value = float(r.relaxed_value)
            changes[r.field] = value if old is None else pick(old, value)
        tags = dict.fromkeys(changes, "[D] relaxed by ppcfin diagnose from {before!r} to {value!r}")
        _clip_cvar_limits(case, changes, tags)
        return with_changes(case, changes, tags, what="the relaxed case is invalid")


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
    name = check_choice(str(solver).upper(), Solver, "solver").value
    for fam, w in (weights or {}).items():
        if fam not in KNOWN_FAMILIES:
            raise OptionError(
                f"weights: unknown constraint family {fam!r}; known: {', '.join(KNOWN_FAMILIES)}"
            )
        if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
            raise OptionError(f"weights[{fam!r}] must be a finite number > 0, got {w!r}")
    if time_limit_s is not None and not time_limit_s > 0:
        raise OptionError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    full = scenarios.n_scenarios
    scenarios = thinned(scenarios, DIAGNOSIS_MAX_SCENARIOS)
    prob = build_problem(case, scenarios)  # the one-LP formulation: every row explicit
    if max_weighted_gap_usd is not None:
        _check_target(prob, max_weighted_gap_usd)
    wmap = {
        f.name: float({**FAMILY_WEIGHTS, **(weights or {})}.get(f.name, 1.0)) for f in prob.families
    }

    elastic, slacks, objective = elastic_problem(prob, wmap, max_weighted_gap_usd)
    timings["build_s"] = time.perf_counter() - start

    start = time.perf_counter()
    used, status = solve_elastic(elastic, name, time_limit_s)
    timings["solve_s"] = time.perf_counter() - start
    warnings: tuple[str, ...] = ()
    if status == status_codes.OPTIMAL_INACCURATE:
        warnings = (f"{used} reports an inaccurate optimum of the elastic problem",)
    if scenarios.n_scenarios < full:
        warnings += (
            f"diagnosed on {scenarios.n_scenarios:,} evenly spaced of the {full:,} scenarios: "
            "the relaxations of risk limits are estimates on them",
        )

    frame = relaxation_table(prob, slacks, wmap, max_weighted_gap_usd is not None)
    messages = tuple(frame["message"])
    if not frame.empty and not frame["family"].isin(TARGET_FAMILIES).all():
        messages += _targets_alone(prob, wmap, max_weighted_gap_usd, name, time_limit_s)
    return Diagnosis(
        relaxations=frame,
        messages=messages,
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


def _clip_cvar_limits(case: Case, changes: dict[str, float], tags: dict[str, str]) -> None:
    """Keep ``cvar_limit_usd <= amount_usd`` (a schema rule) for the sources a relaxation moved.

    A source's loss never exceeds its lending (loss per dollar <= 1, cover only lowers it), so a
    CVaR limit above its money is no limit: clipping it to ``amount_usd`` leaves the relaxed
    problem as it was. Without the clip, relaxing a budget that had been set below its CVaR
    limit (or a CVaR limit past the budget) gave a case that failed validation. Adds the clips
    to ``changes``, each with its tag in ``tags``.
    """
    for src in case.sources:
        amount_path, limit_path = (
            f"sources[{src.id}].amount_usd",
            f"sources[{src.id}].cvar_limit_usd",
        )
        if amount_path not in changes and limit_path not in changes:
            continue
        amount = changes.get(amount_path, float(src.amount_usd))
        limit = changes.get(limit_path, src.cvar_limit_usd)
        if limit is not None and limit > amount:
            changes[limit_path] = amount
            tags[limit_path] = (
                f"[D] clipped by ppcfin diagnose from {limit!r} to the source's amount_usd "
                f"{amount!r} (a CVaR limit above the money is no limit)"
            )
