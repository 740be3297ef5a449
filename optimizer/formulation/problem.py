"""The allocation problem as one linear programme (Rockafellar–Uryasev CVaR), in cvxpy.

Units inside the problem are US$ millions, so that amounts, limits and the objective sit near 1
to 1,000 rather than 1e6 to 1e9 (solver tolerances are absolute). Every constraint is written
``lhs <= rhs`` in US$m and belongs to a named :class:`Family`, so that a binding row and its
dual (weighted-gap US$ per US$ of relaxation) can be reported in the user's words.

The two lexicographic stages share one compiled problem: the objective is
``a · weighted_gap + b · secondary`` and the gap is held by ``weighted_gap <= hold``, with
``a``, ``b`` and ``hold`` cvxpy parameters, so stage 2 re-uses stage 1's canonicalization.

This module is the problem's contract (:class:`AllocationProblem`) and its assembly
(:func:`build_problem`); the rows are written elsewhere, by job:
:mod:`optimizer.formulation.problem_rows` (the families every CVaR mode shares, and the objectives),
:mod:`optimizer.formulation.problem_risk` (CVaR and expected-loss limits, fund depletion) and
:mod:`optimizer.formulation.problem_cvar` (what each CVaR method adds: scenario rows, or cut
measures with their oracle and master). ``Family``, ``USD_PER_UNIT``, ``segment_weights`` and
``depletion_floor`` are importable from here, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd

from models.errors import OptionError
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.formulation.claims import FundClaims
from optimizer.formulation.cut_master import CutMaster
from optimizer.formulation.cut_measures import CutMeasure
from optimizer.formulation.eligibility import Eligibility
from optimizer.formulation.problem_cvar import CVAR_MODES
from optimizer.formulation.problem_risk import add_risk_families
from optimizer.formulation.problem_rows import (
    USD_PER_UNIT,
    Family,
    RowBuilder,
    depletion_floor,
    segment_weights,
)
from optimizer.formulation.problem_targets import add_targets
from optimizer.formulation.tail_oracle import TailOracle

__all__ = [
    "USD_PER_UNIT",
    "AllocationProblem",
    "Family",
    "build_problem",
    "depletion_floor",
    "segment_weights",
]


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """The compiled-once allocation LP and everything needed to read its solution.

    Attributes
    ----------
    case, scenarios : Case, ScenarioSet
    elig : Eligibility
        Variable index sets.
    claims : tuple of FundClaims
        One per fund, in ``case.funds`` order.
    x, c, t, z : cvxpy Variable
        Lending, fund capital, technical assistance, guarantee cover (US$m), shaped by ``elig``.
    families : tuple of Family
        Every named constraint family (the stage-2 gap hold is not one: it has no dual).
    weighted_gap : cvxpy Expression
        ``Σ_k w_k (gap_k − y_k)``, US$m.
    secondary : cvxpy Expression
        Stage-2 objective: expected credit loss of all lending plus the cost of concessional
        money used, US$m.
    problem : cvxpy Problem
    stage_weight, secondary_weight, hold : cvxpy Parameter
        Set by :meth:`set_stage`.
    cvar_method : {"lp", "cuts"}
        ``"lp"``: one variable per scenario and CVaR (Rockafellar–Uryasev). ``"cuts"``: each
        CVaR is ``t + η/(1−α)`` with aggregated cuts in ``cut_measures`` (cutting plane), the
        scenarios seen only through ``oracle``.
    amount, cvar_scale : cvxpy Parameter
        Budgets (US$m, one per source) and a scale on each CVaR limit (one per source in
        ``cvar_limited``): what a frontier sweeps without recompiling.
    fund_tail_factor : cvxpy Parameter or None
        ``1 / ε_g`` for each fund in ``depletion_funds`` (ε_g its allowed depletion
        probability; the fund's claims CVaR is taken at level ``1 − ε_g``). An ε_g below
        ``depletion_floor`` is taken at the floor (see :func:`depletion_floor`).
    depletion_floor : float
        The smallest positive scenario probability: the least ε the scenarios can measure.
    warnings : tuple of str
        What the build changed from the case as written (an ε below the floor), for the
        result's warnings.
    mobilization_ratio : cvxpy Parameter or None
        Private lending required per concessional dollar (present when the case has
        concessional money).
    expo : cvxpy Variable
        Net exposure columns (see :class:`optimizer.formulation.exposures.ExposureColumns`).
    mean_loss_rate : ndarray of shape (n_cells,)
        Expected loss per dollar lent in each cell, ``E_π[ℓ_j]``.
    cut_measures, oracle, cut_master
        Cut mode only: the CVaR measures, the pass over the loss matrix that makes their cuts,
        and the persistent HiGHS model that holds the compiled problem and the cuts.
    """

    case: Case
    scenarios: ScenarioSet
    elig: Eligibility
    claims: tuple[FundClaims, ...]
    x: cp.Variable
    c: cp.Variable
    t: cp.Variable
    z: cp.Variable
    families: tuple[Family, ...]
    weighted_gap: cp.Expression
    secondary: cp.Expression
    problem: cp.Problem
    stage_weight: cp.Parameter
    secondary_weight: cp.Parameter
    hold: cp.Parameter
    cvar_method: str = "lp"
    amount: cp.Parameter | None = None
    cvar_scale: cp.Parameter | None = None
    cvar_limited: tuple[str, ...] = ()
    fund_tail_factor: cp.Parameter | None = None
    depletion_funds: tuple[str, ...] = ()
    depletion_floor: float = 0.0
    warnings: tuple[str, ...] = ()
    mobilization_ratio: cp.Parameter | None = None
    expo: cp.Variable | None = None
    mean_loss_rate: np.ndarray | None = None
    cut_measures: tuple[CutMeasure, ...] = ()
    oracle: TailOracle | None = None
    cut_master: CutMaster | None = None

    def set_stage(self, stage: int, hold_usd_m: float | None = None) -> None:
        """Point the objective at stage 1 (weighted gap) or 2 (loss and cost, gap held)."""
        if stage == 1:
            self.stage_weight.value, self.secondary_weight.value = 1.0, 0.0
            self.hold.value = self.max_weighted_gap + 1.0  # never binds
        else:
            self.stage_weight.value, self.secondary_weight.value = 0.0, 1.0
            self.hold.value = float(hold_usd_m)

    @property
    def max_weighted_gap(self) -> float:
        """Weighted gap with no lending at all, US$m."""
        gap = np.array([s.gap_usd for s in self.case.segments]) / USD_PER_UNIT
        return float(segment_weights(self.case) @ gap)

    def registry(self) -> pd.DataFrame:
        """One row per named constraint row: family, row, subject, label, relaxation, unit.

        Every row is ``lhs <= rhs`` in US$, so its dual is weighted-gap US$ per US$."""
        rows = [
            (f.name, i, s, lab, rel, "US$")
            for f in self.families
            for i, (s, lab, rel) in enumerate(zip(f.subjects, f.labels, f.relaxations, strict=True))
        ]
        columns = ["family", "row", "subject", "label", "relaxation", "unit"]
        return pd.DataFrame(rows, columns=columns)


def build_problem(case: Case, scenarios: ScenarioSet, cvar_method: str = "lp") -> AllocationProblem:
    """Build (not solve) the allocation LP of a case on a scenario set.

    Parameters
    ----------
    case : Case
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) for the case's cells, with probabilities.

    Returns
    -------
    AllocationProblem
        Set to stage 1. :func:`optimizer.solve.optimize` solves it.
    """
    if cvar_method not in ("lp", "cuts"):
        raise OptionError(f"cvar_method must be 'lp' or 'cuts', got {cvar_method!r}")
    b = RowBuilder(case, scenarios)
    cvar = CVAR_MODES[cvar_method](scenarios)
    b.volumes()
    b.cover()
    risk = add_risk_families(b, cvar)
    b.policy()
    add_targets(b)
    weighted_gap, secondary = b.objectives()
    a = cp.Parameter(nonneg=True, name="stage_weight", value=1.0)
    w2 = cp.Parameter(nonneg=True, name="secondary_weight", value=0.0)
    hold = cp.Parameter(name="hold_weighted_gap", value=0.0)
    constraints = [f.constraint for f in b.families] + b.internal + cvar.rows
    constraints.append(weighted_gap <= hold)
    problem = cp.Problem(cp.Minimize(a * weighted_gap + w2 * secondary), constraints)
    measures, oracle, master = cvar.engine(problem, risk.columns, risk.expo)
    out = AllocationProblem(
        case=case,
        scenarios=scenarios,
        elig=b.e,
        claims=b.claims,
        x=b.x,
        c=b.c,
        t=b.t,
        z=b.z,
        families=tuple(b.families),
        weighted_gap=weighted_gap,
        secondary=secondary,
        problem=problem,
        stage_weight=a,
        secondary_weight=w2,
        hold=hold,
        cvar_method=cvar_method,
        amount=b.amount,
        cvar_scale=risk.cvar_scale,
        cvar_limited=tuple(s.id for s in case.sources if s.cvar_alpha is not None),
        fund_tail_factor=risk.fund_tail_factor,
        depletion_funds=risk.depletion_funds,
        depletion_floor=b.depletion_floor,
        warnings=tuple(b.warnings),
        mobilization_ratio=b.mobilization_ratio,
        expo=risk.expo,
        mean_loss_rate=b.mean_loss,
        cut_measures=measures,
        oracle=oracle,
        cut_master=master,
    )
    out.set_stage(1)
    return out
