"""Who may be exposed to which loss, and the loss and claim coefficients of every exposure.

Two things shared by the allocation problem and by every later evaluation of an allocation:

* :class:`Eligibility` — the index sets of the decision variables: lending ``x[s, j]`` by source
  s into cell j, capital ``c[s, g]``, technical assistance ``t[s]``, guarantee cover
  ``z[g, s, j]``. Variables exist only where the case allows them.
* :class:`FundClaims` — a fund's claim per covered dollar, ``κ_gj(ω)``; with the cells' losses per
  dollar lent ``ℓ_j(ω)`` it gives each source's loss ``L_s = Σ_j ℓ_j x_sj − Σ_gj κ_gj z_gsj`` and
  each fund's claims ``C_g = Σ_sj κ_gj z_gsj``.

Money here is in whatever unit the caller's amounts are in (US$ millions inside the problem,
US$ in result tables); loss and claim rates are per dollar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.cells import build_cells
from models.risk_measures import conditional_value_at_risk, expected_loss
from models.scenarios import ScenarioSet
from models.schema import Case, GuaranteeStructure
from optimizer.errors import ScenarioMismatch

_INT = np.int64


@dataclass(frozen=True, eq=False)
class Eligibility:
    """Index sets of the decision variables (positions into the case's sources, funds, cells).

    Attributes
    ----------
    x_source, x_cell : ndarray of shape (n_x,), int
        Source and cell of each lending variable ``x``.
    c_source, c_fund : ndarray of shape (n_c,), int
        Source and fund of each capital variable ``c``.
    t_source : ndarray of shape (n_t,), int
        Source of each technical-assistance variable ``t``.
    z_fund, z_x : ndarray of shape (n_z,), int
        Fund of each cover variable ``z`` and the position in ``x`` of the lending it covers.
    must_cover : ndarray of shape (n_must,), int
        Positions in ``x`` whose cell PD exceeds the source's ``max_pd_unguaranteed``: that
        lending must be fully covered.
    """

    x_source: np.ndarray
    x_cell: np.ndarray
    c_source: np.ndarray
    c_fund: np.ndarray
    t_source: np.ndarray
    z_fund: np.ndarray
    z_x: np.ndarray
    must_cover: np.ndarray

    @property
    def z_source(self) -> np.ndarray:
        return self.x_source[self.z_x]

    @property
    def z_cell(self) -> np.ndarray:
        return self.x_cell[self.z_x]

    @property
    def sizes(self) -> dict[str, int]:
        """Number of variables of each kind."""
        return {
            "x": self.x_source.size,
            "c": self.c_source.size,
            "t": self.t_source.size,
            "z": self.z_fund.size,
        }


def check_cells(case: Case, scenarios: ScenarioSet) -> pd.DataFrame:
    """The scenario set's cells, after checking they are the case's cells in the case's order.

    Raises
    ------
    ScenarioMismatch
        If the loss columns belong to another case (or an edited version of this one).
    """
    expected = build_cells(case)["cell"].tolist()
    got = scenarios.cells["cell"].tolist()
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        raise ScenarioMismatch(
            f"the scenario set's {len(got)} cells are not the {len(expected)} cells of case "
            f"{case.name!r} (missing {missing}, unexpected {extra}, or another order); "
            "re-simulate the scenarios for this case"
        )
    return scenarios.cells


def eligibility(case: Case, cells: pd.DataFrame) -> Eligibility:
    """Build the variable index sets of a case.

    Lending ``x[s, j]`` exists when the cell's product is among ``s.products``, the cell's
    deforestation pressure reaches ``s.min_deforestation_pressure`` and its PD is at most
    ``s.max_pd_guaranteed``. Cover ``z[g, s, j]`` exists when ``s.kind`` is among the fund's
    covered kinds, the product is eligible and some source may capitalise the fund. Lending
    that must be covered (PD above ``max_pd_unguaranteed``) but that no fund can cover is
    dropped, since it could only ever be zero.
    """
    fund_pos = {f.id: g for g, f in enumerate(case.funds)}
    c_source = [s for s, src in enumerate(case.sources) for _ in src.funds]
    c_fund = [fund_pos[f] for src in case.sources for f in src.funds]
    capitalised = set(c_fund)
    product = cells["product"].to_numpy()
    pd_ = cells["pd"].to_numpy()
    pressure = cells["deforestation_pressure"].to_numpy()

    x_source: list[int] = []
    x_cell: list[int] = []
    z_fund: list[int] = []
    z_x: list[int] = []
    must: list[int] = []
    for s, src in enumerate(case.sources):
        ok = np.isin(product, src.products)
        if src.min_deforestation_pressure is not None:
            ok &= pressure >= src.min_deforestation_pressure
        if src.max_pd_guaranteed is not None:
            ok &= pd_ <= src.max_pd_guaranteed
        for j in np.flatnonzero(ok):
            covering = [
                g
                for g, fund in enumerate(case.funds)
                if g in capitalised
                and src.kind in fund.covered_source_kinds
                and product[j] in fund.eligible_products
            ]
            needs_cover = src.max_pd_unguaranteed is not None and pd_[j] > src.max_pd_unguaranteed
            if needs_cover and not covering:
                continue
            pos = len(x_source)
            x_source.append(s)
            x_cell.append(int(j))
            if needs_cover:
                must.append(pos)
            z_fund += covering
            z_x += [pos] * len(covering)
    return Eligibility(
        x_source=np.asarray(x_source, dtype=_INT),
        x_cell=np.asarray(x_cell, dtype=_INT),
        c_source=np.asarray(c_source, dtype=_INT),
        c_fund=np.asarray(c_fund, dtype=_INT),
        t_source=np.asarray(
            [s for s, src in enumerate(case.sources) if src.technical_assistance], dtype=_INT
        ),
        z_fund=np.asarray(z_fund, dtype=_INT),
        z_x=np.asarray(z_x, dtype=_INT),
        must_cover=np.asarray(must, dtype=_INT),
    )


@dataclass(frozen=True, eq=False)
class FundClaims:
    """How one guarantee fund pays: ``κ_gj(ω) = a_g(ω) · cov_gj · f_g(ℓ_j(ω))``.

    ``f`` is the identity for a pari-passu fund and ``min(ℓ, first_loss_cap_share)`` for a
    first-loss fund (the cap applies per cell pool: it keeps claims linear in cover); ``a`` is 1,
    or for a contingent fund the indicator that one of its trigger events occurred.

    Attributes
    ----------
    fund_id : str
    coverage : ndarray of shape (n_cells,)
        ``cov_gj``: the product's coverage, 0 for products the fund does not cover.
    cap_share : float or None
        First-loss cap on the loss per covered dollar; ``None`` for pari passu.
    active : ndarray of shape (n_scenarios,), bool, or None
        Scenarios in which the fund pays; ``None`` means every scenario.
    trigger : tuple of str
        The events behind ``active`` (empty when the fund always pays).
    """

    fund_id: str
    coverage: np.ndarray
    cap_share: float | None
    active: np.ndarray | None
    trigger: tuple[str, ...] = ()

    @property
    def shape_key(self) -> tuple[float | None, tuple[str, ...]]:
        """Funds with equal keys have claims proportional to the same ``a · f(ℓ)``."""
        return (self.cap_share, self.trigger)

    def rates(
        self,
        losses: np.ndarray,
        cols: np.ndarray | None = None,
        rows: slice | np.ndarray | None = None,
        *,
        with_coverage: bool = True,
    ) -> np.ndarray:
        """Claim per covered dollar, ``κ_gj(ω)``, for the given scenario rows and cell columns.

        With ``with_coverage=False`` the shape ``a(ω) f(ℓ_j(ω))`` without ``cov_gj``.

        Returns
        -------
        ndarray of shape (n_rows, n_cols), float64 (a new array).
        """
        rows = slice(None) if rows is None else rows
        cols = np.arange(losses.shape[1]) if cols is None else cols
        block = np.asarray(losses[rows][:, cols], dtype=np.float64)
        return self.of_block(block, rows, cols, with_coverage=with_coverage, in_place=True)

    def of_block(
        self,
        block: np.ndarray,
        rows: slice | np.ndarray,
        cols: np.ndarray,
        *,
        with_coverage: bool = True,
        in_place: bool = False,
    ) -> np.ndarray:
        """:meth:`rates` from losses already cut to ``rows`` and ``cols``, shape (n_rows,
        n_cols), in the block's dtype; ``block`` is overwritten only if ``in_place``."""
        if self.cap_share is not None:
            k = np.minimum(block, self.cap_share, out=block if in_place else None)
        else:
            k = block if in_place else block.copy()
        if with_coverage:
            k *= self.coverage[cols]
        if self.active is not None:
            k *= self.active[rows][:, None]
        return k


def expected_rates(
    losses: np.ndarray, probabilities: np.ndarray, claims: Sequence[FundClaims]
) -> tuple[np.ndarray, np.ndarray]:
    """Expected loss per dollar lent and expected claim per covered dollar, in one pass.

    Returns
    -------
    mean_loss : ndarray of shape (n_cells,)
        ``E_π[ℓ_j]``.
    mean_claim : ndarray of shape (n_funds, n_cells)
        ``E_π[κ_gj]``.
    """
    n_cells = losses.shape[1]
    # E[a f(ℓ) cov] = (π a) · f(ℓ) × cov: one mean per claim shape, not per fund; the
    # uncapped shapes (plain first) share one product per chunk, a cap needs its own copy
    shapes = {(None, ()): None} | {fc.shape_key: fc for fc in claims}
    uncapped = [key for key in shapes if key[0] is None]
    capped = [key for key in shapes if key[0] is not None]
    means = {key: np.zeros(n_cells) for key in shapes}
    for rows in _chunks(losses.shape[0]):
        block = np.asarray(losses[rows], dtype=np.float64)  # widened once for every shape
        w = probabilities[rows]
        weights = np.column_stack([_trigger_weight(w, shapes[key], rows) for key in uncapped])
        for key, mean in zip(uncapped, weights.T @ block, strict=True):
            means[key] += mean
        for key in capped:
            means[key] += _trigger_weight(w, shapes[key], rows) @ np.minimum(block, key[0])
    mean_loss = means[(None, ())]
    mean_claim = np.zeros((len(claims), n_cells))
    for g, fc in enumerate(claims):
        mean_claim[g] = means[fc.shape_key] * fc.coverage
    return mean_loss, mean_claim


def _trigger_weight(w: np.ndarray, fc: FundClaims | None, rows: slice) -> np.ndarray:
    return w if fc is None or fc.active is None else w * fc.active[rows]


def _chunks(n: int, size: int = 65_536) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def fund_claims(case: Case, scenarios: ScenarioSet) -> tuple[FundClaims, ...]:
    """The claim model of every fund of the case, in ``case.funds`` order."""
    products = scenarios.cells["product"].to_numpy()
    out = []
    for fund in case.funds:
        cov = np.array(
            [
                fund.coverage_by_product.get(p, fund.coverage_ratio)
                if p in fund.eligible_products
                else 0.0
                for p in products
            ]
        )
        active = None
        if fund.active_only_in_events:
            missing = [e for e in fund.active_only_in_events if e not in scenarios.event_ids]
            if missing:
                raise ScenarioMismatch(
                    f"fund {fund.id} pays only in events {missing}, which the scenario set "
                    f"does not record (it has {list(scenarios.event_ids)}); re-simulate the "
                    "scenarios for this case"
                )
            cols = [scenarios.event_ids.index(e) for e in fund.active_only_in_events]
            active = scenarios.events[:, cols].any(axis=1)
        cap = fund.first_loss_cap_share if fund.structure is GuaranteeStructure.first_loss else None
        out.append(FundClaims(fund.id, cov, cap, active, tuple(fund.active_only_in_events)))
    return tuple(out)


def owner_losses(
    losses: np.ndarray,
    claims: Sequence[FundClaims],
    lending: np.ndarray,
    covered: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenario losses of lenders after guarantee claims, ``L(ω) = ℓ(ω) x − Σ_g κ_g(ω) z_g``,
    and every fund's claims, ``C_g(ω) = Σ_j κ_gj(ω) Σ_s z_gjs``, in one pass (each chunk of
    the matrix widened to float64 once for lenders and funds).

    Parameters
    ----------
    losses : ndarray of shape (n_scenarios, n_cells)
    claims : sequence of FundClaims, length n_funds
    lending : ndarray of shape (n_cells, K)
        Lending per cell, one column per lender.
    covered : ndarray of shape (n_funds, n_cells, K)
        Cover by each fund of each lender's lending.

    Returns
    -------
    lenders : ndarray of shape (n_scenarios, K), in the unit of ``lending``
    funds : ndarray of shape (n_scenarios, n_funds)
    """
    n_lenders = lending.shape[1]
    # Per claim shape ``a(ω) f(ℓ)`` one (n_cells, K + n_funds) matrix: lenders' columns net
    # their lending against the cover, funds' columns sum it. Always-paying pari-passu funds
    # share the plain shape with lending, so most of the pass is one product per chunk.
    plain = np.zeros((lending.shape[0], n_lenders + len(claims)))
    plain[:, :n_lenders] = lending
    by_shape: dict[tuple, tuple[FundClaims, np.ndarray]] = {}
    for g, fc in enumerate(claims):
        if covered[g].any():
            if fc.shape_key == (None, ()):
                mat = plain
            else:
                mat = by_shape.setdefault(fc.shape_key, (fc, np.zeros_like(plain)))[1]
            cover = fc.coverage[:, None] * covered[g]  # claim per dollar of ℓ, by lender
            mat[:, :n_lenders] -= cover
            mat[:, n_lenders + g] = cover.sum(axis=1)
    shaped = [(fc, cols, mat[cols]) for fc, mat in by_shape.values()
              for cols in [np.flatnonzero(mat.any(axis=1))]]  # fmt: skip
    out = np.empty((losses.shape[0], plain.shape[1]))
    for rows in _chunks(losses.shape[0]):
        block = np.asarray(losses[rows], dtype=np.float64)
        out[rows] = block @ plain
        for fc, cols, mat in shaped:
            rates = fc.of_block(block[:, cols], rows, cols, with_coverage=False, in_place=True)
            out[rows] += rates @ mat
    lenders, funds = out[:, :n_lenders], out[:, n_lenders:]
    return lenders, funds


def cell_contributions(
    losses: np.ndarray,
    claims: Sequence[FundClaims],
    weights: np.ndarray,
    lending: np.ndarray,
    covered: np.ndarray,
) -> np.ndarray:
    """Each cell's share of ``Σ_ω w_ω L(ω)`` for one lender (Euler allocation of CVaR).

    Parameters
    ----------
    losses : ndarray of shape (n_scenarios, n_cells)
    claims : sequence of FundClaims, length n_funds
    weights : ndarray of shape (n_scenarios,)
        Tail weights of the lender's CVaR (sum 1): the contributions then sum to its CVaR.
    lending : ndarray of shape (n_cells,)
    covered : ndarray of shape (n_funds, n_cells)

    Returns
    -------
    ndarray of shape (n_cells,): ``Σ_ω w_ω (ℓ_j x_j − Σ_g κ_gj z_gj)``.
    """
    rows = np.flatnonzero(weights)  # tail weights: only the tail's few rows count
    w = weights[rows]
    out = (w @ np.asarray(losses[rows], dtype=np.float64)) * lending
    for g, fc in enumerate(claims):
        cols = np.flatnonzero(covered[g] > 0)
        if cols.size:
            out[cols] -= (w @ fc.rates(losses, cols, rows)) * covered[g, cols]
    return out


@dataclass(frozen=True, eq=False)
class ExposureColumns:
    """Net exposures that carry the scenario losses in the LP, with fewer non-zeros than x, z.

    Each column is an (owner, cell, claim shape) with a scenario coefficient
    ``r(ω) = a(ω) f(ℓ_j(ω))`` shared by every fund of that shape (``f`` identity or a first-loss
    cap, ``a`` an event trigger). A lender's column of the plain shape nets its lending against
    the cover of always-paying pari-passu funds (``x_sj − Σ_g cov_gj z_gsj``); a fund's column
    adds up its cover of the cell over all lenders (``cov_gj Σ_s z_gsj``). Then
    ``L_s(ω) = Σ_{cols of s} r_col(ω) e_col`` and ``C_g(ω) = Σ_{cols of g} r_col(ω) e_col``.

    Attributes
    ----------
    owner : ndarray of shape (n_cols,), int
        Source position (``is_fund`` False) or fund position (``is_fund`` True).
    is_fund : ndarray of shape (n_cols,), bool
    cell : ndarray of shape (n_cols,), int
    shape : ndarray of shape (n_cols,), int
        Index into ``shapes``.
    shapes : tuple of FundClaims
        One representative per claim shape; index 0 is the plain loss ``ℓ`` (no cap, always).
    from_x, from_z : scipy.sparse.csr_matrix of shape (n_cols, n_x) and (n_cols, n_z)
        ``e = from_x @ x + from_z @ z``.
    """

    owner: np.ndarray
    is_fund: np.ndarray
    cell: np.ndarray
    shape: np.ndarray
    shapes: tuple[FundClaims, ...]
    from_x: sp.csr_matrix
    from_z: sp.csr_matrix

    def scenario_matrix(self, losses: np.ndarray, position: int, *, fund: bool) -> sp.csc_matrix:
        """Loss (claims if ``fund``) coefficients of one source (fund) on every column.

        Returns
        -------
        scipy.sparse.csc_matrix of shape (n_scenarios, n_cols)
            ``r_col(ω)`` in the owner's columns, nothing elsewhere: ``L_s = M @ e``.
        """
        cols = np.flatnonzero((self.owner == position) & (self.is_fund == fund))
        n_scen, n_cols = losses.shape[0], self.owner.size
        block = np.empty((n_scen, cols.size))
        for k in np.unique(self.shape[cols]):
            mine = self.shape[cols] == k
            block[:, mine] = self.shapes[k].rates(
                losses, self.cell[cols[mine]], with_coverage=False
            )
        counts = np.zeros(n_cols, dtype=np.int64)
        counts[cols] = n_scen
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.tile(np.arange(n_scen), cols.size)
        mat = sp.csc_matrix((block.ravel(order="F"), indices, indptr), shape=(n_scen, n_cols))
        mat.eliminate_zeros()  # a contingent fund pays nothing in most scenarios
        return mat


def exposure_columns(
    elig: Eligibility, claims: Sequence[FundClaims], n_cells: int
) -> ExposureColumns:
    """Group lending and cover into the net exposure columns of :class:`ExposureColumns`."""
    plain = FundClaims("loss", np.ones(n_cells), None, None)
    keys: dict[tuple, int] = {plain.shape_key: 0}
    shapes = [plain]
    for fc in claims:
        if fc.shape_key not in keys:
            keys[fc.shape_key] = len(shapes)
            shapes.append(fc)
    cols: dict[tuple[bool, int, int, int], int] = {}

    def col(is_fund: bool, owner: int, cell: int, shape: int) -> int:
        return cols.setdefault((is_fund, int(owner), int(cell), shape), len(cols))

    x_entries = [
        (col(False, s, j, 0), i, 1.0)
        for i, (s, j) in enumerate(zip(elig.x_source, elig.x_cell, strict=True))
    ]
    z_entries = []
    for i, (g, s, j) in enumerate(zip(elig.z_fund, elig.z_source, elig.z_cell, strict=True)):
        k = keys[claims[g].shape_key]
        cov = float(claims[g].coverage[j])
        z_entries.append((col(False, s, j, k), i, -cov))
        z_entries.append((col(True, g, j, k), i, cov))
    n = len(cols)
    meta = np.array(list(cols), dtype=np.int64).reshape(n, 4)

    def matrix(entries: list, n_vars: int) -> sp.csr_matrix:
        r, c, v = (np.array(a) for a in zip(*entries, strict=True)) if entries else ([], [], [])
        return sp.csr_matrix((v, (r, c)), shape=(n, n_vars))

    return ExposureColumns(
        owner=meta[:, 1],
        is_fund=meta[:, 0].astype(bool),
        cell=meta[:, 2],
        shape=meta[:, 3],
        shapes=tuple(shapes),
        from_x=matrix(x_entries, elig.x_source.size),
        from_z=matrix(z_entries, elig.z_fund.size),
    )


DEPLETION_RTOL, DEPLETION_ATOL_USD = 1e-9, 1e-3
"""Claims equal to capital up to solver precision do not deplete a fund."""


def fund_table(
    case: Case,
    capital: np.ndarray,
    covered: np.ndarray,
    fund_losses: np.ndarray,
    p: np.ndarray,
) -> pd.DataFrame:
    """Each fund's capital, guaranteed volume, leverage, claims and depletion, US$.

    Parameters
    ----------
    capital : ndarray of shape (n_funds,)
    covered : ndarray of shape (n_funds, n_cells, n_sources)
    fund_losses : ndarray of shape (S, n_funds)
        The funds' scenario claims (:func:`owner_losses`).
    p : ndarray of shape (S,)
        Scenario probabilities.

    Returns
    -------
    DataFrame, one row per fund: expected claims and claims CVaR at ``1 − ε`` with standard
    errors, headroom, depletion probability ``P_π(C_g > capital)`` and its standard error.
    """
    rows = []
    for g, fund in enumerate(case.funds):
        cover = covered[g].sum(axis=1)
        claim = fund_losses[:, g]
        eps = fund.max_depletion_probability
        mean = expected_loss(claim, p)
        cvar = conditional_value_at_risk(claim, 1 - eps, p)
        depleted = claim > capital[g] * (1 + DEPLETION_RTOL) + DEPLETION_ATOL_USD
        prob_dep = float(p @ depleted)
        rows.append(
            {
                "fund": fund.id,
                "structure": str(fund.structure),
                "capital_usd": capital[g],
                "capital_cap_usd": _nan(fund.capital_cap_usd),
                "guaranteed_usd": cover.sum(),
                "leverage_used": cover.sum() / capital[g] if capital[g] > 0 else math.nan,
                "leverage_cap": fund.leverage_cap,
                "expected_claims_usd": mean.value,
                "expected_claims_se_usd": mean.std_error,
                "claims_cvar_usd": cvar.value,
                "claims_cvar_se_usd": cvar.std_error,
                "claims_cvar_headroom_usd": capital[g] - cvar.value,
                "depletion_probability": prob_dep,
                "depletion_se": float(np.sqrt((p * p) @ (depleted - prob_dep) ** 2)),
                "max_depletion_probability": eps,
            }
        )
    return pd.DataFrame(rows)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
