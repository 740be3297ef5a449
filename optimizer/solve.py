"""``optimize``: solve the allocation LP in two lexicographic stages and read the answer.

Stage 1 minimises the weighted unmet gap; its duals are the shadow prices. Stage 2 holds the gap
at its optimum (within ``gap_tolerance``) and minimises the expected credit loss of all lending
plus the cost of the concessional money used, so the answer is not an arbitrary vertex.

Every solver status maps to a result or a typed error. HiGHS is the default and Clarabel the
fallback (or the other way round); each fallback is recorded with its reason on the result, and
an inaccurate solution is a warning on the result, never a silent success.

One stage is solved by :mod:`optimizer.solve_stage` (``solve_stage``, ``SolveLog``, ``SOLVERS``)
and the binding rows are read by :mod:`optimizer.binding` (``binding_constraints``,
``PROGRAMME_FAMILIES``); those names are importable from here, as before.
"""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
import pandas as pd
from cvxpy import settings as status_codes

from models.errors import OptionError
from models.options import check_choice
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.binding import (
    ACTIVE_USD_M,
    BINDING_SLACK_USD_M,
    PRICE_TOL,
    PROGRAMME_FAMILIES,
    binding_constraints,
)
from optimizer.choices import CvarMethod, Solver
from optimizer.errors import SolverFailure
from optimizer.formulation import warm_start
from optimizer.formulation.problem import (
    USD_PER_UNIT,
    AllocationProblem,
    build_problem,
    depletion_floor,
)
from optimizer.formulation.warm_start import WarmStart
from optimizer.result import Allocation
from optimizer.result_tables import Solution, build_tables
from optimizer.solve_stage import SOLVERS, SolveLog, solve_stage

__all__ = [
    "ACTIVE_USD_M",
    "AUTO_CUTS_ABOVE_SCENARIOS",
    "BINDING_SLACK_USD_M",
    "HOLD_SLACK_USD_M",
    "LP_FALLBACK_MAX_SCENARIOS",
    "MIN_DEPLETION_PROBABILITY",
    "PRICE_TOL",
    "PROGRAMME_FAMILIES",
    "SOLVERS",
    "SolveLog",
    "binding_constraints",
    "optimize",
    "solve_stage",
    "solver_and_tolerance",
]

AUTO_CUTS_ABOVE_SCENARIOS = 0
"""``method="auto"`` uses the cutting plane above this many scenarios (:func:`auto_method`):
every set. Measured on the default case with its fund links (claims a fund cannot pay): at
1,200 scenarios the one LP took 18.9 s, the cutting plane 0.8 s, at the same optimum; at 300
scenarios of a confidence-held replication the one LP 10-15 s (1.9 s before the links), the
cutting plane under 1 s. The one LP stays the reference (``method="lp"``) and the fallback."""
AUTO_CUTS_WEIGHT_RANGE = 1e6
"""... and on scenario sets whose largest probability is more than this many times the least."""
LP_FALLBACK_MAX_SCENARIOS = 20_000
"""A failed cutting plane falls back to the one-LP formulation only up to this many scenarios."""
LP_FALLBACK_TIME_LIMIT_S = 120.0
"""... and gives it this long per solver call when the caller set no limit. Measured on a
confidence-held replication of the default case at 300 scenarios, where the cutting plane's
stage-2 master had no answer: the one LP's stage 2 (primal simplex) ran past 15 minutes. A
fallback that times out is a solver failure, reported as such."""

MIN_DEPLETION_PROBABILITY = 1e-15
"""The least ε ``optimize`` takes: ``1 − 1e-15`` is still below 1 in double precision."""

HOLD_SLACK_USD_M = 1e-9
"""Absolute room (US$m: a tenth of a cent) on the stage-2 gap hold, for an optimum of zero."""


def solver_and_tolerance(case: Case, solver: str, gap_tolerance: float | None) -> tuple[str, float]:
    """The solver's name and the stage-2 gap tolerance (share), or ValueError naming what is valid.

    ``gap_tolerance`` None means the case's ``policy.gap_tolerance_share``.
    """
    name = check_choice(str(solver).upper(), Solver, "solver").value
    tol = case.policy.gap_tolerance_share if gap_tolerance is None else float(gap_tolerance)
    if not 0.0 <= tol <= 0.1:
        raise OptionError(f"gap_tolerance must be in [0, 0.1], got {gap_tolerance}")
    return name, tol


def optimize(
    case: Case,
    scenarios: ScenarioSet,
    *,
    solver: str = "HIGHS",
    gap_tolerance: float | None = None,
    time_limit_s: float | None = None,
    method: str = "auto",
    marginal: bool = False,
    start: WarmStart | None = None,
) -> Allocation:
    """Allocate the case's money to minimise the weighted unmet credit gap within every limit.

    Parameters
    ----------
    case : Case
        The validated case.
    scenarios : ScenarioSet
        Losses per dollar lent, shape (n_scenarios, n_cells), simulated for this case, with
        scenario probabilities (used as given: importance-sampling weights are honoured).
    solver : {"HIGHS", "CLARABEL"}, default "HIGHS"
        First solver tried; the other is the fallback.
    gap_tolerance : float in [0, 0.1], optional
        Share of the optimal weighted gap stage 2 may give up; default
        ``case.policy.gap_tolerance_share``.
    time_limit_s : float, optional
        Time limit per solver call, seconds.
    method : {"auto", "lp", "cutting_plane"}, default "auto"
        ``"lp"``: one LP with a variable per scenario and CVaR (Rockafellar–Uryasev), the reference
        formulation. ``"cutting_plane"``: a small master LP plus CVaR cuts found by one pass over
        the loss matrix per iteration (Künzi-Bay & Mayer, split over scenario blocks,
        :func:`~optimizer.formulation.cutting_plane.cut_groups`); same optimum, far faster at many
        scenarios. ``"auto"`` picks the cutting plane above ``AUTO_CUTS_ABOVE_SCENARIOS`` scenarios
        or on weighted ones (:func:`auto_method`). The method used is recorded on the result.
    marginal : bool, default False
        Also re-solve each binding limit relaxed and tightened by US$1m (in this process):
        :func:`optimizer.analysis.marginal.marginal_values`, whose columns the binding table gains.
    start : WarmStart, optional
        Where the cutting plane begins (:mod:`optimizer.formulation.warm_start`): another solve's
        ``Allocation.warm_start``, from the same scenarios (its cuts) or from others of the same
        cells (cuts at its optimum). The loop stops on the same test, so the answer is an
        optimum to the same tolerance; ignored by the one-LP formulation.

    Returns
    -------
    Allocation

    Raises
    ------
    InfeasibleCase
        No allocation satisfies every constraint (confirmed by both solvers).
    SolverFailure
        The solvers returned no usable answer (time limit, numerical failure...).
    ScenarioMismatch
        The scenario set belongs to another case.
    """
    name, tol = solver_and_tolerance(case, solver, gap_tolerance)
    if time_limit_s is not None and not time_limit_s > 0:
        raise OptionError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    method = check_choice(method, CvarMethod, "method").value
    _check_depletion_levels(case, scenarios)
    if method == "auto":
        method = auto_method(scenarios)
    log = SolveLog()
    try:
        prob, optimum, binding, warm = _two_stages(
            case, scenarios, method, name, tol, time_limit_s, log, start
        )
    except SolverFailure as exc:
        if method != "cutting_plane" or exc.status == status_codes.USER_LIMIT:
            raise
        if scenarios.n_scenarios > LP_FALLBACK_MAX_SCENARIOS:
            # the one-LP formulation grows ~260 MiB per 1,000 scenarios: no silent 10+ GB build
            raise SolverFailure(
                exc.solver,
                exc.status,
                exc.stage,
                f"{exc.advice}; the one-LP fallback is not tried above "
                f"{LP_FALLBACK_MAX_SCENARIOS:,} scenarios (it would need ~"
                f"{scenarios.n_scenarios * 0.26 / 1000:,.0f} GB): retry with fewer scenarios "
                "or time_limit_s",
                exc.attempts,
            ) from exc
        # the one-LP formulation is slower but has the other solver as its own fallback
        log.fallbacks.append(f"cutting plane: {exc}; solved with the one-LP formulation")
        method = "lp"
        limit = LP_FALLBACK_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        prob, optimum, binding, warm = _two_stages(case, scenarios, method, name, tol, limit, log)
    tables = build_tables(prob, _solution(prob))
    result = Allocation(
        **tables,
        binding=binding,
        objective_weighted_gap_usd=optimum * USD_PER_UNIT,
        solver=log.solvers[-1],
        status=_worst(log.statuses),
        fallbacks=tuple(log.fallbacks),
        warnings=tuple(log.warnings),
        timings_s=dict(log.timings),
        n_scenarios=scenarios.n_scenarios,
        case_name=case.name,
        method=method,
        warm_start=warm,
    )
    if not marginal:
        return result
    from optimizer.analysis.marginal import marginal_values  # it builds on this module

    return marginal_values(
        case, scenarios, result, solver=name, gap_tolerance=tol, time_limit_s=time_limit_s
    )


def auto_method(scenarios: ScenarioSet) -> str:
    """The CVaR formulation ``method="auto"`` means for this scenario set.

    The cutting plane above :data:`AUTO_CUTS_ABOVE_SCENARIOS` scenarios, and at any count when
    the scenario probabilities span more than :data:`AUTO_CUTS_WEIGHT_RANGE` (importance
    sampling's likelihood ratios): scenario rows whose weights run over seven orders of
    magnitude make the one-LP formulation slow for HiGHS (measured on the shipped case, 1,200
    importance-sampled scenarios, weights 2e-7 to 2.1 times 1/S: one-LP 12.1 s, cutting plane
    0.48 s, the same optimum; 3.0 s and 0.31 s on plain Monte Carlo). Smaller sets with milder
    weights keep the one-LP reference formulation.
    """
    p = scenarios.probabilities
    spread = float(p.max()) / float(p.min()) if p.size and p.min() > 0 else np.inf
    many = scenarios.n_scenarios > AUTO_CUTS_ABOVE_SCENARIOS
    return "cutting_plane" if many or spread > AUTO_CUTS_WEIGHT_RANGE else "lp"


def _check_depletion_levels(case: Case, scenarios: ScenarioSet) -> None:
    """Refuse a depletion probability ε below :data:`MIN_DEPLETION_PROBABILITY`.

    Any ε below the smallest scenario probability is solved as that floor, with a warning
    (:func:`optimizer.formulation.problem.depletion_floor`); but under ~1.1e-16 (2^-53)
    ``1 − ε`` is 1 in double precision, and the result's risk tables (claims CVaR at ``1 − ε``)
    cannot be taken there. Checked before anything is built, so the message names the fund, not a solver.
    """
    for fund in case.funds:
        eps = fund.max_depletion_probability
        if eps >= MIN_DEPLETION_PROBABILITY:
            continue
        floor = depletion_floor(scenarios.probabilities)
        raise OptionError(
            f"fund {fund.id}: max_depletion_probability = {eps:g} is too small to serve as a "
            "probability level (1 − ε is 1 to double precision); set it between "
            f"{MIN_DEPLETION_PROBABILITY:g} and 0.5: on these {scenarios.n_scenarios:,} "
            f"scenarios any value up to {floor:.3g} already holds the fund's worst scenario "
            "within its capital"
        )


def _two_stages(
    case: Case,
    scenarios: ScenarioSet,
    method: str,
    solver: str,
    tol: float,
    time_limit_s: float | None,
    log: SolveLog,
    start: WarmStart | None = None,
) -> tuple[AllocationProblem, float, pd.DataFrame, WarmStart | None]:
    """Build, solve stage 1 (from ``start``), hold its gap, solve stage 2: (problem, optimum
    US$m, binding, the warm start both stages leave)."""
    began = time.perf_counter()
    prob = build_problem(case, scenarios, "cuts" if method == "cutting_plane" else "lp")
    log.add_time("build_s", time.perf_counter() - began)
    # what the build took differently from the case (a depletion probability below what the
    # scenarios can measure), once even when the one-LP fallback builds again
    log.warnings.extend(w for w in prob.warnings if w not in log.warnings)
    if warm_start.apply(prob, start):
        log.timings["stage1_start_cuts"] = float(len(prob.cut_master.cut_rows))
    solve_stage(prob, 1, solver, time_limit_s, log)
    optimum = float(prob.weighted_gap.value)
    binding = binding_constraints(prob)
    warm = warm_start.take(prob)
    if not solve_held_stage(prob, optimum, tol, solver, time_limit_s, log):
        return prob, optimum, binding, warm
    return prob, optimum, binding, warm_start.finish(warm, prob)


def solve_held_stage(
    prob: AllocationProblem,
    optimum: float,
    tol: float,
    solver: str,
    time_limit_s: float | None,
    log: SolveLog,
    retry: bool = True,
) -> bool:
    """Hold stage 1's weighted gap and solve stage 2 in place; False if stage 1's point stays.

    Parameters
    ----------
    prob : AllocationProblem
        Solved at stage 1: its variables hold stage 1's point.
    optimum : float
        Stage 1's weighted gap, US$m; stage 2 may give up ``tol`` of it (plus
        :data:`HOLD_SLACK_USD_M`).
    tol, solver, time_limit_s, log
        As for :func:`_two_stages`.
    retry : bool, default True
        Passed to :func:`solve_stage`: whether a cutting-plane master that ends without an
        answer is run again from scratch and scaled.

    Returns
    -------
    bool
        True when stage 2 solved. False when the cutting plane's master found no answer: stage
        1's point is put back and ``log`` says so. Stage 1's point is exact and optimal in
        weighted gap; stage 2 only picks, among allocations as good, the one of least loss and
        cost. Measured: a held replication of the default case at 300 importance-sampled
        scenarios whose stage-2 master no HiGHS setting could solve, and whose one-LP fallback
        ran past its 120 s limit.
    """
    stage1 = [(v, None if v.value is None else np.array(v.value)) for v in prob.problem.variables()]
    prob.set_stage(2, optimum * (1.0 + tol) + HOLD_SLACK_USD_M)
    try:
        solve_stage(prob, 2, solver, time_limit_s, log, retry=retry)
    except SolverFailure as exc:
        if prob.cut_master is None:
            raise
        for var, value in stage1:
            var.value = value
        log.warnings.append(
            f"stage 2 (least loss and cost at the optimal gap) was not solved ({exc.advice}); "
            "the allocation is stage 1's optimum, which meets every limit"
        )
        return False
    return True


def _worst(statuses: list[str]) -> str:
    inaccurate = status_codes.OPTIMAL_INACCURATE
    return inaccurate if inaccurate in statuses else status_codes.OPTIMAL


def _solution(prob: AllocationProblem) -> Solution:
    def clean(var: cp.Variable) -> np.ndarray:
        v = np.zeros(var.shape) if var.value is None else np.asarray(var.value, dtype=float)
        v = np.where(v > ACTIVE_USD_M, v, 0.0)
        return v * USD_PER_UNIT

    return Solution(clean(prob.x), clean(prob.c), clean(prob.t), clean(prob.z))
