"""``optimize``: solve the allocation LP in two lexicographic stages and read the answer.

Stage 1 minimises the weighted unmet gap; its duals are the shadow prices. Stage 2 holds the gap
at its optimum (within ``gap_tolerance``) and minimises the expected credit loss of all lending
plus the cost of the concessional money used, so the answer is not an arbitrary vertex.

Every solver status maps to a result or a typed error. HiGHS is the default and Clarabel the
fallback (or the other way round); each fallback is recorded with its reason on the result, and
an inaccurate solution is a warning on the result, never a silent success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cvxpy as cp
import numpy as np
import pandas as pd
from cvxpy import settings as status_codes
from cvxpy.error import SolverError

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.cut_loop import solve_with_cuts
from optimizer.cut_master import master_options
from optimizer.errors import InfeasibleCase, SolverFailure
from optimizer.problem import USD_PER_UNIT, AllocationProblem, build_problem, depletion_floor
from optimizer.result import Allocation, Solution, build_tables

SOLVERS = ("HIGHS", "CLARABEL")
"""Solvers ``optimize`` accepts; the one not chosen is the fallback."""
AUTO_CUTS_ABOVE_SCENARIOS = 5_000
"""``method="auto"`` uses the cutting plane above this many scenarios."""
LP_FALLBACK_MAX_SCENARIOS = 20_000
"""A failed cutting plane falls back to the one-LP formulation only up to this many scenarios."""

MIN_DEPLETION_PROBABILITY = 1e-15
"""The least ε ``optimize`` takes: ``1 − 1e-15`` is still below 1 in double precision."""

HOLD_SLACK_USD_M = 1e-9
"""Absolute room (US$m: a tenth of a cent) on the stage-2 gap hold, for an optimum of zero."""
BINDING_SLACK_USD_M = 1e-6
"""A row is binding when its slack is within US$1 (plus 1e-7 of its right-hand side)..."""
ACTIVE_USD_M = 1e-7
"""...and its activity exceeds US$0.10, so ``0 <= 0`` rows of unused options are not listed."""
PRICE_TOL = 1e-9

_INFEASIBLE = (
    status_codes.INFEASIBLE,
    status_codes.INFEASIBLE_INACCURATE,
    status_codes.INFEASIBLE_OR_UNBOUNDED,
)
_SOLVED = (status_codes.OPTIMAL, status_codes.OPTIMAL_INACCURATE)


@dataclass
class SolveLog:
    """What happened while solving: fallbacks, warnings, timings (mutable while solving)."""

    fallbacks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    solvers: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + float(seconds)


def solver_and_tolerance(case: Case, solver: str, gap_tolerance: float | None) -> tuple[str, float]:
    """The solver's name and the stage-2 gap tolerance (share), or ValueError naming what is valid.

    ``gap_tolerance`` None means the case's ``policy.gap_tolerance_share``.
    """
    name = str(solver).upper()
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    tol = case.policy.gap_tolerance_share if gap_tolerance is None else float(gap_tolerance)
    if not 0.0 <= tol <= 0.1:
        raise ValueError(f"gap_tolerance must be in [0, 0.1], got {gap_tolerance}")
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
        ``"lp"``: one LP with a variable per scenario and CVaR (Rockafellar–Uryasev), the
        reference formulation. ``"cutting_plane"``: a small master LP plus CVaR cuts found by
        one pass over the loss matrix per iteration (Künzi-Bay & Mayer, split over scenario
        blocks, :func:`~optimizer.cutting_plane.cut_groups`); same optimum, far faster at many
        scenarios. ``"auto"`` picks the cutting plane above
        ``AUTO_CUTS_ABOVE_SCENARIOS`` scenarios. The method used is recorded on the result.
    marginal : bool, default False
        Also re-solve each binding limit relaxed and tightened by US$1m (in this process):
        :func:`optimizer.marginal.marginal_values`, whose columns the binding table gains.

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
        raise ValueError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    if method not in ("auto", "lp", "cutting_plane"):
        raise ValueError(f"method must be 'auto', 'lp' or 'cutting_plane', got {method!r}")
    _check_depletion_levels(case, scenarios)
    if method == "auto":
        method = "cutting_plane" if scenarios.n_scenarios > AUTO_CUTS_ABOVE_SCENARIOS else "lp"
    log = SolveLog()
    try:
        prob, optimum, binding = _two_stages(case, scenarios, method, name, tol, time_limit_s, log)
    except SolverFailure as exc:
        if method != "cutting_plane" or exc.status == status_codes.USER_LIMIT:
            raise
        if scenarios.n_scenarios > LP_FALLBACK_MAX_SCENARIOS:
            # the one-LP formulation grows ~260 MiB per 1,000 scenarios: no silent 10+ GB build
            raise SolverFailure(
                exc.solver, exc.status, exc.stage,
                f"{exc.advice}; the one-LP fallback is not tried above "
                f"{LP_FALLBACK_MAX_SCENARIOS:,} scenarios (it would need ~"
                f"{scenarios.n_scenarios * 0.26 / 1000:,.0f} GB): retry with fewer scenarios "
                "or time_limit_s", exc.attempts,
            ) from exc  # fmt: skip
        # the one-LP formulation is slower but has the other solver as its own fallback
        log.fallbacks.append(f"cutting plane: {exc}; solved with the one-LP formulation")
        method = "lp"
        prob, optimum, binding = _two_stages(case, scenarios, method, name, tol, time_limit_s, log)
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
    )
    if not marginal:
        return result
    from optimizer.marginal import marginal_values  # it builds on this module

    return marginal_values(
        case, scenarios, result, solver=name, gap_tolerance=tol, time_limit_s=time_limit_s
    )


def _check_depletion_levels(case: Case, scenarios: ScenarioSet) -> None:
    """Refuse a depletion probability ε below :data:`MIN_DEPLETION_PROBABILITY`.

    Any ε below the smallest scenario probability is solved as that floor, with a warning
    (:func:`optimizer.problem.depletion_floor`); but under ~1.1e-16 (2^-53) ``1 − ε`` is 1 in
    double precision, and the result's risk tables (claims CVaR at ``1 − ε``) cannot be taken
    there. Checked before anything is built, so the message names the fund, not a solver.
    """
    for fund in case.funds:
        eps = fund.max_depletion_probability
        if eps >= MIN_DEPLETION_PROBABILITY:
            continue
        floor = depletion_floor(scenarios.probabilities)
        raise ValueError(
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
) -> tuple[AllocationProblem, float, pd.DataFrame]:
    """Build, solve stage 1, hold its gap, solve stage 2: (problem, optimum US$m, binding)."""
    start = time.perf_counter()
    prob = build_problem(case, scenarios, "cuts" if method == "cutting_plane" else "lp")
    log.add_time("build_s", time.perf_counter() - start)
    # what the build took differently from the case (a depletion probability below what the
    # scenarios can measure), once even when the one-LP fallback builds again
    log.warnings.extend(w for w in prob.warnings if w not in log.warnings)
    solve_stage(prob, 1, solver, time_limit_s, log)
    optimum = float(prob.weighted_gap.value)
    binding = binding_constraints(prob)
    prob.set_stage(2, optimum * (1.0 + tol) + HOLD_SLACK_USD_M)
    solve_stage(prob, 2, solver, time_limit_s, log)
    return prob, optimum, binding


def solve_stage(
    prob: AllocationProblem,
    stage: int,
    solver: str = "HIGHS",
    time_limit_s: float | None = None,
    log: SolveLog | None = None,
) -> SolveLog:
    """Solve one stage of a built problem in place, whatever its CVaR method.

    The solution is left in the problem's variables and the duals in its constraints. Callers
    that change parameters between calls (frontiers) re-use the compiled problem.

    Returns
    -------
    SolveLog
        ``log`` (or a new one) with fallbacks, warnings, timings and statuses appended.
    """
    log = SolveLog() if log is None else log
    if not any(v.size for v in prob.problem.variables()):
        _nothing_to_decide(prob, log)
        return log
    if prob.cut_master is None:
        _solve_stage(prob, stage, solver, time_limit_s, log)
        return log
    master = prob.cut_master
    start = time.perf_counter()
    master.sync(master_options(time_limit_s))
    log.add_time(f"stage{stage}_canonicalize_s", time.perf_counter() - start)

    def solve_master() -> float:
        status, seconds = master.solve()
        if status in _SOLVED:
            return seconds
        reason = f"HIGHS (cutting-plane master): {status}"
        if status in _INFEASIBLE:
            # the master is a relaxation of the full problem: infeasible here is infeasible
            raise InfeasibleCase(prob.case.name, stage, "HIGHS", reason)
        if status == status_codes.USER_LIMIT:
            raise SolverFailure(
                "HIGHS", status, stage,
                "the solver's time limit was reached in the cutting-plane master; raise "
                "time_limit_s or use fewer scenarios", (reason,),
            )  # fmt: skip
        raise SolverFailure(
            "HIGHS", status, stage, "the cutting-plane master has no usable answer", (reason,)
        )

    restarts = master.cold_restarts
    report = solve_with_cuts(master, prob.oracle, prob.expo, solve_master, stage=stage)
    log.timings[f"stage{stage}_cold_restarts"] = float(master.cold_restarts - restarts)
    log.solvers.append("HIGHS")
    log.statuses.append(str(prob.problem.status))
    log.timings[f"stage{stage}_iterations"] = float(report.iterations)
    log.timings[f"stage{stage}_cuts"] = float(report.cuts)
    log.add_time(f"stage{stage}_oracle_s", report.oracle_seconds)
    log.add_time(f"stage{stage}_solve_s", report.master_seconds)
    return log


def _nothing_to_decide(prob: AllocationProblem, log: SolveLog) -> None:
    """No source may lend, fund or cover anything: the answer is to lend nothing (solvers
    refuse an empty problem)."""
    for var in prob.problem.variables():
        var.value = np.zeros(var.shape)
    for con in prob.problem.constraints:
        for dual in con.dual_variables:
            dual.value = np.zeros(dual.shape)
    log.solvers.append("none")
    log.statuses.append(status_codes.OPTIMAL)


def _worst(statuses: list[str]) -> str:
    inaccurate = status_codes.OPTIMAL_INACCURATE
    return inaccurate if inaccurate in statuses else status_codes.OPTIMAL


# HiGHS settings measured on the default case (2,000-10,000 scenarios): the problem is already
# in US$ millions, and HiGHS's own equilibration scaling made the dual simplex 5-10x slower on
# the dense scenario rows; stage 2 starts from a problem whose feasible region is stage 1's, where
# the primal simplex was 5-20x faster than the dual (and than re-using stage 1's point).
_HIGHS_STAGE_OPTIONS: dict[int, dict[str, Any]] = {
    1: {"simplex_scale_strategy": 0},
    2: {"simplex_scale_strategy": 0, "simplex_strategy": 4},
}


def _solver_options(name: str, stage: int, time_limit_s: float | None) -> dict[str, Any]:
    if name == "HIGHS":
        opts: dict[str, Any] = {"output_flag": False, **_HIGHS_STAGE_OPTIONS[stage]}
        if time_limit_s is not None:
            opts["time_limit"] = float(time_limit_s)
        return {"highs_options": opts}
    return {} if time_limit_s is None else {"time_limit": float(time_limit_s)}


def _run(
    prob: AllocationProblem, name: str, stage: int, time_limit_s: float | None
) -> tuple[str, str, float]:
    """One solver call: (cvxpy status, reason text for a failure, solver seconds)."""
    try:
        prob.problem.solve(
            solver=name,
            canon_backend="CPP" if prob.cut_measures else "SCIPY",
            **_solver_options(name, stage, time_limit_s),
        )
    except SolverError as exc:
        # cvxpy's text ends in advice for its own API ("solve with verbose=True"): keep the
        # first sentence, the one that says what happened
        return "solver_error", f": {str(exc).split('. ')[0].rstrip('.')}", 0.0
    except ValueError:
        # cvxpy refuses a solution it cannot read ("Cannot unpack invalid solution", with
        # object addresses): HiGHS stopped with status unknown, e.g. on coefficients near
        # 1e300. The next solver is tried; if none answers, SolverFailure lists each attempt.
        return "solver_error", ": stopped without a usable solution (status unknown)", 0.0
    stats = prob.problem.solver_stats
    return str(prob.problem.status), "", float(stats.solve_time or 0.0) if stats else 0.0


def _solve_stage(
    prob: AllocationProblem, stage: int, primary: str, time_limit_s: float | None, log: SolveLog
) -> None:
    """Solve one stage with fallback; leave the solution in the problem's variables."""
    order = [primary] + [s for s in SOLVERS if s != primary]
    attempts: list[str] = []
    statuses: list[str] = []
    for i, name in enumerate(order):
        start = time.perf_counter()
        status, reason, solve_s = _run(prob, name, stage, time_limit_s)
        # cvxpy's wall time minus the solver's own: canonicalization and unpacking.
        log.add_time(f"stage{stage}_canonicalize_s", time.perf_counter() - start - solve_s)
        log.add_time(f"stage{stage}_solve_s", solve_s)
        attempts.append(f"{name}: {status}{reason}")
        statuses.append(status)
        if status in _SOLVED:
            if status == status_codes.OPTIMAL_INACCURATE:
                log.warnings.append(
                    f"stage {stage}: {name} reports an inaccurate optimum; check limits against "
                    "the recomputed risk figures, or re-run with the other solver"
                )
            log.solvers.append(name)
            log.statuses.append(status)
            return
        if status == status_codes.USER_LIMIT:
            # The budget of time is spent: a fallback would overrun it.
            limit = "time" if time_limit_s is None else f"time limit of {time_limit_s} s"
            raise SolverFailure(
                name,
                status,
                stage,
                f"the solver's iteration or {limit} was reached; raise time_limit_s or use "
                "fewer scenarios",
                tuple(attempts),
            )
        if i + 1 < len(order):
            log.fallbacks.append(
                f"stage {stage}: {name} returned {status}{reason}; retried with {order[i + 1]}"
            )
    if any(s in _INFEASIBLE for s in statuses):
        raise InfeasibleCase(prob.case.name, stage, order[-1], "; ".join(attempts))
    raise SolverFailure(
        order[-1],
        statuses[-1],
        stage,
        "no solver produced a usable answer; check the case for extreme values (amounts, "
        "limits near zero) or reduce the number of scenarios",
        tuple(attempts),
    )


def _solution(prob: AllocationProblem) -> Solution:
    def clean(var: cp.Variable) -> np.ndarray:
        v = np.zeros(var.shape) if var.value is None else np.asarray(var.value, dtype=float)
        v = np.where(v > ACTIVE_USD_M, v, 0.0)
        return v * USD_PER_UNIT

    return Solution(clean(prob.x), clean(prob.c), clean(prob.t), clean(prob.z))


PROGRAMME_FAMILIES = (
    "budget", "cvar_limit", "expected_loss_limit", "fund_depletion", "fund_capital_cap",
    "leverage", "return_hurdle", "senior_cap", "mobilization", "climate_earmark",
    "segment_share", "region_share", "product_share", "technical_assistance",
)  # fmt: skip
"""Constraint families worth a sentence (per-cell rows are too many to read)."""


def binding_constraints(prob: AllocationProblem) -> pd.DataFrame:
    """Binding rows of the stage-1 solution with their shadow prices.

    Returns
    -------
    DataFrame with columns ``family, subject, label, relaxation, slack_usd, shadow_price``.
    ``shadow_price`` is the weighted-gap US$ closed per US$ of relaxation of the row (the
    dual of ``lhs <= rhs`` at stage 1, >= 0), e.g. for ``budget`` of a source: US$1m more of
    its money closes ``shadow_price`` US$m of weighted gap.
    """
    rows = []
    for fam in prob.families:
        slack = fam.slack()
        rhs = np.abs(np.atleast_1d(np.asarray(fam.constraint.args[1].value, dtype=float)))
        rhs = np.broadcast_to(rhs, slack.shape)
        dual = fam.constraint.dual_value
        price = np.zeros(slack.shape) if dual is None else np.atleast_1d(np.asarray(dual))
        active = np.abs(np.atleast_1d(np.asarray(fam.activity.value, dtype=float)))
        tight = slack <= BINDING_SLACK_USD_M + 1e-7 * rhs
        keep = (tight & (active > ACTIVE_USD_M)) | (np.abs(price) > PRICE_TOL)
        for i in np.flatnonzero(keep):
            rows.append(
                (
                    fam.name,
                    fam.subjects[i],
                    fam.labels[i],
                    fam.relaxations[i],
                    float(max(slack[i], 0.0) * USD_PER_UNIT),
                    float(max(price[i], 0.0)),
                )
            )
    frame = pd.DataFrame(
        rows, columns=["family", "subject", "label", "relaxation", "slack_usd", "shadow_price"]
    )
    return frame.sort_values("shadow_price", ascending=False, kind="stable").reset_index(drop=True)
