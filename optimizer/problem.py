"""The allocation problem as one linear programme (Rockafellar–Uryasev CVaR), in cvxpy.

Units inside the problem are US$ millions, so that amounts, limits and the objective sit near 1
to 1,000 rather than 1e6 to 1e9 (solver tolerances are absolute). Every constraint is written
``lhs <= rhs`` in US$m and belongs to a named :class:`Family`, so that a binding row and its
dual (weighted-gap US$ per US$ of relaxation) can be reported in the user's words.

The two lexicographic stages share one compiled problem: the objective is
``a · weighted_gap + b · secondary`` and the gap is held by ``weighted_gap <= hold``, with
``a``, ``b`` and ``hold`` cvxpy parameters, so stage 2 re-uses stage 1's canonicalization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.scenarios import ScenarioSet
from models.schema import Case, GuaranteeFund, SourceKind
from optimizer.cut_master import CutMaster
from optimizer.cut_measures import CutMeasure, cut_groups, make_measure
from optimizer.exposures import (
    Eligibility,
    FundClaims,
    check_cells,
    eligibility,
    expected_rates,
    exposure_columns,
    fund_claims,
)
from optimizer.tail_oracle import TailOracle

USD_PER_UNIT = 1e6
"""US$ per problem unit: the problem is written in US$ millions."""


@dataclass(frozen=True, eq=False)
class Family:
    """A named family of constraint rows ``lhs <= rhs`` (US$m), one row per subject.

    Attributes
    ----------
    name : str
        e.g. ``"budget"``, ``"cvar_limit"``.
    constraint : cvxpy Inequality of shape (n_rows,)
    activity : cvxpy Expression of shape (n_rows,)
        A volume that is zero when the row is idle (so ``0 <= 0`` is not called binding).
    subjects, labels, relaxations : tuple of str, length n_rows
        The source/fund/segment/cell concerned; what the row limits; what one US$ of
        relaxation of its right-hand side means.
    """

    name: str
    constraint: cp.Constraint
    activity: cp.Expression
    subjects: tuple[str, ...]
    labels: tuple[str, ...]
    relaxations: tuple[str, ...]

    def slack(self) -> np.ndarray:
        """``rhs − lhs`` at the current solution, US$m (>= 0 up to solver tolerance)."""
        lhs, rhs = self.constraint.args
        return np.atleast_1d(np.asarray(rhs.value - lhs.value, dtype=float))


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """The compiled-once allocation LP and everything needed to read its solution.

    Attributes
    ----------
    case, scenarios : Case, ScenarioSet
    elig : Eligibility
        Variable index sets.
    claims : tuple of FundClaims
        One per fund, in ``case.funds`` order.
    x, c, t, z : cvxpy Variable
        Lending, fund capital, technical assistance, guarantee cover (US$m), shaped by ``elig``.
    families : tuple of Family
        Every named constraint family (the stage-2 gap hold is not one: it has no dual).
    weighted_gap : cvxpy Expression
        ``Σ_k w_k (gap_k − y_k)``, US$m.
    secondary : cvxpy Expression
        Stage-2 objective: expected credit loss of all lending plus the cost of concessional
        money used, US$m.
    problem : cvxpy Problem
    stage_weight, secondary_weight, hold : cvxpy Parameter
        Set by :meth:`set_stage`.
    cvar_method : {"lp", "cuts"}
        ``"lp"``: one variable per scenario and CVaR (Rockafellar–Uryasev). ``"cuts"``: each
        CVaR is ``t + η/(1−α)`` with aggregated cuts in ``cut_measures`` (cutting plane), the
        scenarios seen only through ``oracle``.
    amount, cvar_scale : cvxpy Parameter
        Budgets (US$m, one per source) and a scale on each CVaR limit (one per source in
        ``cvar_limited``): what a frontier sweeps without recompiling.
    fund_tail_factor : cvxpy Parameter or None
        ``1 / ε_g`` for each fund in ``depletion_funds`` (ε_g its allowed depletion
        probability; the fund's claims CVaR is taken at level ``1 − ε_g``). An ε_g below
        ``depletion_floor`` is taken at the floor (see :func:`depletion_floor`).
    depletion_floor : float
        The smallest positive scenario probability: the least ε the scenarios can measure.
    warnings : tuple of str
        What the build changed from the case as written (an ε below the floor), for the
        result's warnings.
    mobilization_ratio : cvxpy Parameter or None
        Private lending required per concessional dollar (present when the case has
        concessional money).
    expo : cvxpy Variable
        Net exposure columns (see :class:`optimizer.exposures.ExposureColumns`).
    mean_loss_rate : ndarray of shape (n_cells,)
        Expected loss per dollar lent in each cell, ``E_π[ℓ_j]``.
    cut_measures, oracle, cut_master
        Cut mode only: the CVaR measures, the pass over the loss matrix that makes their cuts,
        and the persistent HiGHS model that holds the compiled problem and the cuts.
    """

    case: Case
    scenarios: ScenarioSet
    elig: Eligibility
    claims: tuple[FundClaims, ...]
    x: cp.Variable
    c: cp.Variable
    t: cp.Variable
    z: cp.Variable
    families: tuple[Family, ...]
    weighted_gap: cp.Expression
    secondary: cp.Expression
    problem: cp.Problem
    stage_weight: cp.Parameter
    secondary_weight: cp.Parameter
    hold: cp.Parameter
    cvar_method: str = "lp"
    amount: cp.Parameter | None = None
    cvar_scale: cp.Parameter | None = None
    cvar_limited: tuple[str, ...] = ()
    fund_tail_factor: cp.Parameter | None = None
    depletion_funds: tuple[str, ...] = ()
    depletion_floor: float = 0.0
    warnings: tuple[str, ...] = ()
    mobilization_ratio: cp.Parameter | None = None
    expo: cp.Variable | None = None
    mean_loss_rate: np.ndarray | None = None
    cut_measures: tuple[CutMeasure, ...] = ()
    oracle: TailOracle | None = None
    cut_master: CutMaster | None = None

    def set_stage(self, stage: int, hold_usd_m: float | None = None) -> None:
        """Point the objective at stage 1 (weighted gap) or 2 (loss and cost, gap held)."""
        if stage == 1:
            self.stage_weight.value, self.secondary_weight.value = 1.0, 0.0
            self.hold.value = self.max_weighted_gap + 1.0  # never binds
        else:
            self.stage_weight.value, self.secondary_weight.value = 0.0, 1.0
            self.hold.value = float(hold_usd_m)

    @property
    def max_weighted_gap(self) -> float:
        """Weighted gap with no lending at all, US$m."""
        gap = np.array([s.gap_usd for s in self.case.segments]) / USD_PER_UNIT
        return float(segment_weights(self.case) @ gap)

    def registry(self) -> pd.DataFrame:
        """One row per named constraint row: family, row, subject, label, relaxation, unit.

        Every row is ``lhs <= rhs`` in US$, so its dual is weighted-gap US$ per US$."""
        rows = [
            (f.name, i, s, lab, rel, "US$")
            for f in self.families
            for i, (s, lab, rel) in enumerate(zip(f.subjects, f.labels, f.relaxations, strict=True))
        ]
        columns = ["family", "row", "subject", "label", "relaxation", "unit"]
        return pd.DataFrame(rows, columns=columns)


def segment_weights(case: Case) -> np.ndarray:
    """Objective weights ``w_k = 1 + priority · deforestation_pressure_k``."""
    prio = case.policy.deforestation_priority
    return np.array([1.0 + prio * s.deforestation_pressure for s in case.segments])


def depletion_floor(probabilities: np.ndarray) -> float:
    """The smallest positive scenario probability (``1/S`` with equal weights).

    A fund's allowed depletion probability ε below it is taken at this floor: ``CVaR_{1−ε}``
    of a discrete loss is its worst scenario as soon as ε is at most that scenario's
    probability, so on these scenarios every smaller ε is the same constraint.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    positive = p[p > 0]
    return float(positive.min()) if positive.size else 1.0


def _needed(eps: float) -> str:
    """``1/ε`` scenarios, written for a message (1e300 stays readable)."""
    need = 1.0 / eps
    return f"{math.ceil(need):,}" if need < 1e9 else f"{need:.1g}"


def _group(rows: np.ndarray, n_rows: int, n_cols: int, data=None) -> sp.csr_matrix:
    """Sparse (n_rows, n_cols) matrix with ``data[i]`` (default 1) at ``(rows[i], i)``."""
    data = np.ones(len(rows)) if data is None else np.asarray(data, dtype=float)
    return sp.csr_matrix((data, (rows, np.arange(len(rows)))), shape=(n_rows, n_cols))


def _pct(level: float) -> str:
    return f"{level * 100:g}%"


def _stack(items: list) -> cp.Expression:
    return cp.hstack(
        [cp.reshape(cp.Constant(i) if np.isscalar(i) else i, (1,), order="C") for i in items]
    )


class _Builder:
    """Collects the expressions and the named constraint families of one case."""

    def __init__(self, case: Case, scenarios: ScenarioSet, cvar_method: str = "lp"):
        self.case, self.scen = case, scenarios
        self.cvar_method = cvar_method
        self.measures: list[CutMeasure] = []
        self.cells = check_cells(case, scenarios)
        self.e = e = eligibility(case, self.cells)
        self.claims = fund_claims(case, scenarios)
        self.losses = scenarios.losses
        self.p = np.asarray(scenarios.probabilities, dtype=np.float64)
        self.depletion_floor = depletion_floor(self.p)
        self.warnings: list[str] = []
        n = e.sizes
        self.x = cp.Variable(n["x"], nonneg=True, name="lending")
        self.c = cp.Variable(n["c"], nonneg=True, name="capital")
        self.t = cp.Variable(n["t"], nonneg=True, name="technical_assistance")
        self.z = cp.Variable(n["z"], nonneg=True, name="cover")
        self.families: list[Family] = []
        self.internal: list[cp.Constraint] = []
        n_src, n_fund = len(case.sources), len(case.funds)
        self.src_ids = [s.id for s in case.sources]
        self.fund_ids = [f.id for f in case.funds]
        cell_ids = self.cells["cell"].tolist()
        self.x_label = [
            f"{self.src_ids[s]}/{cell_ids[j]}" for s, j in zip(e.x_source, e.x_cell, strict=True)
        ]
        # Totals per source and per fund, US$m.
        self.lend = _group(e.x_source, n_src, n["x"]) @ self.x
        self.capital = _group(e.c_source, n_src, n["c"]) @ self.c
        self.spend = self.lend + self.capital + _group(e.t_source, n_src, n["t"]) @ self.t
        self.fund_capital = _group(e.c_fund, n_fund, n["c"]) @ self.c
        self.fund_cover = _group(e.z_fund, n_fund, n["z"]) @ self.z
        conc = np.array([s.is_concessional for s in case.sources], dtype=float)
        self.concessional = conc @ self.spend
        seg_of = self.cells["segment"].map({s.id: k for k, s in enumerate(case.segments)})
        self.y = _group(seg_of.to_numpy()[e.x_cell], len(case.segments), n["x"]) @ self.x
        # E_π[L_s] from the mean loss and mean claim rates: one row per source.
        self.mean_loss, mean_claim = expected_rates(self.losses, self.p, self.claims)
        zc = mean_claim[e.z_fund, e.z_cell] if n["z"] else np.zeros(0)
        self.expected_loss = (
            _group(e.x_source, n_src, n["x"], self.mean_loss[e.x_cell]) @ self.x
            - _group(e.z_source, n_src, n["z"], zc) @ self.z
        )

    def add(self, name, lhs, rhs, activity, subjects, label, relaxation: str) -> None:
        """Register ``lhs <= rhs``. ``label`` is a template filled per subject, or a list;
        ``relaxation`` a template. Callers build nothing for an empty family."""
        subjects = tuple(str(s) for s in subjects)
        labels = [label.format(s) for s in subjects] if isinstance(label, str) else label
        rel = tuple(relaxation.format(s) for s in subjects)
        self.families.append(Family(name, lhs <= rhs, activity, subjects, tuple(labels), rel))

    def _where(self, items, test) -> tuple[list[int], list[str]]:
        pos = [i for i, item in enumerate(items) if test(item)]
        return pos, [items[i].id for i in pos]

    # --- families --------------------------------------------------------------------------
    def volumes(self) -> None:
        case, e = self.case, self.e
        gap = np.array([s.gap_usd for s in case.segments]) / USD_PER_UNIT
        segs = [s.id for s in case.segments]
        self.add(
            "segment_gap", self.y, gap, self.y, segs,
            "credit to segment {} at most its gap (need − supply)",
            "US$1 more lending allowed into {} (were its gap larger)",
        )  # fmt: skip
        amount = np.array([s.amount_usd for s in case.sources]) / USD_PER_UNIT
        # a parameter, so a frontier over one source's money re-uses the compiled problem
        # no sign: an unvalidated case (negative money) must reach the infeasibility diagnosis
        self.amount = cp.Parameter(len(amount), name="amount_usd_m", value=amount)
        self.add(
            "budget", self.spend, self.amount, self.spend, self.src_ids,
            "money available from {}", "US$1 more money from {}",
        )  # fmt: skip
        capped, ids = self._where(case.funds, lambda f: f.capital_cap_usd is not None)
        if capped:
            cap = np.array([case.funds[g].capital_cap_usd for g in capped]) / USD_PER_UNIT
            self.add(
                "fund_capital_cap", self.fund_capital[capped], cap, self.fund_capital[capped],
                ids, "capital cap of fund {}", "US$1 more capital allowed into {}",
            )  # fmt: skip
        covering = sorted(set(e.z_fund.tolist()))
        if covering:
            lev = np.array([case.funds[g].leverage_cap for g in covering])
            self.add(
                "leverage", self.fund_cover[covering],
                cp.multiply(lev, self.fund_capital[covering]), self.fund_cover[covering],
                [self.fund_ids[g] for g in covering],
                "leverage cap of fund {} (guaranteed volume per US$ of capital)",
                "US$1 more guaranteed volume allowed at {}",
            )  # fmt: skip
        need = self.cells["ta_cost_rate"].to_numpy(dtype=float)[e.x_cell]
        if need.any():
            ta = _stack([cp.sum(self.t)])
            self.add(
                "technical_assistance", _stack([need @ self.x]), ta, ta, ["programme"],
                "technical assistance needed by the {} loans (ta_cost_rate x lending)",
                "US$1 less technical assistance needed by the {}",
            )  # fmt: skip

    def cover(self) -> None:
        e = self.e
        nx, nz = e.sizes["x"], e.sizes["z"]
        if nz == 0:
            return
        per_x = _group(e.z_x, nx, nz)  # Σ_g z[g, s, j] at each lending position
        covered = np.unique(e.z_x)
        self.add(
            "cover_total", per_x[covered] @ self.z, self.x[covered], self.x[covered],
            [self.x_label[i] for i in covered],
            "cover of {} at most its lending", "US$1 more cover than lending on {}",
        )  # fmt: skip
        uptake = np.array([self.case.funds[g].uptake_share for g in e.z_fund])
        x_of_z = _group(e.z_x, nx, nz).T.tocsr() @ self.x
        labels = [
            f"{self.fund_ids[g]}/{self.x_label[i]}" for g, i in zip(e.z_fund, e.z_x, strict=True)
        ]
        self.add(
            "uptake", self.z, cp.multiply(uptake, x_of_z), x_of_z, labels,
            "uptake share of {}", "US$1 more lending put under cover on {}",
        )  # fmt: skip
        m = e.must_cover
        if m.size:
            self.add(
                "must_cover", self.x[m], per_x[m] @ self.z, self.x[m],
                [self.x_label[i] for i in m],
                "{}: PD above the lender's unguaranteed limit, must be covered",
                "US$1 of {} allowed uncovered",
            )  # fmt: skip

    def risk(self) -> None:
        """CVaR limits, expected-loss limits and fund depletion (Rockafellar–Uryasev)."""
        case, e = self.case, self.e
        commit = self.lend + self.capital
        # Scenario rows see net exposure columns rather than x and z: half the non-zeros, and
        # the dual simplex needed ~8x fewer iterations on the default case.
        cols = exposure_columns(e, self.claims, len(self.cells))
        expo = cp.Variable(cols.owner.size, name="net_exposure")
        self.internal.append(expo == cols.from_x @ self.x + cols.from_z @ self.z)

        self.columns, self.expo = cols, expo

        def scenario_loss(position: int, *, fund: bool) -> cp.Expression | np.ndarray:
            if self.cvar_method == "cuts":  # the oracle reads the scenarios, not the LP
                return np.flatnonzero((cols.owner == position) & (cols.is_fund == fund))
            return cols.scenario_matrix(self.losses, position, fund=fund) @ expo

        limited, ids = self._where(case.sources, lambda s: s.cvar_alpha is not None)
        # a scale per limit (parameter, 1 by default): frontiers sweep risk appetite in place
        self.cvar_scale = (
            cp.Parameter(
                len(limited), nonneg=True, name="cvar_limit_scale", value=np.ones(len(limited))
            )
            if limited
            else None
        )
        if limited:
            lhs, rhs = [], []
            for i, s in enumerate(limited):
                src = case.sources[s]
                lhs.append(self._cvar(scenario_loss(s, fund=False), src.cvar_alpha, src.id))
                if src.cvar_limit_usd is not None:
                    rhs.append(self.cvar_scale[i] * (src.cvar_limit_usd / USD_PER_UNIT))
                else:
                    rhs.append(self.cvar_scale[i] * (src.cvar_limit_share * commit[s]))
            self._limit_measures(rhs)
            labels = [f"CVaR{_pct(case.sources[s].cvar_alpha)} loss limit of {i}"
                      for s, i in zip(limited, ids, strict=True)]  # fmt: skip
            self.add(
                "cvar_limit", _stack(lhs), _stack(rhs), commit[limited], ids, labels,
                "US$1 more CVaR allowance for {}",
            )  # fmt: skip
        el, ids = self._where(case.sources, lambda s: s.expected_loss_limit_rate is not None)
        if el:
            rate = np.array([case.sources[s].expected_loss_limit_rate for s in el])
            self.add(
                "expected_loss_limit", self.expected_loss[el],
                cp.multiply(rate, self.lend[el]), self.lend[el], ids,
                "expected-loss limit of {} (share of its lending)",
                "US$1 more expected-loss allowance for {}",
            )  # fmt: skip
        funds = sorted(set(e.z_fund.tolist()))
        self.depletion_funds = tuple(self.fund_ids[g] for g in funds)
        self.fund_tail_factor = None
        if funds:
            eps = np.array([self._depletion_level(case.funds[g]) for g in funds])
            # 1/ε as a parameter, so a frontier sweeps the depletion probability in place
            self.fund_tail_factor = cp.Parameter(
                len(funds), pos=True, name="fund_tail_factor", value=1.0 / eps
            )
            lhs = [
                self._cvar(
                    scenario_loss(g, fund=True), 1.0 - eps[i], case.funds[g].id,
                    self.fund_tail_factor[i],
                )
                for i, g in enumerate(funds)
            ]  # fmt: skip
            self._limit_measures([self.fund_capital[g] for g in funds])
            self.add(
                "fund_depletion", _stack(lhs), self.fund_capital[funds],
                self.fund_capital[funds], [self.fund_ids[g] for g in funds],
                [f"depletion of fund {self.fund_ids[g]}: CVaR{_pct(1 - eps[i])} of claims "
                 "within capital" for i, g in enumerate(funds)],
                "US$1 more claims-CVaR allowed at {}",
            )  # fmt: skip

    def _depletion_level(self, fund: GuaranteeFund) -> float:
        """The fund's ε, or the smallest scenario probability when ε is below it (warned).

        ``CVaR_{1−ε}`` is the worst scenario's claims for every allocation once ε is at most
        the probability of each scenario: a smaller ε says nothing more on these scenarios,
        and its ``1/ε`` (up to 1e300 for a valid case) would only break the solver.
        """
        eps = float(fund.max_depletion_probability)
        if eps >= self.depletion_floor:
            return eps
        n = self.scen.n_scenarios
        self.warnings.append(
            f"fund {fund.id}: max_depletion_probability {eps:.3g} is below the smallest "
            f"scenario probability {self.depletion_floor:.3g} ({n:,} scenarios), so no "
            "scenario set of this size can measure it: its claims CVaR is taken as the worst "
            f"scenario's claims (level 1 − {self.depletion_floor:.3g}); about {_needed(eps)} "
            "scenarios would be needed to hold the fund to the probability as written"
        )
        return self.depletion_floor

    def _limit_measures(self, limits: list[cp.Expression]) -> None:
        """Tell the last cut measures their limits (the cutting plane stops on feasibility)."""
        if self.cvar_method == "cuts":
            for measure, limit in zip(self.measures[-len(limits) :], limits, strict=True):
                measure.limit = limit

    def _cvar(
        self,
        loss: cp.Expression | np.ndarray,
        alpha: float,
        name: str,
        tail_factor: cp.Expression | None = None,
    ) -> cp.Expression:
        """Rockafellar–Uryasev ``η + Σ_ω π_ω v_ω / (1 − α)`` with ``v >= loss − η, v >= 0``.

        ``tail_factor`` (a parameter standing for ``1/(1 − α)``) replaces the constant when the
        level is swept. In cut mode ``loss`` is the measure's exposure columns and the CVaR is a
        cut-bank estimate ``t + η/(1−α)`` (see :mod:`optimizer.cutting_plane`).
        """
        factor = 1.0 / (1.0 - alpha) if tail_factor is None else tail_factor
        if self.cvar_method == "cuts":
            measure = make_measure(name, loss, alpha, tail_factor)
            self.measures.append(measure)
            return measure.estimate
        eta = cp.Variable(name=f"var_{name}")
        v = cp.Variable(self.scen.n_scenarios, nonneg=True, name=f"excess_{name}")
        self.internal.append(loss - eta <= v)
        return eta + factor * (self.p @ v)

    def policy(self) -> None:
        """Private participation, senior cap, mobilisation, concentration, climate earmark."""
        case, e = self.case, self.e
        nx, nz, n_src = e.sizes["x"], e.sizes["z"], len(case.sources)
        hurdle, ids = self._where(case.sources, lambda s: s.return_hurdle_rate is not None)
        if hurdle:
            cof = np.array([src.cost_of_funds_rate for src in case.sources])
            margin = (self.cells["rate"] - self.cells["transaction_cost_rate"]).to_numpy()
            margin = margin[e.x_cell] - cof[e.x_source]
            fee = np.array([f.fee_rate for f in case.funds])[e.z_fund] if nz else np.zeros(0)
            income = _group(e.x_source, n_src, nx, margin) @ self.x
            fees = _group(e.z_source, n_src, nz, fee) @ self.z
            rate = np.array([case.sources[s].return_hurdle_rate for s in hurdle])
            cost = cp.multiply(rate, self.lend[hurdle]) + self.expected_loss[hurdle]
            self.add(
                "return_hurdle", cost + fees[hurdle], income[hurdle], self.lend[hurdle], ids,
                "return hurdle of {} (net margin after expected loss and guarantee fees)",
                "US$1 less net income required of {}",
            )  # fmt: skip
        senior, ids = self._where(
            case.sources, lambda s: s.max_multiple_of_concessional is not None
        )
        if senior:
            mult = np.array([case.sources[s].max_multiple_of_concessional for s in senior])
            self.add(
                "senior_cap", self.lend[senior], mult * self.concessional, self.lend[senior], ids,
                "senior cap of {} (multiple of the concessional money used)",
                "US$1 more lending allowed to {}",
            )  # fmt: skip
        ratio = case.policy.min_private_per_concessional
        self.mobilization_ratio = None
        if any(s.is_concessional for s in case.sources):
            # a parameter (a zero ratio leaves the row idle), so a frontier can sweep it
            self.mobilization_ratio = cp.Parameter(
                nonneg=True, name="min_private_per_concessional", value=ratio
            )
            private = np.array([s.kind is SourceKind.private for s in case.sources], dtype=float)
            required = _stack([self.mobilization_ratio * self.concessional])
            self.add(
                "mobilization", required, _stack([private @ self.lend]), required,
                ["programme"],
                "private lending per concessional dollar ({} mobilisation rule)",
                "US$1 less private lending required by the {} rule",
            )  # fmt: skip
        self._shares()
        self._earmark()

    def _shares(self) -> None:
        case, e, pol = self.case, self.e, self.case.policy
        total = cp.sum(self.x)
        if pol.max_share_per_segment < 1.0:
            self.add(
                "segment_share", self.y, pol.max_share_per_segment * total, self.y,
                [s.id for s in case.segments],
                "concentration cap on segment {}", "US$1 more room in {} under the segment cap",
            )  # fmt: skip
        if pol.max_share_per_region < 1.0:
            regions = [r.id for r in case.regions]
            of_seg = np.array([regions.index(s.region) for s in case.segments])
            per_region = _group(of_seg, len(regions), len(case.segments)) @ self.y
            self.add(
                "region_share", per_region, pol.max_share_per_region * total, per_region,
                regions,
                "concentration cap on region {}", "US$1 more room in {} under the region cap",
            )  # fmt: skip
        if pol.max_share_per_product < 1.0:
            prods = [p.id for p in case.products]
            of_cell = self.cells["product"].map({p: i for i, p in enumerate(prods)}).to_numpy()
            per_product = _group(of_cell[e.x_cell], len(prods), e.sizes["x"]) @ self.x
            self.add(
                "product_share", per_product, pol.max_share_per_product * total, per_product,
                prods,
                "concentration cap on product {}", "US$1 more room in {} under the product cap",
            )  # fmt: skip

    def _earmark(self) -> None:
        pol, e = self.case.policy, self.e
        climate = np.array([s.kind is SourceKind.climate for s in self.case.sources])
        mine = climate[e.x_source]
        if pol.climate_earmark_min_share <= 0 or not mine.any():
            return
        pressure = self.cells["deforestation_pressure"].to_numpy()[e.x_cell]
        high = mine & (pressure >= pol.climate_earmark_min_pressure)
        clim = _stack([mine.astype(float) @ self.x])
        self.add(
            "climate_earmark", pol.climate_earmark_min_share * clim,
            _stack([high.astype(float) @ self.x]), clim, ["programme"],
            "climate lending to high-deforestation-pressure segments ({} earmark)",
            "US$1 less high-pressure climate lending required by the {} earmark",
        )  # fmt: skip

    # --- objectives ------------------------------------------------------------------------
    def objectives(self) -> tuple[cp.Expression, cp.Expression]:
        case, e = self.case, self.e
        gap = np.array([s.gap_usd for s in case.segments]) / USD_PER_UNIT
        w = segment_weights(case)
        weighted_gap = float(w @ gap) - w @ self.y
        # Stage 2 counts the expected loss of all lending, whoever bears it (lender or
        # guarantee fund), so it cannot be lowered by merely shifting losses into funds.
        conc_cost = np.array(
            [src.cost_of_funds_rate if src.is_concessional else 0.0 for src in case.sources]
        )
        secondary = self.mean_loss[e.x_cell] @ self.x + conc_cost @ self.spend
        return weighted_gap, secondary


def build_problem(case: Case, scenarios: ScenarioSet, cvar_method: str = "lp") -> AllocationProblem:
    """Build (not solve) the allocation LP of a case on a scenario set.

    Parameters
    ----------
    case : Case
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) for the case's cells, with probabilities.

    Returns
    -------
    AllocationProblem
        Set to stage 1. :func:`optimizer.solve.optimize` solves it.
    """
    if cvar_method not in ("lp", "cuts"):
        raise ValueError(f"cvar_method must be 'lp' or 'cuts', got {cvar_method!r}")
    b = _Builder(case, scenarios, cvar_method)
    b.volumes()
    b.cover()
    b.risk()
    b.policy()
    weighted_gap, secondary = b.objectives()
    a = cp.Parameter(nonneg=True, name="stage_weight", value=1.0)
    w2 = cp.Parameter(nonneg=True, name="secondary_weight", value=0.0)
    hold = cp.Parameter(name="hold_weighted_gap", value=0.0)
    constraints = [f.constraint for f in b.families] + b.internal + [weighted_gap <= hold]
    problem = cp.Problem(cp.Minimize(a * weighted_gap + w2 * secondary), constraints)
    out = AllocationProblem(
        case=case,
        scenarios=scenarios,
        elig=b.e,
        claims=b.claims,
        x=b.x,
        c=b.c,
        t=b.t,
        z=b.z,
        families=tuple(b.families),
        weighted_gap=weighted_gap,
        secondary=secondary,
        problem=problem,
        stage_weight=a,
        secondary_weight=w2,
        hold=hold,
        cvar_method=cvar_method,
        amount=b.amount,
        cvar_scale=b.cvar_scale,
        cvar_limited=tuple(s.id for s in case.sources if s.cvar_alpha is not None),
        fund_tail_factor=b.fund_tail_factor,
        depletion_funds=b.depletion_funds,
        depletion_floor=b.depletion_floor,
        warnings=tuple(b.warnings),
        mobilization_ratio=b.mobilization_ratio,
        expo=getattr(b, "expo", None),
        mean_loss_rate=b.mean_loss,
        cut_measures=tuple(b.measures),
        oracle=(
            TailOracle(scenarios.losses, b.p, b.columns, [m.cols for m in b.measures])
            if b.measures
            else None
        ),
        cut_master=(
            CutMaster(problem, b.measures, b.expo, cut_groups(scenarios.n_scenarios))
            if b.measures
            else None
        ),
    )
    out.set_stage(1)
    return out
