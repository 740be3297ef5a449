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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.risk_measures import conditional_value_at_risk, value_at_risk
from optimizer.claims import FundClaims
from optimizer.cut_loop import solve_with_cuts
from optimizer.cut_master import MASTER_OPTIONS, CutMaster
from optimizer.cut_measures import make_measure
from optimizer.errors import SolverFailure
from optimizer.exposures import ExposureColumns
from optimizer.tail_oracle import BLAS_THREADS, TailOracle

METHODS = ("auto", "column_generation", "dual", "cutting_plane", "lp")
MAX_ITERATIONS = 5_000
"""Kelley's method needs more iterations with more assets; each is one pass over the returns."""
SAMPLE_TAIL_PER_ASSET = 2.0
"""The first sample holds about this many tail scenarios per asset (n + 1 rows to price)."""
LEVEL_GROWTH = 4
"""Each sample holds every 4th scenario of the next (the last level is all of them): at 10^5 x 50
growth 4 took 0.17-0.25 s where 5 took 0.28-0.33 s and 3 took 0.20-0.28 s."""
COLUMN_MASS = 1.5
"""Scenarios kept at a new level, in tail masses ``1 − α`` ranked by loss at the previous level's
optimum: 1.5 left a few hundred to generate at 10^5 x 50; 1.3 and 2 were 5-10% slower."""
FIXED_MASS = 0.7
"""Scenarios ranked deepest at the previous level's optimum, in tail masses, held at their bound
``λ_s = f p_s`` rather than as columns (each pivot prices fewer columns); one that falls below
the VaR is freed into a column."""
PRICING_TOL = 1e-7
"""A scenario enters when ``ℓ_s·w − t`` exceeds this (HiGHS's dual feasibility tolerance, on
losses scaled to a mean absolute value of 1)."""
DUAL_OPTIONS = {"output_flag": False, "presolve": "off"}
"""Presolve found nothing to remove in the dense dual and took up to half the time of a warm
start (measured at 10^5 x 50)."""


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
        raise ValueError(f"returns must be a (n_scenarios, n_assets) array, got shape {r.shape}")
    if not np.issubdtype(r.dtype, np.floating) or not np.isfinite(r).all():
        raise ValueError("returns must be finite floats (no NaN or inf)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < max_weight <= 1.0 or max_weight * r.shape[1] < 1.0 - 1e-12:
        raise ValueError(
            f"max_weight must be in (0, 1] and at least 1/n_assets = {1 / r.shape[1]:.4g}, "
            f"got {max_weight}"
        )
    if min_return is not None and not np.isfinite(min_return):
        raise ValueError(f"min_return must be a finite number or None, got {min_return}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_scen = r.shape[0]
    p = np.full(n_scen, 1.0 / n_scen) if probabilities is None else np.asarray(probabilities)
    if p.shape != (n_scen,) or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be n_scenarios finite non-negative weights")
    if abs(p.sum() - 1.0) > 1e-9:
        raise ValueError(f"probabilities must sum to 1, got {p.sum():.12g}")
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
        raise ValueError(
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


@dataclass(frozen=True)
class _Scaled:
    """The returns as losses in units of ``unit`` (a mean absolute return), without copying
    the matrix: only the scenarios a dual model holds are ever scaled."""

    returns: np.ndarray
    unit: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.returns.shape

    def rows(self, scenarios: np.ndarray) -> np.ndarray:
        """Losses of ``scenarios``, shape (k, n_assets), float64."""
        return self.returns[scenarios] * (-1.0 / self.unit)

    def at(self, weights: np.ndarray) -> np.ndarray:
        """Portfolio loss in every scenario, shape (n_scenarios,): one pass in the returns'
        dtype (float32 stays float32)."""
        r = self.returns
        return (r @ weights.astype(r.dtype)) * (-1.0 / self.unit)

    def matrix(self) -> np.ndarray:
        """All losses, shape (n_scenarios, n_assets), in the returns' dtype (a copy)."""
        r = self.returns
        return np.negative(r) / np.asarray(self.unit, dtype=r.dtype)


class _NoPortfolio(Exception):
    """No weights meet the caps and the floor (turned into a ValueError naming them)."""


class _DualLP:
    """The dual LP over a subset of the scenarios, in a persistent HiGHS model.

    Columns: ``v``, then ``γ`` (with a floor), then ``δ`` (with caps below 1), then one ``λ_s``
    per held scenario; rows: one per asset, then ``Σ λ = 1``. ``bound_p`` gives the column
    bounds ``f p_s`` (renormalised over a sample).
    """

    def __init__(
        self, losses: _Scaled, bound_p, mu, alpha, max_weight, floor, scenarios, at_bound=None
    ):
        import highspy

        self._hs = highspy
        n = losses.shape[1]
        self.losses, self.n, self.bound_p = losses, n, bound_p
        self.tail_factor = 1.0 / (1.0 - alpha)
        self.scenarios = np.zeros(0, dtype=np.int64)
        self.at_bound = np.zeros(0, dtype=np.int64) if at_bound is None else at_bound
        self.iterations = 0
        self.highs = highspy.Highs()
        for name, setting in DUAL_OPTIONS.items():
            self.highs.setOptionValue(name, setting)
        # addRows/addCols take the numpy CSC arrays as they are; passModel's HighsLp fields
        # convert through Python lists, 4-7x slower at 10^4 columns
        none = np.zeros(0, dtype=np.int32)
        lower, upper = self._row_bounds()
        self.highs.addRows(n + 1, lower, upper, 0, none, none, np.zeros(0))
        rows = np.arange(n, dtype=np.int32)
        self._add_fixed(-1.0, -np.inf, rows, -np.ones(n))  # v
        if floor is not None:
            self._add_fixed(-floor, 0.0, rows, -np.asarray(mu, dtype=float))  # γ
        if max_weight < 1.0:
            for j in rows:  # δ_j
                self._add_fixed(max_weight, 0.0, rows[j : j + 1], np.ones(1))
        self.n_fixed = int(self.highs.getNumCol())
        self.add(np.asarray(scenarios, dtype=np.int64))

    def _row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Scenarios held at ``λ_s = f p_s`` move their share of each row to its bounds."""
        bound = self.tail_factor * self.bound_p[self.at_bound]
        shift = bound @ self.losses.rows(self.at_bound)
        mass = 1.0 - bound.sum()
        return np.r_[-shift, mass], np.r_[np.full(self.n, np.inf), mass]

    def free(self, scenarios: np.ndarray) -> None:
        """Turn scenarios held at their bound into columns (at 0, so the basis stays dual
        feasible: their reduced cost ``t − ℓ_s·w`` is positive when they are freed)."""
        self.at_bound = np.setdiff1d(self.at_bound, scenarios)
        lower, upper = self._row_bounds()
        rows = np.arange(self.n + 1, dtype=np.int32)
        self.highs.changeRowsBounds(rows.size, rows, lower, upper)
        self.add(scenarios)

    def _add_fixed(self, cost: float, lower: float, index: np.ndarray, value: np.ndarray) -> None:
        self.highs.addCol(cost, lower, np.inf, index.size, index, value)

    def add(self, scenarios: np.ndarray) -> None:
        """λ columns for ``scenarios``: each holds the scenario's n losses and a 1."""
        k, n = len(scenarios), self.n
        block = np.empty((k, n + 1))
        block[:, :n] = self.losses.rows(scenarios)
        block[:, n] = 1.0
        index = np.tile(np.arange(n + 1, dtype=np.int32), k)
        starts = (n + 1) * np.arange(k, dtype=np.int32)
        bound = self.tail_factor * self.bound_p[scenarios]
        self.highs.addCols(
            k, np.zeros(k), np.zeros(k), bound, block.size, starts, index, block.ravel()
        )
        self.scenarios = np.concatenate([self.scenarios, scenarios])

    def solve(self) -> tuple[np.ndarray, float, float]:
        """Run HiGHS; returns (weights, VaR t, CVaR), the last two in scaled loss units."""
        self.highs.run()
        self.iterations += int(self.highs.getInfo().simplex_iteration_count)
        name = self.highs.getModelStatus().name
        if name in ("kUnbounded", "kUnboundedOrInfeasible"):
            # the dual is always feasible (λ = p, v low enough): unbounded means no w exists
            raise _NoPortfolio
        if name != "kOptimal":
            raise SolverFailure("HIGHS", name, 1, "no usable answer for the portfolio dual LP")
        y = np.asarray(self.highs.getSolution().row_dual)
        objective = -float(self.highs.getInfo().objective_function_value)
        return y[: self.n], -float(y[self.n]), objective

    def basic_scenarios(self) -> np.ndarray:
        status = self.highs.getBasis().col_status[self.n_fixed :]
        basic = self._hs.HighsBasisStatus.kBasic
        return self.scenarios[np.array([s == basic for s in status], dtype=bool)]

    def warm_start(self, previous: _DualLP, scenario_loss: np.ndarray, var: float) -> None:
        """Start from ``previous``'s optimal basis: the same basic columns, every other scenario
        at its bound on the side of ``var`` its loss falls. The rows' duals are then those of
        ``previous``, so every reduced cost has the right sign (a dual-feasible start)."""
        old = previous.highs.getBasis()
        status = self._hs.HighsBasisStatus
        basic = set(previous.basic_scenarios().tolist())
        cols = list(old.col_status[: self.n_fixed])
        for s in self.scenarios.tolist():
            if s in basic:
                cols.append(status.kBasic)
            else:
                cols.append(status.kUpper if scenario_loss[s] > var else status.kLower)
        basis = self._hs.HighsBasis()
        basis.col_status, basis.row_status = cols, list(old.row_status)
        self.highs.setBasis(basis)  # were it refused (never seen), HiGHS starts cold: same answer


def _solve_dual(losses, p, mu, alpha, max_weight, floor, method):
    model = _DualLP(losses, p, mu, alpha, max_weight, floor, np.flatnonzero(p > 0))
    weights, _, objective = model.solve()
    return weights, objective, model.iterations, model.scenarios.size


def _top_mass(scenario_loss: np.ndarray, scenarios: np.ndarray, q: np.ndarray, mass: float):
    """The scenarios of largest loss whose probabilities ``q`` (all positive) reach ``mass``."""
    # that many scenarios hold the mass even if each had the smallest probability: sort only them
    count = min(scenarios.size, int(np.ceil(mass / q[scenarios].min())) + 1)
    loss = scenario_loss[scenarios]
    top = np.argpartition(-loss, count - 1)[:count] if count < scenarios.size else np.arange(count)
    order = scenarios[top[np.argsort(-loss[top], kind="stable")]]
    return order[: _mass_count(q[order], mass)]


def _mass_count(q_sorted: np.ndarray, mass: float) -> int:
    """How many leading entries of ``q_sorted`` it takes to reach ``mass``."""
    return int(np.searchsorted(np.cumsum(q_sorted), mass)) + 1


def _sample_levels(n_live: int, n_assets: int, alpha: float) -> int:
    """How many sample levels precede the full one (0: the whole dual, nothing to sample)."""
    first = SAMPLE_TAIL_PER_ASSET * (n_assets + 1) / (1.0 - alpha)
    return max(0, round(np.log(n_live / first) / np.log(LEVEL_GROWTH)))


def _generate_columns(losses, p, mu, alpha, max_weight, floor, method):
    # the passes over the returns are memory-bound products: as in the tail oracle, more BLAS
    # threads gain nothing on 2 cores and stall when the cores are busy
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        return _generate(losses, p, mu, alpha, max_weight, floor)


def _generate(losses, p, mu, alpha, max_weight, floor):
    n_scen, n = losses.shape
    live = np.flatnonzero(p > 0)  # a scenario of probability 0 never enters a tail
    levels = _sample_levels(live.size, n, alpha)
    model, scenario_loss, var = None, None, 0.0
    iterations = 0
    # strides LEVEL_GROWTH**k nest the samples: each level holds the previous level's scenarios
    for stride in LEVEL_GROWTH ** np.arange(levels, -1, -1):
        sample = live[::stride]
        q = np.zeros(n_scen)
        q[sample] = p[sample] / p[sample].sum()
        if model is None:
            held, at_bound = sample, None
        else:
            ranked = _top_mass(scenario_loss, sample, q, COLUMN_MASS * (1.0 - alpha))
            basic = model.basic_scenarios()
            deep = ranked[: _mass_count(q[ranked], FIXED_MASS * (1.0 - alpha))]
            at_bound = np.setdiff1d(deep[scenario_loss[deep] > var], basic)
            held = np.setdiff1d(np.union1d(ranked, basic), at_bound)
        new = _DualLP(losses, q, mu, alpha, max_weight, floor, held, at_bound)
        if model is not None:
            new.warm_start(model, scenario_loss, var)
        model = new
        in_model = np.zeros(n_scen, dtype=bool)
        in_model[held] = True
        if at_bound is not None:
            in_model[at_bound] = True
        while True:
            weights, var, objective = model.solve()
            scenario_loss = losses.at(weights)
            priced = sample[(scenario_loss[sample] > var + PRICING_TOL) & ~in_model[sample]]
            fell = model.at_bound[scenario_loss[model.at_bound] < var - PRICING_TOL]
            if not priced.size and not fell.size:
                break
            if fell.size:
                model.free(fell)
            if priced.size:
                in_model[priced] = True
                model.add(priced)
        iterations += model.iterations
    return weights, objective, iterations, model.scenarios.size


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
        raise ValueError(
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
    )
