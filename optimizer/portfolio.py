"""The plain minimum-CVaR portfolio, solved by the allocation optimizer's cutting-plane engine.

This is the textbook problem the popular Python portfolio libraries solve with one LP of a
variable and a row per scenario (Rockafellar–Uryasev): weights summing to 1 under caps and a
floor on expected return, minimising the CVaR of the portfolio loss. It exists so the engine can
be measured against them on their own ground (``benchmarks/bench_peers.py``) and checked against
an independent formulation; the allocation problem itself never calls it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from models.risk_measures import conditional_value_at_risk, value_at_risk
from optimizer.cutting_plane import MASTER_OPTIONS, CutMaster, make_measure, solve_with_cuts
from optimizer.errors import SolverFailure
from optimizer.exposures import ExposureColumns, FundClaims
from optimizer.tail_oracle import TailOracle

METHODS = ("cutting_plane", "lp")


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
    method : {"cutting_plane", "lp"}
    iterations : int
        Master solves (1 for ``"lp"``).
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
    seconds: float


def min_cvar_portfolio(
    returns: np.ndarray,
    alpha: float = 0.95,
    *,
    probabilities: np.ndarray | None = None,
    max_weight: float = 1.0,
    min_return: float | None = None,
    method: str = "cutting_plane",
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
    method : {"cutting_plane", "lp"}
        The engine, or the one-LP Rockafellar–Uryasev reference in cvxpy/HiGHS.

    Returns
    -------
    PortfolioSolution

    Raises
    ------
    ValueError
        Bad arguments, or no portfolio meets the caps and the return floor.
    """
    r = np.asarray(returns)
    if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1:
        raise ValueError(f"returns must be a (n_scenarios, n_assets) array, got shape {r.shape}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < max_weight <= 1.0 or max_weight * r.shape[1] < 1.0 - 1e-12:
        raise ValueError(
            f"max_weight must be in (0, 1] and at least 1/n_assets = {1 / r.shape[1]:.4g}, "
            f"got {max_weight}"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_scen, n = r.shape
    p = np.full(n_scen, 1.0 / n_scen) if probabilities is None else np.asarray(probabilities)
    if p.shape != (n_scen,) or (p < 0).any() or abs(p.sum() - 1.0) > 1e-9:
        raise ValueError("probabilities must be n_scenarios non-negative weights summing to 1")
    mu = p @ np.asarray(r, dtype=np.float64)
    losses = np.negative(r)

    start = time.perf_counter()
    w = cp.Variable(n, nonneg=True, name="weights")
    constraints = [cp.sum(w) == 1, w <= max_weight]
    if min_return is not None:
        constraints.append(mu @ w >= min_return)
    if method == "lp":
        t = cp.Variable(name="var")
        v = cp.Variable(n_scen, nonneg=True, name="excess")
        constraints.append(np.asarray(losses, dtype=np.float64) @ w - t <= v)
        problem = cp.Problem(cp.Minimize(t + (p / (1.0 - alpha)) @ v), constraints)
        problem.solve(solver="HIGHS", canon_backend="SCIPY")
        _check(problem.status, min_return)
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
            _check(status, min_return)
            return seconds

        iterations = solve_with_cuts(master, oracle, w, solve_master).iterations
    seconds = time.perf_counter() - start
    weights = np.clip(np.asarray(w.value, dtype=float), 0.0, None)
    portfolio_loss = np.asarray(losses, dtype=np.float64) @ weights
    return PortfolioSolution(
        weights=weights,
        cvar=float(conditional_value_at_risk(portfolio_loss, alpha, p).value),
        value_at_risk=float(value_at_risk(portfolio_loss, alpha, p).value),
        expected_return=float(mu @ weights),
        objective=float(problem.value),
        method=method,
        iterations=iterations,
        seconds=seconds,
    )


def _check(status: str, min_return: float | None) -> None:
    if status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise ValueError(
            f"no portfolio meets the caps and the return floor {min_return}; lower min_return "
            "or raise max_weight"
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
    )
