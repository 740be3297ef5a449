"""The worker side of :mod:`optimizer.analysis.marginal`: the allocation problem with every
constraint family's right-hand side moved by cvxpy parameters, and one worker's re-solves.

:func:`relaxable` gives each family ``lhs <= rhs + r + d * V``: ``r`` moves a money row in US$m,
``d`` a share, rate, ratio or multiple (the coefficient of the volume ``V`` it multiplies, so ``d``
is the case with that coefficient changed); both are parameters, so the problem is compiled once
(DPP) and a re-solve only sets values. In cutting-plane mode the CVaR measures are copied with
limits that move with their rows, and the copy has a master of its own
(``optimizer/formulation/cutting_plane.py`` is left as it is: :meth:`_Resolver._restore` sets the
master's cut list and basis from the outside; a ``CutMaster.snapshot()/restore()`` pair there would
be the clean hook).

:func:`marginal_block` builds this problem once, solves the base (both stages, as
:func:`optimizer.optimize` does), keeps the base's stage-1 state, and solves each group relaxed
and tightened from that state: the figures do not depend on which groups a worker solved
before, so not on ``n_jobs``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.errors import InfeasibleCase, OptimizerError
from optimizer.formulation import warm_start
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.cutting_plane import CutMaster, master_options
from optimizer.formulation.problem import USD_PER_UNIT, AllocationProblem, build_problem
from optimizer.formulation.warm_start import WarmStart
from optimizer.solve import ACTIVE_USD_M, SolveLog, solve_held_stage, solve_stage

STEP_USD = 1e6
"""The step every limit is moved by, or the step of a share worth this much at the optimum."""

# Families whose step is a coefficient: how to read the volume V it multiplies (the row reads
# ``... <= coef * V``, or ``coef * V <= ...`` for the earmark, ``coef * V + ... <= ...`` for the
# hurdle): "activity" is the family's activity, a tuple names the case field of ``rhs / coef``.
_ACTIVITY = "activity"
_COEFFICIENT_FAMILIES: dict[str, Any] = {
    "cvar_limit": _ACTIVITY,  # share limits only: V = commitment (lending + capital)
    "expected_loss_limit": _ACTIVITY,  # V = lending plus fund capital
    "return_hurdle": _ACTIVITY,  # V = lending (the hurdle lowered)
    "climate_earmark": _ACTIVITY,  # V = climate lending (the earmark share lowered)
    "leverage": ("funds", "leverage_cap"),  # V = fund capital
    "senior_cap": ("sources", "max_multiple_of_concessional"),  # V = concessional money
    "segment_share": ("policy", "max_share_per_segment"),  # V = total lending
    "region_share": ("policy", "max_share_per_region"),
    "product_share": ("policy", "max_share_per_product"),
}


# --- the relaxable problem ---------------------------------------------------------------------
@dataclass(eq=False)
class _Knobs:
    """One family's relaxation parameters: ``lhs <= rhs + r + d * V`` (US$m)."""

    name: str
    subjects: tuple[str, ...]
    r: cp.Parameter
    d: cp.Parameter | None
    volume: cp.Expression | None
    activity: cp.Expression


def _volume(prob: AllocationProblem, fam) -> cp.Expression | None:
    """The volume a coefficient family's coefficient multiplies, or None (a money family)."""
    how = _COEFFICIENT_FAMILIES.get(fam.name)
    if how is None:
        return None
    if how == _ACTIVITY:
        return fam.activity
    table, attr = how
    if table == "policy":
        coef = np.full(len(fam.subjects), float(getattr(prob.case.policy, attr)))
    else:
        by_id = {item.id: getattr(item, attr) for item in getattr(prob.case, table)}
        coef = np.array([float(by_id[s]) for s in fam.subjects])
    if (coef <= 0).any():  # the row cannot bind with a volume: money steps instead
        return None
    return cp.multiply(1.0 / coef, fam.constraint.args[1])


def relaxable(prob: AllocationProblem) -> tuple[AllocationProblem, list[_Knobs]]:
    """The problem with every family's right-hand side moved by parameters (zero for now).

    The same variables and objective, the other rows unchanged; in cut mode new measure copies
    whose limits move with their rows (the loop stops on them) and a master of its own.
    """
    n_f = len(prob.families)
    constraints = list(prob.problem.constraints)
    if any(a is not f.constraint for a, f in zip(constraints, prob.families, strict=False)):
        raise OptimizerError("the problem's first rows are not its families: cannot relax them")
    knobs, families = [], []
    for fam in prob.families:
        n = len(fam.subjects)
        r = cp.Parameter(n, name=f"relax_{fam.name}", value=np.zeros(n))
        volume = _volume(prob, fam)
        d = None if volume is None else cp.Parameter(n, name=f"coef_{fam.name}", value=np.zeros(n))
        lhs, rhs = fam.constraint.args
        moved = rhs + r if d is None else rhs + r + cp.multiply(d, volume)
        families.append(dataclasses.replace(fam, constraint=lhs <= moved))
        knobs.append(_Knobs(fam.name, fam.subjects, r, d, volume, fam.activity))
    problem = cp.Problem(
        prob.problem.objective, [f.constraint for f in families] + constraints[n_f:]
    )
    view = dataclasses.replace(prob, problem=problem, families=tuple(families))
    if prob.cut_master is None:
        return view, knobs
    measures = [copy.copy(m) for m in prob.cut_measures]
    n_cvar = len(prob.cvar_limited)
    for k in knobs:
        first = {"cvar_limit": 0, "fund_depletion": n_cvar}.get(k.name)
        if first is None:
            continue
        for i, subject in enumerate(k.subjects):
            m = measures[first + i]
            if m.name != subject:
                raise OptimizerError(f"cut measure {m.name!r} is not the {k.name} of {subject!r}")
            extra = k.r[i] if k.d is None else k.r[i] + k.d[i] * k.volume[i]
            m.limit = m.limit + extra
    master = CutMaster(problem, measures, prob.expo, prob.cut_master.groups)
    return dataclasses.replace(view, cut_measures=tuple(measures), cut_master=master), knobs


# --- one worker's re-solves --------------------------------------------------------------------
@dataclass(frozen=True)
class _Point:
    """A solved point: stage-1 optimum (weighted, US$) and the returned plain unmet gap (US$)."""

    weighted_usd: float
    unmet_usd: float
    note: str = ""


@dataclass(frozen=True)
class BlockResult:
    """One worker's groups: the base point, each group's step rates, relaxed and tightened."""

    base: _Point
    step_rates: tuple[tuple[float, ...], ...]
    relaxed: tuple[_Point, ...]
    tightened: tuple[_Point, ...]
    seconds: float


class _Resolver:
    """The relaxable problem of one case, solved once at the base, then at each change."""

    def __init__(
        self,
        case: Case,
        scenarios: ScenarioSet,
        method: str,
        solver: str,
        tol: float,
        time_limit_s: float | None,
        start: WarmStart | None = None,
    ):
        prob = build_problem(case, scenarios, "cuts" if method == "cutting_plane" else "lp")
        self.view, knobs = relaxable(prob)
        warm_start.apply(self.view, start)  # the base from the allocation's own cuts
        if not self.view.problem.is_dpp():  # what makes "compiled once" true
            raise OptimizerError("the relaxable allocation problem is not DPP: it would recompile")
        self.knobs = {k.name: k for k in knobs}
        self.solver, self.tol, self.time_limit_s = solver, tol, time_limit_s
        ratio = self.view.mobilization_ratio
        self.base_ratio = None if ratio is None else float(ratio.value)
        gap = np.array([s.gap_usd for s in case.segments])
        seg = {s.id: k for k, s in enumerate(case.segments)}
        cells = scenarios.cells["segment"].map(seg).to_numpy()
        self.gap, self.seg_of_x = gap, cells[self.view.elig.x_cell]
        self.snapshot = None
        self.base = self._solve(keep_state=True)
        if math.isnan(self.base.weighted_usd):
            raise OptimizerError(f"the base did not re-solve: {self.base.note}")
        # the volumes each coefficient multiplies, at the base's returned allocation (US$m)
        self.volumes = {
            k.name: np.atleast_1d(np.asarray(k.volume.value, dtype=float))
            for k in knobs
            if k.volume is not None
        }
        mob = self.knobs.get("mobilization")
        self.concessional = (
            float(np.asarray(mob.activity.value).reshape(-1)[0]) / self.base_ratio
            if mob is not None and self.base_ratio
            else 0.0
        )

    def _reset(self) -> None:
        for k in self.knobs.values():
            k.r.value = np.zeros(k.r.shape)
            if k.d is not None:
                k.d.value = np.zeros(k.d.shape)
        if self.base_ratio is not None:
            self.view.mobilization_ratio.value = self.base_ratio

    def step_rates(self, family: str, subjects: tuple[str, ...]) -> tuple[float, ...]:
        """The coefficient step worth US$1m at the base's returned allocation (NaN: money)."""
        k = self.knobs[family]
        if family == "mobilization":
            return (_per_usd_m(self.concessional),)
        if k.d is None:
            return tuple(math.nan for _ in subjects)
        volume = self.volumes[family]
        rates = []
        for s in subjects:
            i = k.subjects.index(s)
            share_limit = family != "cvar_limit" or self._is_share_limit(s)
            rates.append(_per_usd_m(volume[i]) if share_limit else math.nan)
        return tuple(rates)

    def _is_share_limit(self, source: str) -> bool:
        src = next(s for s in self.view.case.sources if s.id == source)
        return src.cvar_limit_usd is None

    def solve(self, family: str, subjects, rates, sign: float) -> _Point:
        self._reset()
        k = self.knobs[family]
        if family == "mobilization" and not math.isnan(rates[0]):
            self.view.mobilization_ratio.value = max(self.base_ratio - sign * rates[0], 0.0)
        else:
            r = np.zeros(k.r.shape)
            d = None if k.d is None else np.zeros(k.d.shape)
            for s, rate in zip(subjects, rates, strict=True):
                i = k.subjects.index(s)
                if math.isnan(rate):
                    r[i] += sign * STEP_USD / USD_PER_UNIT
                else:
                    d[i] += sign * rate
            k.r.value = r
            if d is not None:
                k.d.value = d
        return self._solve()

    def _restore(self) -> None:
        """Start from the base's stage-1 state (its cuts and basis, the cuts of its stage 2 in
        the pool), or a cold LP."""
        master = self.view.cut_master
        if master is None or self.snapshot is None:
            # cvxpy would warm-start HiGHS from the last point solved: another vertex, and
            # figures that depend on which group a worker solved before
            self.view.problem._solver_cache.clear()
            return
        rows, pool, basis = self.snapshot
        master.reset()
        master.cut_rows, master.pool = list(rows), list(pool)
        master._idle = np.zeros(len(rows), dtype=np.int64)
        master.sync(master_options(self.time_limit_s))
        if basis.valid:
            master.highs.setBasis(basis)

    def _solve(self, keep_state: bool = False) -> _Point:
        view, log = self.view, SolveLog()
        view.set_stage(1)
        self._restore()
        try:
            solve_stage(view, 1, self.solver, self.time_limit_s, log)
            optimum = float(view.weighted_gap.value)
            if keep_state and view.cut_master is not None:
                m = view.cut_master
                self.snapshot = (list(m.cut_rows), list(m.pool), m.highs.getBasis())
            # A what-if's stage 2 gets no retries: it only picks the plain gap among allocations
            # of the same weighted gap, and a master that failed warm (a few per hundred
            # re-solves at 10^3 importance-sampled scenarios) failed again cold and scaled at
            # 10-60x the cost of a solve; the weighted gap, from stage 1, is exact either way.
            held = solve_held_stage(
                view, optimum, self.tol, self.solver, self.time_limit_s, log, retry=keep_state
            )
            if held and keep_state and view.cut_master is not None:
                # the cuts stage 2 found wait in the pool: a re-solve's stage 2 takes them back
                # without a pass over the scenarios when its point violates them (measured at
                # 20,000 scenarios: 482 -> 300 passes over 64 re-solves, the step 39 -> 31 s)
                m, (rows, pool, basis) = view.cut_master, self.snapshot
                seen = {id(r) for r in rows} | {id(r) for r in pool}
                extra = [r for r in [*m.cut_rows, *m.pool] if id(r) not in seen]
                self.snapshot = (rows, pool + extra, basis)
        except InfeasibleCase:
            return _Point(math.nan, math.nan, "infeasible")
        except OptimizerError as exc:
            return _Point(math.nan, math.nan, f"no solution: {exc}")
        x = np.zeros(view.x.shape) if view.x.value is None else np.asarray(view.x.value, float)
        x = np.where(x > ACTIVE_USD_M, x, 0.0) * USD_PER_UNIT  # as the result's tables read it
        credit = np.bincount(self.seg_of_x, x, minlength=self.gap.size)
        unmet = float(np.sum(self.gap - np.minimum(credit, self.gap)))
        note = "; ".join(log.warnings)
        return _Point(optimum * USD_PER_UNIT, unmet, note)


def _per_usd_m(volume_usd_m: float) -> float:
    """The coefficient step worth US$1m on a volume (US$m), or NaN on none."""
    return STEP_USD / USD_PER_UNIT / volume_usd_m if volume_usd_m > ACTIVE_USD_M else math.nan


def marginal_block(
    case: Case,
    scenarios: ScenarioSet,
    method: str,
    solver: str,
    tol: float,
    time_limit_s: float | None,
    start: WarmStart | None,
    groups: tuple[tuple[str, tuple[str, ...]], ...],
) -> BlockResult:
    """Build and solve the base once (from ``start``), then relax and tighten each group from
    the base's state."""
    began = time.perf_counter()
    with one_blas_thread():  # the same digits in this process, a loky or a dask worker
        res = _Resolver(case, scenarios, method, solver, tol, time_limit_s, start)
        rates, relaxed, tightened = [], [], []
        for family, subjects in groups:
            rate = res.step_rates(family, subjects)
            rates.append(rate)
            relaxed.append(res.solve(family, subjects, rate, +1.0))
            tightened.append(res.solve(family, subjects, rate, -1.0))
    return BlockResult(
        res.base, tuple(rates), tuple(relaxed), tuple(tightened), time.perf_counter() - began
    )
