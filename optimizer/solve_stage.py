"""Solving one stage of a built allocation problem in place, whatever its CVaR method.

:func:`solve_stage` leaves the solution in the problem's variables and the duals in its constraints:
the one-LP formulation through cvxpy with the other solver as fallback, the cut formulation through
its persistent master and the cut loop (:mod:`optimizer.formulation.cut_loop`), and a problem with
nothing to decide as all zeros. Every solver status maps to a solution or a typed error; fallbacks,
warnings and timings go to a :class:`SolveLog`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cvxpy import settings as status_codes
from cvxpy.error import SolverError

from optimizer.choices import Solver
from optimizer.errors import InfeasibleCase, SolverFailure
from optimizer.formulation.cut_loop import solve_with_cuts
from optimizer.formulation.cut_pool import master_options
from optimizer.formulation.problem import AllocationProblem

SOLVERS = tuple(s.value for s in Solver)
"""Solvers ``optimize`` accepts; the one not chosen is the fallback."""


def fallback_order(primary: str) -> list[str]:
    """The solvers to try, ``primary`` first and then the others: the one fallback order."""
    return [primary] + [s for s in SOLVERS if s != primary]


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
        """Adds ``seconds`` to the timing ``key`` (which starts at 0)."""
        self.timings[key] = self.timings.get(key, 0.0) + float(seconds)


def solve_stage(
    prob: AllocationProblem,
    stage: int,
    solver: str = "HIGHS",
    time_limit_s: float | None = None,
    log: SolveLog | None = None,
    retry: bool = True,
) -> SolveLog:
    """Solve one stage of a built problem in place, whatever its CVaR method.

    The solution is left in the problem's variables and the duals in its constraints. Callers
    that change parameters between calls (frontiers) re-use the compiled problem. ``retry``
    (the cutting plane's master): run a master that ends without an answer again from scratch
    and then scaled (:meth:`~optimizer.formulation.cut_master.CutMaster.solve`).

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
        status, seconds = master.solve(retry)
        if status in _SOLVED:
            return seconds
        reason = f"HIGHS (cutting-plane master): {status}"
        if status in _INFEASIBLE:
            # the master is a relaxation of the full problem: infeasible here is infeasible
            raise InfeasibleCase(prob.case.name, stage, "HIGHS", reason)
        if status == status_codes.USER_LIMIT:
            raise SolverFailure(
                "HIGHS",
                status,
                stage,
                "the solver's time limit was reached in the cutting-plane master; raise "
                "time_limit_s or use fewer scenarios",
                (reason,),
            )
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


# HiGHS settings measured on the default case (2,000-10,000 scenarios): the problem is already
# in US$ millions, and HiGHS's own equilibration scaling made the dual simplex 5-10x slower on
# the dense scenario rows; stage 2 starts from a problem whose feasible region is stage 1's, where
# the primal simplex was 5-20x faster than the dual (and than re-using stage 1's point).
_HIGHS_STAGE_OPTIONS: dict[int, dict[str, Any]] = {
    1: {"simplex_scale_strategy": 0},
    2: {"simplex_scale_strategy": 0, "simplex_strategy": 4},
}


def solver_options(
    name: str, time_limit_s: float | None, highs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """cvxpy's ``solve`` keywords for solver ``name``: silent, with the time limit (seconds)
    and, for HiGHS, the ``highs`` options (a stage's, :data:`_HIGHS_STAGE_OPTIONS`)."""
    if name == "HIGHS":
        opts: dict[str, Any] = {"output_flag": False, **(highs or {})}
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
            **solver_options(name, time_limit_s, _HIGHS_STAGE_OPTIONS[stage]),
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
    order = fallback_order(primary)
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
