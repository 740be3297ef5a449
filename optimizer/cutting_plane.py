"""Cutting-plane CVaR (Künzi-Bay & Mayer 2006), several CVaR constraints at once.

Each CVaR measure k (a funder's losses, a fund's claims) is written ``t_k + η_k / (1 − α_k)``
with ``η_k >= 0`` standing for ``Σ_ω π_ω (L_k(ω) − t_k)+``. The master LP holds, per measure, a
bank of aggregated cuts ``η_k >= g·e − P·t_k`` stored in cvxpy parameters, so the master is
compiled once (DPP) and each iteration only changes parameter values. After each master solve
one pass over the loss matrix (:class:`TailOracle`) finds, for every measure, the scenarios in
its tail and the most violated cut. The loop stops when every measure's true CVaR at the master's
point is within ``tolerance`` of the master's estimate: the master's optimum is then the optimum
of the one-LP formulation (its constraints are implied by the full model and vice versa at the
limit), and its duals are the full model's duals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from optimizer.errors import SolverFailure
from optimizer.tail_oracle import TailOracle

DEFAULT_MAX_CUTS = 96
"""Cut rows kept per measure; when full, the slackest cut is replaced."""
MAX_ITERATIONS = 400
TOLERANCE_REL = 1e-6
"""CVaR overestimate accepted at convergence, relative to the CVaR (at least US$1)."""
TOLERANCE_ABS_USD_M = 1e-6


@dataclass(eq=False)
class CutMeasure:
    """One CVaR measure of the master problem and its bank of cut rows.

    ``coef`` (max_cuts, n_cols) and ``tail`` (max_cuts,) are cvxpy parameters; unused rows are
    zero, i.e. the harmless cut ``η >= 0``.
    """

    name: str
    cols: np.ndarray
    alpha: float
    t: cp.Variable
    eta: cp.Variable
    coef: cp.Parameter
    tail: cp.Parameter
    filled: int = 0

    @property
    def estimate(self) -> cp.Expression:
        """The master's CVaR: ``t + η / (1 − α)``."""
        return self.t + self.eta / (1.0 - self.alpha)

    def constraints(self, expo: cp.Variable) -> list[cp.Constraint]:
        return [self.eta >= self.coef @ expo[self.cols] - self.tail * self.t]

    def add(self, coef: np.ndarray, tail_probability: float, expo: np.ndarray) -> None:
        """Store a cut, replacing the slackest one when the bank is full."""
        g, p = self.coef.value, self.tail.value
        if self.filled < g.shape[0]:
            row = self.filled
            self.filled += 1
        else:
            t = float(self.t.value or 0.0)
            slack = float(self.eta.value or 0.0) - (g @ expo[self.cols] - p * t)
            row = int(np.argmax(slack))
        g = g.copy()
        p = p.copy()
        g[row], p[row] = coef, tail_probability
        self.coef.value, self.tail.value = g, p


def make_measure(
    name: str, cols: np.ndarray, alpha: float, max_cuts: int = DEFAULT_MAX_CUTS
) -> CutMeasure:
    """A measure with an empty bank of cuts (t >= 0: losses and claims are never negative)."""
    return CutMeasure(
        name=name,
        cols=np.asarray(cols, dtype=np.int64),
        alpha=float(alpha),
        t=cp.Variable(nonneg=True, name=f"var_{name}"),
        eta=cp.Variable(nonneg=True, name=f"tail_{name}"),
        coef=cp.Parameter(
            (max_cuts, len(cols)), name=f"cuts_{name}", value=np.zeros((max_cuts, len(cols)))
        ),
        tail=cp.Parameter(max_cuts, nonneg=True, name=f"tailp_{name}", value=np.zeros(max_cuts)),
    )


@dataclass(frozen=True)
class CutReport:
    """How a cutting-plane stage ended."""

    iterations: int
    max_violation_usd_m: float
    oracle_seconds: float


def solve_with_cuts(
    measures: list[CutMeasure],
    expo: cp.Variable,
    oracle: TailOracle,
    solve_master: Callable[[], None],
    tolerance: float = TOLERANCE_REL,
    max_iterations: int = MAX_ITERATIONS,
    stage: int = 1,
) -> CutReport:
    """Alternate master solves and cut generation until every CVaR estimate is exact.

    Parameters
    ----------
    measures : list of CutMeasure
        Their cut constraints must already be in the master problem.
    expo : cvxpy Variable
        The net exposure columns the oracle's measures refer to.
    oracle : TailOracle
        Built on the same measures (same order, same columns).
    solve_master : callable
        Solves the master in place (raising a typed error if it cannot).

    Returns
    -------
    CutReport
    """
    oracle_s = 0.0
    violation = np.inf
    for iteration in range(1, max_iterations + 1):
        solve_master()
        point = np.asarray(expo.value, dtype=float)
        thresholds = np.array([float(m.t.value) for m in measures])
        start = time.perf_counter()
        cuts, _ = oracle.cuts(point, thresholds)
        oracle_s += time.perf_counter() - start
        gaps = np.array(
            [
                (c.excess - float(m.eta.value)) / (1.0 - m.alpha)
                for c, m in zip(cuts, measures, strict=True)
            ]
        )
        # HiGHS solves to ~1e-7 relative: asking more makes the loop chase solver noise
        allowed = np.array(
            [tolerance * abs(float(m.estimate.value)) + TOLERANCE_ABS_USD_M for m in measures]
        )
        violation = float(gaps.max(initial=0.0))
        if np.all(gaps <= allowed):
            return CutReport(iteration, violation, oracle_s)
        for cut, m, gap, ok in zip(cuts, measures, gaps, allowed, strict=True):
            if gap > ok:
                m.add(cut.coef, cut.tail_probability, point)
    raise SolverFailure(
        "cutting_plane",
        "not_converged",
        stage,
        f"no convergence in {max_iterations} iterations (largest CVaR overestimate "
        f"US${violation:.4f}m); use method='lp' for this case",
    )
