"""The plain minimum-CVaR portfolio: weights summing to 1 under caps and a return floor.

This is the textbook problem the popular Python portfolio libraries solve with one LP of a
variable and a row per scenario (Rockafellar–Uryasev). It exists so the engine can be measured
against them on their own ground (``benchmarks/bench_peers.py``) and checked against independent
formulations; the allocation problem itself never calls it.

The dual (Ogryczak & Śliwiński 2011). With losses ``ℓ_s = −r_s`` (a row of the return matrix),
probabilities ``p_s``, ``f = 1/(1 − α)``, cap ``c`` and floor ``ρ``, the Rockafellar–Uryasev LP

    min_{w, t, u}  t + f Σ_s p_s u_s
    s.t.  u_s >= ℓ_s·w − t   (λ_s >= 0),      u_s >= 0,
          Σ_j w_j = 1        (v free),        μ·w >= ρ   (γ >= 0),
          w_j <= c           (δ_j >= 0),      w_j >= 0,

has the Lagrangian ``t(1 − Σλ) + Σ_s u_s (f p_s − λ_s) + Σ_j w_j (Σ_s λ_s ℓ_sj − v − γ μ_j + δ_j)
+ v + γρ − cΣδ``. It is bounded below over ``t`` free, ``u >= 0``, ``w >= 0`` exactly when

    max  v + ρ γ − c Σ_j δ_j
    s.t. Σ_s ℓ_sj λ_s − v − μ_j γ + δ_j >= 0   for each asset j     (dual value: w_j)
         Σ_s λ_s = 1                                                 (dual value: −t, the VaR)
         0 <= λ_s <= f p_s,  γ >= 0,  δ >= 0,  v free.

One row per asset and one bounded column per scenario: ``λ`` is the worst-case reweighting of
the scenarios (density at most ``f``), and strong duality makes both optima the minimum CVaR. The
weights are the duals of the asset rows (HiGHS minimises the negated objective, so they come out
non-negative); a scenario's reduced cost is ``t − ℓ_s·w``, so ``λ_s`` sits at ``f p_s`` in the
tail, at 0 below the VaR and in between only at the VaR itself.

Methods. ``"dual"`` passes that LP whole to HiGHS. ``"column_generation"`` exploits that only
the scenarios near the VaR need to be columns. It solves the dual on a strided sample, then on
samples ``LEVEL_GROWTH`` times larger up to all scenarios. At each new level, ranked by loss at
the previous optimum, the worst ``FIXED_MASS`` tail masses are held at their bound ``λ_s = f p_s``
(moved into the row bounds: no column), the next ones up to ``COLUMN_MASS`` become columns, and
the previous optimal basis is the start (dual feasible: its row duals price every held scenario
correctly). After each solve, a scenario outside whose loss exceeds the VaR (negative reduced
cost) becomes a column, and a bound-held one whose loss fell below it is freed into a column,
until neither is left. Then every scenario's reduced cost has the right sign, so the restricted
optimum is the full dual's: exact, not sampled. ``"cutting_plane"`` is the allocation
optimizer's Kelley engine; ``"lp"`` the primal one-LP reference in cvxpy.

The dual methods live in :mod:`optimizer.formulation.portfolio_dual`; this module is the entry point
(validation, the choice of method, the recomputed risk figures), the primal methods, and the
public face of the dual's settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from models.errors import OptionError
from models.risk_measures import conditional_value_at_risk, value_at_risk
from optimizer.errors import SolverFailure
from optimizer.formulation.claims import FundClaims
from optimizer.formulation.cut_loop import solve_with_cuts
from optimizer.formulation.cut_master import CutMaster
from optimizer.formulation.cut_measures import make_measure
from optimizer.formulation.cut_pool import MASTER_OPTIONS
from optimizer.formulation.exposures import ExposureColumns
from optimizer.formulation.portfolio_dual import (
    COLUMN_MASS,
    DUAL_OPTIONS,
    FIXED_MASS,
    LEVEL_GROWTH,
    PRICING_TOL,
    SAMPLE_TAIL_PER_ASSET,
    _generate_columns,
    _NoPortfolio,
    _sample_levels,
    _Scaled,
    _solve_dual,
)
from optimizer.formulation.tail_oracle import TailOracle

__all__ = [
    "COLUMN_MASS",
    "DUAL_OPTIONS",
    "FIXED_MASS",
    "LEVEL_GROWTH",
    "MAX_ITERATIONS",
    "METHODS",
    "PRICING_TOL",
    "SAMPLE_TAIL_PER_ASSET",
    "PortfolioSolution",
    "min_cvar_portfolio",
]

METHODS = ("auto", "column_generation", "dual", "cutting_plane", "lp")
MAX_ITERATIONS = 5_000
"""Kelley's method needs more iterations with more assets; each is one pass over the returns."""


@dataclass(frozen=True)
class PortfolioSolution:
    """A minimum-CVaR portfolio.

    Attributes
    ----------
    weights : ndarray of shape (n_assets,)
    cvar : float
        CVaR_α of the portfolio loss, recomputed exactly from the scenarios at ``weights``.
    value_at_risk : float
    expected_return : float
    objective : float
        The solver's optimum (equals ``cvar`` up to tolerance).
    method : {"column_generation", "dual", "cutting_plane", "lp"}
        The method that ran (``"auto"`` resolved).
    iterations : int
        Master solves for ``"cutting_plane"``; simplex pivots, summed over solves, for
        ``"dual"`` and ``"column_generation"``; 1 for ``"lp"``.
    scenario_columns : int
        Scenarios the final LP held as columns: all for ``"dual"`` and ``"lp"``, the generated
        ones for ``"column_generation"`` (without those held at their bound), 0 for
        ``"cutting_plane"`` (its master holds none).
    seconds : float
        Wall time of the solve, model building included.
    """

    weights: np.ndarray
    cvar: float
    value_at_risk: float
    expected_return: float
    objective: float
    method: str
    iterations: int
    scenario_columns: int
    seconds: float


def min_cvar_portfolio(
    returns: np.ndarray,
    alpha: float = 0.95,
    *,
    probabilities: np.ndarray | None = None,
    max_weight: float = 1.0,
    min_return: float | None = None,
    method: str = "auto",
) -> PortfolioSolution:
    """Weights ``w >= 0``, ``Σ w = 1``, ``w <= max_weight``, ``μ·w >= min_return`` minimising
    ``CVaR_α(−R w)``.

    Parameters
    ----------
    returns : ndarray of shape (n_scenarios, n_assets)
        Scenario returns (a loss is a negative return). float32 is used as given.
    alpha : float in (0, 1)
    probabilities : ndarray of shape (n_scenarios,), optional
        Scenario weights summing to 1; default equal.
    max_weight : float in (0, 1]
    min_return : float, optional
        Floor on the expected return ``μ·w`` (μ the probability-weighted mean return).
    method : {"auto", "column_generation", "dual", "cutting_plane", "lp"}
        ``"auto"`` (default): ``"column_generation"``, the fastest measured, or ``"dual"`` when
        there are too few scenarios to sample (fewer than about ``2.2 x SAMPLE_TAIL_PER_ASSET
        (n_assets + 1) / (1 − α)``), where both are the same LP. ``"dual"``: the
        Ogryczak–Śliwiński dual LP, whole, in HiGHS. ``"column_generation"``: the same dual with
        its scenario columns generated (exact, see the module notes). ``"cutting_plane"``: the
        allocation optimizer's Kelley engine. ``"lp"``: the one-LP Rockafellar–Uryasev primal
        in cvxpy/HiGHS.

    Returns
    -------
    PortfolioSolution

    Raises
    ------
    ValueError
        Bad arguments, or no portfolio meets the caps and the return floor.
    SolverFailure
        HiGHS returned no usable answer.
    """
    r = np.asarray(returns)
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1:
        raise OptionError(f"returns must be a (n_scenarios, n_assets) array, got shape {r.shape}")
    if not np.issubdtype(r.dtype, np.floating) or not np.isfinite(r).all():
        raise OptionError("returns must be finite floats (no NaN or inf)")
    if not 0.0 < alpha < 1.0:
        raise OptionError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < max_weight <= 1.0 or max_weight * r.shape[1] < 1.0 - 1e-12:
        raise OptionError(
            f"max_weight must be in (0, 1] and at least 1/n_assets = {1 / r.shape[1]:.4g}, "
            f"got {max_weight}"
        )
    if min_return is not None and not np.isfinite(min_return):
        raise OptionError(f"min_return must be a finite number or None, got {min_return}")
    if method not in METHODS:
        raise OptionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_scen = r.shape[0]
    p = np.full(n_scen, 1.0 / n_scen) if probabilities is None else np.asarray(probabilities)
    if p.shape != (n_scen,) or not np.isfinite(p).all() or (p < 0).any():
        raise OptionError("probabilities must be n_scenarios finite non-negative weights")
    if abs(p.sum() - 1.0) > 1e-9:
        raise OptionError(f"probabilities must sum to 1, got {p.sum():.12g}")
    if method == "auto":
        # measured (5-50 assets, 10^3-10^5 scenarios): column generation 2-40x faster than the
        # whole dual from 3,000 scenarios, within 0.5 ms of it below; the cutting plane and the
        # primal LP slower than both everywhere. With nothing to sample both are the same LP.
        sampled = _sample_levels(int(np.count_nonzero(p)), r.shape[1], alpha) > 0
        method = "column_generation" if sampled else "dual"
    mu = p @ np.asarray(r, dtype=np.float64)
    # returns are ~1e-2: in those units HiGHS's 1e-7 tolerances would be 1e-4 of the CVaR, so
    # the problem is solved on losses scaled to a mean absolute value of 1
    # (a strided sample of rows sets it: any unit of that size will do)
    unit = float(np.abs(r[:: max(1, n_scen // 10_000)]).mean()) or 1.0
    floor = None if min_return is None else min_return / unit

    solver = {"dual": _solve_dual, "column_generation": _generate_columns}.get(method, _solve_cvxpy)
    start = time.perf_counter()
    try:
        weights, objective, iterations, columns = solver(
            _Scaled(r, unit), p, mu / unit, alpha, max_weight, floor, method
        )
    except _NoPortfolio:
        raise OptionError(
            f"no portfolio meets max_weight={max_weight} and min_return={min_return}: lower "
            "min_return or raise max_weight"
        ) from None
    seconds = time.perf_counter() - start
    weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    portfolio_loss = -(np.asarray(r, dtype=np.float64) @ weights)
    return PortfolioSolution(
        weights=weights,
        cvar=float(conditional_value_at_risk(portfolio_loss, alpha, p).value),
        value_at_risk=float(value_at_risk(portfolio_loss, alpha, p).value),
        expected_return=float(mu @ weights),
        objective=float(objective) * unit,
        method=method,
        iterations=iterations,
        scenario_columns=columns,
        seconds=seconds,
    )


def _solve_cvxpy(scaled, p, mu, alpha, max_weight, floor, method):
    losses = scaled.matrix()
    n_scen, n = losses.shape
    w = cp.Variable(n, nonneg=True, name="weights")
    constraints = [cp.sum(w) == 1, w <= max_weight]
    if floor is not None:
        constraints.append(mu @ w >= floor)
    if method == "lp":
        t = cp.Variable(name="var")
        v = cp.Variable(n_scen, nonneg=True, name="excess")
        constraints.append(np.asarray(losses, dtype=np.float64) @ w - t <= v)
        problem = cp.Problem(cp.Minimize(t + (p / (1.0 - alpha)) @ v), constraints)
        problem.solve(solver="HIGHS", canon_backend="SCIPY")
        _check(problem.status)
        iterations = 1
    else:
        measure = make_measure("portfolio", np.arange(n), alpha, losses_nonneg=False)
        # no weight can lose less than the smallest loss of any asset: bounds the first master
        constraints.append(measure.t >= float(losses.min()))
        problem = cp.Problem(cp.Minimize(measure.estimate), constraints)
        master = CutMaster(problem, [measure], w)
        master.sync(MASTER_OPTIONS)
        oracle = TailOracle(losses, p, _plain_columns(n), [measure.cols])

        def solve_master() -> float:
            status, seconds = master.solve()
            _check(status)
            return seconds

        iterations = solve_with_cuts(
            master, oracle, w, solve_master, max_iterations=MAX_ITERATIONS, absolute_tolerance=0.0
        ).iterations
    columns = n_scen if method == "lp" else 0
    return np.asarray(w.value, dtype=float), float(problem.value), iterations, columns


def _check(status: str) -> None:
    if status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise OptionError(
            "no portfolio meets the caps and the return floor; lower min_return or raise max_weight"
        )
    raise SolverFailure("HIGHS", status, 1, "no usable answer for the portfolio problem")


def _plain_columns(n: int) -> ExposureColumns:
    """Each asset its own column of plain loss (no fund shapes)."""
    return ExposureColumns(
        owner=np.zeros(n, dtype=np.int64),
        is_fund=np.zeros(n, dtype=bool),
        cell=np.arange(n),
        shape=np.zeros(n, dtype=np.int64),
        shapes=(FundClaims("loss", np.ones(n), None, None),),
        from_x=sp.identity(n, format="csr"),
        from_z=sp.csr_matrix((n, 0)),
        from_c=sp.csr_matrix((n, 0)),
        is_capital=np.zeros(n, dtype=bool),
        capital_source=np.full(n, -1, dtype=np.int64),
    )
