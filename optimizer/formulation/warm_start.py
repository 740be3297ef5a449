"""Where a cutting-plane solve can start: the cuts of an earlier solve, or its optimum.

A run solves one case many times over: the margined re-solves of the confidence option, the
sensitivity points, the replications. Each used to begin from no cut, so its master wandered
far from the answer for the first dozen passes over the scenarios. A :class:`WarmStart`,
taken from a solved problem after stage 1 (:func:`take`), lets the next solve begin near it
(:func:`apply`):

- on the **same scenarios** (the same :attr:`models.ScenarioSet.fingerprint`), from the cuts
  binding at the earlier optimum. A cut bounds the tail function of the exposures of one loss
  matrix, whatever the limits, amounts or objective, so it stays valid for the changed case
  (the frontier's points start so, see :mod:`optimizer.analysis.frontier_sweep`);
- on **other scenarios** of the same cells (a replication, a risk input's sensitivity point),
  from the cuts of *these* scenarios at the earlier optimum: one pass over the new matrix,
  valid because they are made on it. The earlier cuts are not: they bound another matrix.

Either way the start only changes where the loop begins; it stops on the same test, so the
answer is an optimum of the same problem to the same tolerance. The start is a function of the
earlier solve alone, so a solve started from it gives the same numbers on any worker.

Stage 2 (the gap held, loss and cost minimised) moves the exposures again, and a start that
carried stage 1's cuts alone sent the next stage 2 back over the scenarios a dozen times
(measured on the shipped case, 100,000 importance-sampled scenarios: 13 passes against 6 for a
cold solve). :func:`finish` adds the cuts binding at the stage-2 optimum to the start's pool,
where a solve takes them back without a pass over the scenarios when its point violates them
(on other scenarios: cuts made at the stage-2 optimum, one more pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.formulation.cut_pool import CutPool

__all__ = ["WarmStart", "apply", "finish", "take"]


@dataclass(frozen=True, eq=False)
class WarmStart:
    """Where a solved cutting-plane problem leaves another solve to start: its cuts and optima.

    Attributes
    ----------
    pool : CutPool
        The cuts binding at the stage-1 optimum as rows and, once :func:`finish` saw stage 2,
        those binding at the stage-2 optimum in its pool (no basis: another build of the
        problem numbers its rows otherwise), valid on the scenario set ``fingerprint`` names.
    fingerprint : str
        :attr:`models.ScenarioSet.fingerprint` of the scenarios the cuts were made on.
    point : ndarray of shape (n_exposures,)
        The net exposures at the stage-1 optimum (US$m), where cuts on other scenarios are made.
    point2 : ndarray of shape (n_exposures,) or None
        The net exposures at the stage-2 optimum (US$m), where the pool's cuts on other
        scenarios are made; None before :func:`finish`.
    """

    pool: CutPool
    fingerprint: str
    point: np.ndarray
    point2: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.point.flags.writeable = False
        if self.point2 is not None:
            self.point2.flags.writeable = False


def take(prob) -> WarmStart | None:
    """The warm start of a problem whose stage 1 was just solved (None: not a cut problem).

    Parameters
    ----------
    prob : AllocationProblem
        Built with ``cvar_method="cuts"``, its stage 1 solved (the master holds its cuts).
    """
    master = prob.cut_master
    if master is None or master.highs is None or prob.expo is None or prob.expo.value is None:
        return None
    rows = master.snapshot().rows
    point = np.array(prob.expo.value, dtype=float).reshape(-1)
    return WarmStart(CutPool(rows, (), None), prob.scenarios.fingerprint, point)


def finish(start: WarmStart | None, prob) -> WarmStart | None:
    """``start`` (taken after stage 1 of ``prob``) with the cuts binding at the stage-2
    optimum just solved in its pool, and that optimum as ``point2``.

    Parameters
    ----------
    start : WarmStart or None
        What :func:`take` gave after stage 1 of the same problem.
    prob : AllocationProblem
        The same problem, its stage 2 solved.
    """
    master = prob.cut_master
    if start is None or master is None or master.highs is None or prob.expo.value is None:
        return start
    seen = {id(row) for row in start.pool.rows}
    extra = tuple(row for row in master.snapshot().rows if id(row) not in seen)
    point2 = np.array(prob.expo.value, dtype=float).reshape(-1)
    pool = CutPool(start.pool.rows, start.pool.pool + extra, None)
    return WarmStart(pool, start.fingerprint, start.point, point2)


def apply(prob, start: WarmStart | None) -> str:
    """Load ``start`` into a freshly built problem's master before its first solve.

    Returns
    -------
    str
        ``"cuts"`` (the same scenarios: the earlier cuts), ``"point"`` (other scenarios: cuts
        made at the earlier optimum) or ``""`` (nothing applied: no start, not a cut problem, or
        exposures of another shape).
    """
    master = prob.cut_master
    if start is None or master is None or prob.expo is None:
        return ""
    if start.point.shape != (prob.expo.size,):
        return ""
    if start.fingerprint == prob.scenarios.fingerprint:
        master.start(start.pool)
        return "cuts"
    later = () if start.point2 is None else _cuts_at(prob, start.point2)
    master.start(CutPool(_cuts_at(prob, start.point), later, None))
    return "point"


def _cuts_at(prob, point: np.ndarray) -> tuple[tuple[int, int, np.ndarray, float], ...]:
    """Every measure's tangent cuts (one per scenario block) at ``point`` on the problem's own
    scenarios, as master rows ``(measure, block, coefficients, tail probability)``."""
    master, oracle = prob.cut_master, prob.oracle
    factor = np.array([m.factor() for m in master.measures])
    losses = oracle.scenario_losses(point)
    var, _ = oracle.var_and_excess(losses, 1.0 - 1.0 / factor)
    measures = np.arange(len(master.measures))
    cuts, _ = oracle.cuts(point, var, measures, losses, master.groups)
    return tuple(master.rows_of(cuts))
