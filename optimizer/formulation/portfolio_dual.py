"""The minimum-CVaR portfolio's dual LP (Ogryczak & Śliwiński), whole or by column generation.

:class:`_DualLP` holds the dual over a subset of the scenarios in a persistent HiGHS model;
:func:`_solve_dual` passes it every scenario, :func:`_generate_columns` only those near the VaR,
level by level, until every reduced cost has the right sign (exact, not sampled). The dual, the
methods and their measurements are described in :mod:`optimizer.formulation.portfolio`, whose
:func:`~optimizer.formulation.portfolio.min_cvar_portfolio` calls them on losses scaled by
:class:`_Scaled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from optimizer.errors import SolverFailure
from optimizer.formulation.blas_threads import BLAS_THREADS

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
