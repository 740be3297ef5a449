"""The rows every CVaR mode shares: the named constraint families and the builder that writes them.

Units are US$ millions (:data:`USD_PER_UNIT`). :class:`RowBuilder` holds a case's decision variables
and money totals and registers each constraint family ``lhs <= rhs`` with its subjects, labels and
what a US$ of relaxation means (:class:`Family`): segment gaps, budgets, fund capital and leverage,
technical assistance, cover, the policy rules, and the two stages' objectives. The risk families are
:mod:`optimizer.formulation.problem_risk`; :func:`optimizer.formulation.problem.build_problem` puts
it all together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from models.scenarios import ScenarioSet
from models.schema import Case, SourceKind
from optimizer.formulation.claims import expected_rates, fund_claims
from optimizer.formulation.eligibility import check_cells, eligibility

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


def _group(rows: np.ndarray, n_rows: int, n_cols: int, data=None) -> sp.csr_matrix:
    """Sparse (n_rows, n_cols) matrix with ``data[i]`` (default 1) at ``(rows[i], i)``."""
    data = np.ones(len(rows)) if data is None else np.asarray(data, dtype=float)
    return sp.csr_matrix((data, (rows, np.arange(len(rows)))), shape=(n_rows, n_cols))


def _stack(items: list) -> cp.Expression:
    return cp.hstack(
        [cp.reshape(cp.Constant(i) if np.isscalar(i) else i, (1,), order="C") for i in items]
    )


class RowBuilder:
    """Collects the expressions and the named constraint families of one case.

    Parameters
    ----------
    case : Case
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) for the case's cells, with probabilities.
    """

    def __init__(self, case: Case, scenarios: ScenarioSet):
        self.case, self.scen = case, scenarios
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
        # E_π[C_g]: each fund's expected claims
        self.expected_claims = _group(e.z_fund, n_fund, n["z"], zc) @ self.z
        # E_π of each source's share of claims its funds cannot pay (the risk families fill
        # it in; the return hurdle counts it as lending loss)
        self.expected_unpaid: list[cp.Expression | float] = [0.0] * n_src

    def add(self, name, lhs, rhs, activity, subjects, label, relaxation: str) -> None:
        """Register ``lhs <= rhs``. ``label`` is a template filled per subject, or a list;
        ``relaxation`` a template. Callers build nothing for an empty family."""
        subjects = tuple(str(s) for s in subjects)
        labels = [label.format(s) for s in subjects] if isinstance(label, str) else label
        rel = tuple(relaxation.format(s) for s in subjects)
        self.families.append(Family(name, lhs <= rhs, activity, subjects, tuple(labels), rel))

    def where(self, items, test) -> tuple[list[int], list[str]]:
        """Positions and ids of the ``items`` (sources, funds) that pass ``test``."""
        pos = [i for i, item in enumerate(items) if test(item)]
        return pos, [items[i].id for i in pos]

    # --- families --------------------------------------------------------------------------
    def volumes(self) -> None:
        """Segment gaps, budgets, fund capital caps, leverage, technical assistance."""
        case, e = self.case, self.e
        gap = np.array([s.gap_usd for s in case.segments]) / USD_PER_UNIT
        segs = [s.id for s in case.segments]
        self.add(
            "segment_gap",
            self.y,
            gap,
            self.y,
            segs,
            "credit to segment {} at most its gap (need − supply)",
            "US$1 more lending allowed into {} (were its gap larger)",
        )
        amount = np.array([s.amount_usd for s in case.sources]) / USD_PER_UNIT
        # a parameter, so a frontier over one source's money re-uses the compiled problem
        # no sign: an unvalidated case (negative money) must reach the infeasibility diagnosis
        self.amount = cp.Parameter(len(amount), name="amount_usd_m", value=amount)
        self.add(
            "budget",
            self.spend,
            self.amount,
            self.spend,
            self.src_ids,
            "money available from {}",
            "US$1 more money from {}",
        )
        capped, ids = self.where(case.funds, lambda f: f.capital_cap_usd is not None)
        if capped:
            cap = np.array([case.funds[g].capital_cap_usd for g in capped]) / USD_PER_UNIT
            self.add(
                "fund_capital_cap",
                self.fund_capital[capped],
                cap,
                self.fund_capital[capped],
                ids,
                "capital cap of fund {}",
                "US$1 more capital allowed into {}",
            )
        covering = sorted(set(e.z_fund.tolist()))
        if covering:
            lev = np.array([case.funds[g].leverage_cap for g in covering])
            self.add(
                "leverage",
                self.fund_cover[covering],
                cp.multiply(lev, self.fund_capital[covering]),
                self.fund_cover[covering],
                [self.fund_ids[g] for g in covering],
                "leverage cap of fund {} (guaranteed volume per US$ of capital)",
                "US$1 more guaranteed volume allowed at {}",
            )
        need = self.cells["ta_cost_rate"].to_numpy(dtype=float)[e.x_cell]
        if need.any():
            ta = _stack([cp.sum(self.t)])
            self.add(
                "technical_assistance",
                _stack([need @ self.x]),
                ta,
                ta,
                ["programme"],
                "technical assistance needed by the {} loans (ta_cost_rate x lending)",
                "US$1 less technical assistance needed by the {}",
            )

    def cover(self) -> None:
        """Cover at most lending, uptake shares, mandatory cover (nothing without cover)."""
        e = self.e
        nx, nz = e.sizes["x"], e.sizes["z"]
        if nz == 0:
            return
        per_x = _group(e.z_x, nx, nz)  # Σ_g z[g, s, j] at each lending position
        covered = np.unique(e.z_x)
        self.add(
            "cover_total",
            per_x[covered] @ self.z,
            self.x[covered],
            self.x[covered],
            [self.x_label[i] for i in covered],
            "cover of {} at most its lending",
            "US$1 more cover than lending on {}",
        )
        uptake = np.array([self.case.funds[g].uptake_share for g in e.z_fund])
        x_of_z = _group(e.z_x, nx, nz).T.tocsr() @ self.x
        labels = [
            f"{self.fund_ids[g]}/{self.x_label[i]}" for g, i in zip(e.z_fund, e.z_x, strict=True)
        ]
        self.add(
            "uptake",
            self.z,
            cp.multiply(uptake, x_of_z),
            x_of_z,
            labels,
            "uptake share of {}",
            "US$1 more lending put under cover on {}",
        )
        m = e.must_cover
        if m.size:
            self.add(
                "must_cover",
                self.x[m],
                per_x[m] @ self.z,
                self.x[m],
                [self.x_label[i] for i in m],
                "{}: PD above the lender's unguaranteed limit, must be covered",
                "US$1 of {} allowed uncovered",
            )

    def policy(self) -> None:
        """Private participation, senior cap, mobilisation, concentration, climate earmark."""
        case, e = self.case, self.e
        nx, nz, n_src = e.sizes["x"], e.sizes["z"], len(case.sources)
        hurdle, ids = self.where(case.sources, lambda s: s.return_hurdle_rate is not None)
        if hurdle:
            cof = np.array([src.cost_of_funds_rate for src in case.sources])
            margin = (self.cells["rate"] - self.cells["transaction_cost_rate"]).to_numpy()
            margin = margin[e.x_cell] - cof[e.x_source]
            fee = np.array([f.fee_rate for f in case.funds])[e.z_fund] if nz else np.zeros(0)
            income = _group(e.x_source, n_src, nx, margin) @ self.x
            fees = _group(e.z_source, n_src, nz, fee) @ self.z
            rate = np.array([case.sources[s].return_hurdle_rate for s in hurdle])
            unpaid = _stack([self.expected_unpaid[s] for s in hurdle])
            cost = cp.multiply(rate, self.lend[hurdle]) + self.expected_loss[hurdle] + unpaid
            self.add(
                "return_hurdle",
                cost + fees[hurdle],
                income[hurdle],
                self.lend[hurdle],
                ids,
                "return hurdle of {} (net margin after expected loss and guarantee fees)",
                "US$1 less net income required of {}",
            )
        senior, ids = self.where(case.sources, lambda s: s.max_multiple_of_concessional is not None)
        if senior:
            mult = np.array([case.sources[s].max_multiple_of_concessional for s in senior])
            self.add(
                "senior_cap",
                self.lend[senior],
                mult * self.concessional,
                self.lend[senior],
                ids,
                "senior cap of {} (multiple of the concessional money used)",
                "US$1 more lending allowed to {}",
            )
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
                "mobilization",
                required,
                _stack([private @ self.lend]),
                required,
                ["programme"],
                "private lending per concessional dollar ({} mobilisation rule)",
                "US$1 less private lending required by the {} rule",
            )
        self._shares()
        self._earmark()

    def _shares(self) -> None:
        case, e, pol = self.case, self.e, self.case.policy
        total = cp.sum(self.x)
        if pol.max_share_per_segment < 1.0:
            self.add(
                "segment_share",
                self.y,
                pol.max_share_per_segment * total,
                self.y,
                [s.id for s in case.segments],
                "concentration cap on segment {}",
                "US$1 more room in {} under the segment cap",
            )
        if pol.max_share_per_region < 1.0:
            regions = [r.id for r in case.regions]
            of_seg = np.array([regions.index(s.region) for s in case.segments])
            per_region = _group(of_seg, len(regions), len(case.segments)) @ self.y
            self.add(
                "region_share",
                per_region,
                pol.max_share_per_region * total,
                per_region,
                regions,
                "concentration cap on region {}",
                "US$1 more room in {} under the region cap",
            )
        if pol.max_share_per_product < 1.0:
            prods = [p.id for p in case.products]
            of_cell = self.cells["product"].map({p: i for i, p in enumerate(prods)}).to_numpy()
            per_product = _group(of_cell[e.x_cell], len(prods), e.sizes["x"]) @ self.x
            self.add(
                "product_share",
                per_product,
                pol.max_share_per_product * total,
                per_product,
                prods,
                "concentration cap on product {}",
                "US$1 more room in {} under the product cap",
            )

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
            "climate_earmark",
            pol.climate_earmark_min_share * clim,
            _stack([high.astype(float) @ self.x]),
            clim,
            ["programme"],
            "climate lending to high-deforestation-pressure segments ({} earmark)",
            "US$1 less high-pressure climate lending required by the {} earmark",
        )

    # --- objectives ------------------------------------------------------------------------
    def objectives(self) -> tuple[cp.Expression, cp.Expression]:
        """Stage 1's weighted unmet gap and stage 2's expected loss plus concessional cost, US$m."""
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
