"""How each CVaR method writes a CVaR into the allocation problem: its own variables and rows.

Two modes, one interface (:class:`ScenarioRowsCvar` for ``cvar_method="lp"``, :class:`CutCvar` for
``"cuts"``), so the risk families (:mod:`optimizer.formulation.problem_risk`) are written once:

* ``loss(columns, expo, cols, links)`` — what a CVaR is taken of: the scenario losses of some
  exposure columns plus terms ``(C_g − K)+`` (claims a fund cannot pay out of some of its
  capital; one variable and row per scenario and link in the one-LP mode), or the columns and
  links themselves (the cut mode: the oracle reads the scenarios, not the LP);
* ``expectation(columns, expo, link)`` — ``E_π[(C_g − K)+]`` of one link (US$m): ``π·v`` in the
  one-LP mode, a measure at level ~0 in the cut mode; each link's once;
* ``cvar(loss, alpha, name, tail_factor)`` — the CVaR expression (US$m);
* ``hold(limits)`` — the right-hand sides of the last CVaRs written, which the cut loop stops on;
* ``rows`` — the constraints the mode added to the problem;
* ``engine(problem, columns, expo)`` — the cut mode's measures, tail oracle and persistent
  master once the cvxpy problem exists (nothing in the one-LP mode).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from models.scenarios import ScenarioSet
from optimizer.formulation.cut_master import CutMaster
from optimizer.formulation.cut_measures import (
    EXPECTATION_LEVEL,
    CutMeasure,
    Link,
    cut_groups,
    make_measure,
)
from optimizer.formulation.exposures import ExposureColumns
from optimizer.formulation.tail_oracle import TailOracle

CutEngine = tuple[tuple[CutMeasure, ...], TailOracle | None, CutMaster | None]
"""The cut mode's measures, tail oracle and master (empty and None in the one-LP mode)."""


class ScenarioRowsCvar:
    """Rockafellar–Uryasev in the LP: one variable and one row per scenario and CVaR.

    Parameters
    ----------
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) and their probabilities.
    """

    method = "lp"

    def __init__(self, scenarios: ScenarioSet):
        self.losses = scenarios.losses
        self.p = np.asarray(scenarios.probabilities, dtype=np.float64)
        self.n_scenarios = scenarios.n_scenarios
        self.rows: list[cp.Constraint] = []
        self._links: dict[tuple, cp.Variable] = {}

    def loss(
        self,
        columns: ExposureColumns,
        expo: cp.Variable,
        cols: np.ndarray,
        links: tuple[Link, ...] = (),
    ) -> cp.Expression:
        """Scenario losses of ``cols`` plus each link's ``(C_g − K)+``, shape (n_scenarios,),
        US$m."""
        out = columns.matrix_of(self.losses, cols) @ expo
        for link in links:
            out = out + self._link(columns, expo, link)
        return out

    def expectation(
        self, columns: ExposureColumns, expo: cp.Variable, link: Link, name: str
    ) -> cp.Expression:
        """``E_π[(C_g − K)+]`` of the link, US$m."""
        return self.p @ self._link(columns, expo, link)

    def _link(self, columns: ExposureColumns, expo: cp.Variable, link: Link) -> cp.Variable:
        """``v >= C_g − K, v >= 0`` per scenario, once per link: at the optimum of a problem
        that limits a convex function of ``v`` it can be taken equal to ``(C_g − K)+``."""
        if link.key not in self._links:
            v = cp.Variable(self.n_scenarios, nonneg=True, name=f"unpaid_{len(self._links)}")
            claims = columns.matrix_of(self.losses, link.fund_cols) @ expo
            self.rows.append(claims - cp.sum(expo[link.cap_cols]) <= v)
            self._links[link.key] = v
        return self._links[link.key]

    def cvar(
        self,
        loss: cp.Expression,
        alpha: float,
        name: str,
        tail_factor: cp.Expression | None = None,
    ) -> cp.Expression:
        """Rockafellar–Uryasev ``η + Σ_ω π_ω v_ω / (1 − α)`` with ``v >= loss − η, v >= 0``.

        ``tail_factor`` (a parameter standing for ``1/(1 − α)``) replaces the constant when the
        level is swept.
        """
        factor = 1.0 / (1.0 - alpha) if tail_factor is None else tail_factor
        eta = cp.Variable(name=f"var_{name}")
        v = cp.Variable(self.n_scenarios, nonneg=True, name=f"excess_{name}")
        self.rows.append(loss - eta <= v)
        return eta + factor * (self.p @ v)

    def hold(self, limits: list[cp.Expression]) -> None:
        """Nothing to do: the LP's own rows hold each limit."""

    def engine(self, problem: cp.Problem, columns: ExposureColumns, expo: cp.Variable) -> CutEngine:
        """No cut engine: the LP is solved whole."""
        return (), None, None


class CutCvar:
    """Each CVaR a cut-bank estimate ``t + η/(1−α)`` (see
    :mod:`optimizer.formulation.cutting_plane`).

    The problem holds no scenario: after it is built, :meth:`engine` makes the tail oracle that
    reads the loss matrix and the persistent HiGHS master that holds the cuts.

    Parameters
    ----------
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) and their probabilities.
    """

    method = "cuts"

    def __init__(self, scenarios: ScenarioSet):
        self.scenarios = scenarios
        self.p = np.asarray(scenarios.probabilities, dtype=np.float64)
        self.measures: list[CutMeasure] = []
        self.rows: list[cp.Constraint] = []
        self._expectations: dict[tuple, cp.Expression] = {}

    def loss(
        self,
        columns: ExposureColumns,
        expo: cp.Variable,
        cols: np.ndarray,
        links: tuple[Link, ...] = (),
    ) -> tuple[np.ndarray, tuple[Link, ...]]:
        """The exposure columns and links (the oracle reads the scenarios, not the LP)."""
        return np.asarray(cols, dtype=np.int64), tuple(links)

    def cvar(
        self,
        loss: tuple[np.ndarray, tuple[Link, ...]],
        alpha: float,
        name: str,
        tail_factor: cp.Expression | None = None,
    ) -> cp.Expression:
        """A new measure on the columns and links ``loss``; its estimate ``t + f·η``, US$m."""
        cols, links = loss
        measure = make_measure(name, cols, alpha, tail_factor, links=links)
        self.measures.append(measure)
        return measure.estimate

    def expectation(
        self, columns: ExposureColumns, expo: cp.Variable, link: Link, name: str
    ) -> cp.Expression:
        """``E_π[(C_g − K)+]`` of the link: a measure at level ~0 (once per link), US$m."""
        if link.key not in self._expectations:
            empty = np.zeros(0, dtype=np.int64)
            measure = make_measure(name, empty, EXPECTATION_LEVEL, links=(link,))
            self.measures.append(measure)
            self._expectations[link.key] = measure.estimate
        return self._expectations[link.key]

    def hold(self, limits: list[cp.Expression]) -> None:
        """Tell the last measures their limits (the cutting plane stops on feasibility)."""
        for measure, limit in zip(self.measures[-len(limits) :], limits, strict=True):
            measure.limit = limit

    def engine(self, problem: cp.Problem, columns: ExposureColumns, expo: cp.Variable) -> CutEngine:
        """The measures, their tail oracle and the master compiled from ``problem``.

        Returns
        -------
        measures : tuple of CutMeasure
        oracle : TailOracle or None
            None (and no master) when the case has no CVaR.
        master : CutMaster or None
            With :func:`~optimizer.formulation.cut_measures.cut_groups` scenario blocks per measure.
        """
        if not self.measures:
            return (), None, None
        cols = [m.cols for m in self.measures]
        links = [m.links for m in self.measures]
        oracle = TailOracle(self.scenarios.losses, self.p, columns, cols, links)
        groups = cut_groups(self.scenarios.n_scenarios)
        return tuple(self.measures), oracle, CutMaster(problem, self.measures, expo, groups)


CVAR_MODES = {"lp": ScenarioRowsCvar, "cuts": CutCvar}
"""The CVaR mode of each ``cvar_method``."""
