"""The elastic re-solve of a diagnosis: every named row gets a slack, their weighted sum is minimised.

:func:`elastic_problem` takes the stage-1 allocation LP, gives every row of every named constraint
family one slack, ``lhs <= rhs + slack`` with ``slack >= 0`` (US$ millions), keeps every other
constraint as it is, and minimises ``Σ_f weight_f Σ_rows slack`` (see
:mod:`optimizer.analysis.diagnose` for the weights and the gap target). :func:`solve_elastic` solves
it with the other solver as fallback. Reading the slacks back into the case is
:mod:`optimizer.analysis.relaxations`.
"""

from __future__ import annotations

from collections.abc import Mapping

import cvxpy as cp
from cvxpy import settings as status_codes
from cvxpy.error import SolverError

from optimizer.errors import SolverFailure
from optimizer.formulation.problem import USD_PER_UNIT, AllocationProblem, segment_weights
from optimizer.solve_stage import fallback_order, solver_options

_SOLVED = (status_codes.OPTIMAL, status_codes.OPTIMAL_INACCURATE)


def elastic_problem(
    prob: AllocationProblem, weights: Mapping[str, float], max_weighted_gap_usd: float | None
) -> tuple[cp.Problem, list[cp.Variable], cp.Expression]:
    """The elastic form of ``prob``'s stage 1.

    Parameters
    ----------
    prob : AllocationProblem
        Built with the one-LP formulation (every row explicit).
    weights : mapping of family name to float
        Slack weight of every family of ``prob`` (per US$ of relaxation).
    max_weighted_gap_usd : float, optional
        Also require the weighted unmet gap, counting the segment-gap slacks as unmet, to be at
        most this (US$).

    Returns
    -------
    problem : cvxpy Problem
    slacks : list of cvxpy Variable
        One per family of ``prob``, in order, each of the family's shape (US$m).
    objective : cvxpy Expression
        ``Σ_f weight_f Σ_rows slack``, US$m.
    """
    case = prob.case
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
    objective = sum(weights[f.name] * cp.sum(s) for f, s in zip(prob.families, slacks, strict=True))
    return cp.Problem(cp.Minimize(objective), constraints), slacks, objective


def solve_elastic(problem: cp.Problem, primary: str, time_limit_s: float | None) -> tuple[str, str]:
    """Solve ``problem`` with ``primary``, then the other solver.

    Parameters
    ----------
    problem : cvxpy Problem
        The elastic problem (:func:`elastic_problem`).
    primary : {"HIGHS", "CLARABEL"}
        First solver tried.
    time_limit_s : float, optional
        Per solver call.

    Returns
    -------
    solver : str
        The solver that answered.
    status : str
        ``"optimal"`` or ``"optimal_inaccurate"``.

    Raises
    ------
    SolverFailure
        Neither solver answered (the elastic problem is always feasible in exact arithmetic).
    """
    attempts = []
    status = "not run"
    for name in fallback_order(primary):
        try:
            problem.solve(solver=name, canon_backend="SCIPY", **solver_options(name, time_limit_s))
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
