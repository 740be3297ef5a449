"""One worker's sweep of a block of frontier points on one compiled problem.

What is swept is :mod:`optimizer.analysis.frontier_spec`'s :class:`Sweep`; :func:`sweep_block`
builds the allocation problem once and re-solves it at each value of its block, changing only
cvxpy parameter values (DPP), so cvxpy canonicalizes it once per worker.

Each point is solved from the same starting state whatever was solved before it in the same worker,
so a frontier's numbers do not depend on how its points are split among workers: cvxpy's solver
cache (through which HiGHS is warm-started from the previous solution) is emptied before each point,
and in cutting-plane mode the HiGHS master is reloaded from the compiled problem with the cuts
binding at the case's own optimum, which each worker solves first (from no cut, so every worker
finds the same ones; :class:`~optimizer.formulation.cutting_plane.CutPool`). Cuts stay valid
whatever the parameters, but carrying the ~1,000 rows of a solved point into the next made each
point about twice slower on the default case (20,000 scenarios, 8 points: 40 s from the case's own
cuts and basis, 21 s from none): HiGHS's iterations got dearer faster than the cut loop's got fewer.
The ~120 binding ones alone cut the frontier's master solves by a fifth (measured in
:meth:`_Sweeper._base_cuts`). A block runs on one BLAS thread
(:func:`~optimizer.formulation.blas_threads.one_blas_thread`): some products' last digits depend on
the thread count, which is not the same in this process, a loky worker or a dask worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.frontier_spec import Sweep
from optimizer.choices import PointStatus
from optimizer.errors import InfeasibleCase, OptimizerError
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.cutting_plane import CutMaster, CutPool
from optimizer.formulation.problem import USD_PER_UNIT, AllocationProblem, build_problem
from optimizer.formulation.warm_start import WarmStart
from optimizer.solve import PROGRAMME_FAMILIES, SolveLog, binding_constraints, solve_stage


@dataclass(frozen=True)
class BlockResult:
    """What one worker returns: its rows in order, and how often cvxpy compiled its problem."""

    rows: tuple[dict[str, Any], ...]
    compilations: int
    build_s: float


def sweep_block(
    case: Case,
    scenarios: ScenarioSet,
    sweep: Sweep,
    values: np.ndarray,
    solver: str,
    cvar_method: str,
    time_limit_s: float | None,
    start: WarmStart | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BlockResult:
    """Build the problem once and solve stage 1 at each value of the block, in order.

    ``start``: the case's own solve on these scenarios (its ``Allocation.warm_start``), whose
    cuts every point starts from instead of the block solving the case again; ``on_row`` is
    told each row as its point ends (progress when sweeping in-process).
    """
    with one_blas_thread():  # the same digits in this process, a loky or a dask worker
        began = time.perf_counter()
        sweeper = _Sweeper(case, scenarios, sweep, cvar_method, start)
        build_s = time.perf_counter() - began
        rows = []
        for v in values:
            rows.append(sweeper.solve(float(v), solver, time_limit_s))
            if on_row is not None:
                on_row(rows[-1])
    return BlockResult(tuple(rows), sweeper.compilations, build_s)


def _priority_view(prob: AllocationProblem) -> tuple[AllocationProblem, cp.Parameter]:
    """The stage-1 problem with the deforestation priority as a parameter.

    ``build_problem`` writes the segment weights ``1 + priority · pressure_k`` as constants, so
    the weighted gap ``Σ_k (gap_k − y_k) + priority · Σ_k pressure_k (gap_k − y_k)`` is rebuilt
    here from the lending variables, over the same constraints (the stage-2 gap hold among them
    never binds at stage 1: it holds the case's own weighted gap below its maximum).
    """
    case, e = prob.case, prob.elig
    seg_index = {s.id: k for k, s in enumerate(case.segments)}
    seg_of_x = prob.scenarios.cells["segment"].map(seg_index).to_numpy()[e.x_cell]
    n_x = e.x_cell.size
    group = sp.csr_matrix(
        (np.ones(n_x), (seg_of_x, np.arange(n_x))), shape=(len(case.segments), n_x)
    )
    gap = np.array([s.gap_usd for s in case.segments]) / USD_PER_UNIT
    pressure = np.array([s.deforestation_pressure for s in case.segments])
    unmet = gap - group @ prob.x
    priority = cp.Parameter(
        nonneg=True, name="deforestation_priority", value=case.policy.deforestation_priority
    )
    weighted_gap = cp.sum(unmet) + priority * (pressure @ unmet)
    problem = cp.Problem(cp.Minimize(weighted_gap), prob.problem.constraints)
    master = None
    if prob.cut_master is not None:  # the master solves this problem, not the built one
        master = CutMaster(problem, list(prob.cut_measures), prob.expo, prob.cut_master.groups)
    view = dataclasses.replace(prob, problem=problem, weighted_gap=weighted_gap, cut_master=master)
    return view, priority


_SWEPT = ("amount", "cvar_scale", "fund_tail_factor", "mobilization_ratio")


class _Sweeper:
    """One compiled problem and its parameters' base values."""

    def __init__(
        self,
        case: Case,
        scenarios: ScenarioSet,
        sweep: Sweep,
        cvar_method: str,
        start: WarmStart | None = None,
    ):
        prob = build_problem(case, scenarios, cvar_method)
        self.priority = None
        if sweep.kind == "deforestation_priority":
            prob, self.priority = _priority_view(prob)
        if not prob.problem.is_dpp():  # what makes "compiled once" true
            raise OptimizerError("the swept allocation problem is not DPP: it would recompile")
        self.prob, self.sweep, self.case = prob, sweep, case
        self.base = {
            name: np.array(getattr(prob, name).value, dtype=float, copy=True)
            for name in _SWEPT
            if getattr(prob, name) is not None
        }
        self._programs: list[object] = []
        self._count_program()  # the cutting-plane master is compiled when built
        # where every point's cut loop starts: the case's own cuts on these scenarios, given
        # or found by the first point (``_base_cuts``)
        self._start: CutPool | None = None
        if start is not None and start.fingerprint == scenarios.fingerprint:
            self._start = start.pool

    @property
    def compilations(self) -> int:
        return len(self._programs)

    def _count_program(self) -> None:
        program = getattr(getattr(self.prob.problem, "_cache", None), "param_prog", None)
        if program is not None and not any(program is p for p in self._programs):
            self._programs.append(program)  # holding it keeps its id from being re-used

    def set_value(self, value: float) -> None:
        """Every swept parameter back to the case's value, then the sweep's one at ``value``."""
        prob, sweep = self.prob, self.sweep
        for name, base in self.base.items():
            getattr(prob, name).value = base.copy() if base.ndim else float(base)
        if sweep.kind == "cvar_scale":
            scale = self.base["cvar_scale"].copy()
            scale[[prob.cvar_limited.index(s) for s in sweep.targets]] = value
            prob.cvar_scale.value = scale
        elif sweep.kind == "amount":
            amount = self.base["amount"].copy()
            ids = [s.id for s in self.case.sources]
            amount[[ids.index(s) for s in sweep.targets]] *= value
            prob.amount.value = amount
        elif sweep.kind == "depletion":
            factor = self.base["fund_tail_factor"].copy()
            # below the smallest scenario probability every ε is the worst scenario (as in
            # build_problem, which warns): the floor keeps 1/ε a number the solver can take
            eps = max(value, prob.depletion_floor)
            factor[prob.depletion_funds.index(sweep.targets[0])] = 1.0 / eps
            prob.fund_tail_factor.value = factor
        elif sweep.kind == "mobilization":
            prob.mobilization_ratio.value = value
        else:
            self.priority.value = value

    def _reset_master(self) -> None:
        master = self.prob.cut_master
        if master is not None:
            master.start(self._start)

    def _base_cuts(self, master: CutMaster, time_limit_s: float | None) -> CutPool:
        """The cuts binding at the case's own optimum (stage 1 at the sweep's base value),
        solved from no cut: every worker finds the same ones. No pool and no basis: measured
        on the default case (20,000 scenarios, 20 points of ``cvar_scale``, CPU seconds with
        the base solve), no cut 8.8 s, the base's binding cuts 6.9 s, with its basis too 7.4 s,
        with its other cuts pooled as well 8.0 s (each restored cut costs a master solve)."""
        self.set_value(self.sweep.base)
        self.prob.set_stage(1)
        master.reset()
        try:
            solve_stage(self.prob, 1, "HIGHS", time_limit_s, SolveLog())
        except OptimizerError:  # the case itself fails: its points start from no cut
            return CutPool((), (), None)
        return CutPool(master.snapshot().rows, (), None)

    def solve(self, value: float, solver: str, time_limit_s: float | None) -> dict[str, Any]:
        """Stage 1 at one value, from the same starting state whatever came before."""
        prob = self.prob
        if self._start is None and prob.cut_master is not None:
            self._start = self._base_cuts(prob.cut_master, time_limit_s)
        self.set_value(value)
        prob.set_stage(1)
        self._reset_master()
        # cvxpy hands HiGHS the previous solution as a warm start: a point would then depend
        # on the point before it (another optimal vertex, other binding rows) and so on the
        # number of workers. Emptying the solver cache keeps the compiled program.
        prob.problem._solver_cache.clear()
        start = time.perf_counter()
        try:
            solve_stage(prob, 1, solver, time_limit_s, SolveLog())
            row = _read_point(prob, self.case, value)
        except InfeasibleCase as exc:
            row = {"value": value, "status": PointStatus.infeasible.value, "reason": str(exc)}
        except OptimizerError as exc:
            row = {"value": value, "status": PointStatus.failed.value, "reason": str(exc)}
        row["seconds"] = time.perf_counter() - start
        self._count_program()
        return row


def _read_point(prob: AllocationProblem, case: Case, value: float) -> dict[str, Any]:
    """One frontier row from the stage-1 solution left in the problem."""
    e = prob.elig
    n_src = len(case.sources)
    spend = (
        np.bincount(e.x_source, prob.x.value, minlength=n_src)
        + np.bincount(e.c_source, prob.c.value, minlength=n_src)
        + np.bincount(e.t_source, prob.t.value, minlength=n_src)
    ) * USD_PER_UNIT
    kinds = np.array([s.kind.value for s in case.sources])
    gap = case.total_gap_usd
    unmet = float(np.clip(prob.weighted_gap.value, 0, None))  # weighted, US$m
    credit = float(np.sum(prob.x.value)) * USD_PER_UNIT
    binding = binding_constraints(prob)
    binding = binding[binding["family"].isin(PROGRAMME_FAMILIES) & (binding["shadow_price"] > 1e-6)]
    return {
        "value": value,
        "weighted_gap_usd": unmet * USD_PER_UNIT,
        "gap_closed_usd": min(credit, gap),
        "gap_closed_share": min(credit, gap) / gap if gap > 0 else 0.0,
        "public_usd": float(spend[kinds == "public"].sum()),
        "private_usd": float(spend[kinds == "private"].sum()),
        "climate_usd": float(spend[kinds == "climate"].sum()),
        "binding": "; ".join(f"{r.family} {r.subject}" for r in binding.itertuples()),
        "status": str(prob.problem.status),
        "reason": "",
    }
