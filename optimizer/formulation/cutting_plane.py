"""Cutting-plane CVaR (Künzi-Bay & Mayer 2006), several CVaR constraints at once.

Each CVaR measure k (a funder's losses, a fund's claims) is written ``t_k + f_k η_k`` with ``f_k =
1/(1 − α_k)`` and ``η_k >= 0`` standing for ``Σ_ω π_ω (L_k(ω) − t_k)+``. The cvxpy problem holds no
scenario at all; it is compiled once and handed to a persistent HiGHS model (:class:`CutMaster`), to
which each iteration appends aggregated cut rows ``η_k >= g·e_k − P·t_k`` in place, so HiGHS
re-optimises from its last basis (dual simplex) instead of starting again. After each master solve
one pass over the loss matrix (:class:`~optimizer.formulation.tail_oracle.TailOracle`) finds every
measure's VaR and true CVaR at the master's point, and for each measure whose CVaR exceeds both its
limit and the master's estimate, the cut tangent at that VaR. The loop stops when every measure's
true CVaR is within its limit or within ``tolerance`` of the master's estimate: the master is a
relaxation, so its optimum is then the optimum of the one-LP formulation, and its duals are that
formulation's duals (each cut sums scenario rows with zero right-hand side, so the master's dual is
a dual of the full LP with the same objective).

A cut is an outer linearisation of ``Σ π (L − t)+``, a function of the exposures alone, so it
stays valid whatever the budgets, limits or objective: stage 2 and every point of a frontier
start with all the cuts found so far.

Partially aggregated cuts (multi-cut). With ``G`` blocks (:func:`cut_groups`) the scenarios are cut into
contiguous blocks and each measure's ``η_k`` bounds the sum of one ``η_kg`` per block, each
with its own cuts. One pass then tells the master ``G`` times more about the tail function:
measured on the default case (both stages), Kelley's single cut took 113, 264 and 404
iterations at 10^4, 10^5 and 10^6 scenarios; 16, 32 and 64 blocks take 24, 32 and 45. More
blocks make the master's rows many and its solves slow, so the count grows with the scenarios
(``cut_groups``), and cut rows idle for ``IDLE_SOLVES`` solves wait in a pool.

Re-solving a changed problem from a base's cuts (:class:`CutPool`). Solve the base, take its
pool, change parameters, start the master from the pool and solve again::

    prob = build_problem(case, scenarios, "cuts")
    solve_stage(prob, 1)                       # the base
    pool = prob.cut_master.snapshot()          # its binding cuts and basis, the rest pooled
    prob.cvar_scale.value = relaxed            # e.g. one CVaR limit US$1m higher
    prob.cut_master.start(pool)                # instead of reset(): the base's state
    solve_stage(prob, 1)

A pool also starts a problem built again from an edited case on the same scenario set (same
cells, sources and funds: the same measures); its basis is used when the model's size is the
same. Measured on the default case, each CVaR limit relaxed by US$1m in turn: at 20,000
scenarios 1-5 iterations (0.03-0.24 s CPU) against 17-21 from no cut (0.8-1.0 s); at 10^5,
1-11 against 22-24 (0.07-1.4 s against 2.3-2.6 s); optima within 2e-8.

The work is split by job: :mod:`optimizer.formulation.cut_measures` (the measures and their scenario
blocks), :mod:`optimizer.formulation.cut_master` (the persistent HiGHS model and its cut rows, pools
and bases) and :mod:`optimizer.formulation.cut_loop` (the alternation of master solves and passes).
This module is their public face: every name is importable from here, as before.
"""

from __future__ import annotations

from optimizer.formulation.cut_loop import (
    DROP_AT_LEAST,
    IDLE_SOLVES,
    MAX_ITERATIONS,
    POOL_TOLERANCE,
    TOLERANCE_ABS_USD_M,
    TOLERANCE_REL,
    CutReport,
    _summed_cuts,
    _tangent_cuts,
    solve_with_cuts,
)
from optimizer.formulation.cut_master import CutMaster
from optimizer.formulation.cut_measures import (
    GROUPS_AT_10K,
    MAX_GROUPS,
    CutMeasure,
    cut_groups,
    make_measure,
)
from optimizer.formulation.cut_pool import (
    FEASIBILITY_TOL,
    MASTER_OPTIONS,
    CutPool,
    master_options,
)

__all__ = [
    "DROP_AT_LEAST",
    "FEASIBILITY_TOL",
    "GROUPS_AT_10K",
    "IDLE_SOLVES",
    "MASTER_OPTIONS",
    "MAX_GROUPS",
    "MAX_ITERATIONS",
    "POOL_TOLERANCE",
    "TOLERANCE_ABS_USD_M",
    "TOLERANCE_REL",
    "CutMaster",
    "CutMeasure",
    "CutPool",
    "CutReport",
    "_summed_cuts",
    "_tangent_cuts",
    "cut_groups",
    "make_measure",
    "master_options",
    "solve_with_cuts",
]
