"""How guarantee funds pay, and what every owner loses in every scenario after their claims.

A fund's claim per covered dollar is ``κ_gj(ω)`` (:class:`FundClaims`, built by
:func:`fund_claims`); with the cells' losses per dollar lent ``ℓ_j(ω)`` it gives each source's
loss ``L_s = Σ_j ℓ_j x_sj − Σ_gj κ_gj z_gsj`` and each fund's claims ``C_g = Σ_sj κ_gj z_gsj``
(:func:`owner_losses`), their means (:func:`expected_rates`), each cell's Euler share of a CVaR
(:func:`cell_contributions`) and each fund's claims and depletion table (:func:`fund_table`).

Money is in whatever unit the caller's amounts are in (US$ millions inside the problem, US$ in
result tables); loss and claim rates are per dollar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.risk_measures import conditional_value_at_risk, expected_loss
from models.scenarios import ScenarioSet
from models.schema import Case, GuaranteeStructure
from optimizer.errors import ScenarioMismatch


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
    shaped = [
        (fc, cols, mat[cols])
        for fc, mat in by_shape.values()
        for cols in [np.flatnonzero(mat.any(axis=1))]
    ]
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
    errors, headroom, depletion probability ``P_π(C_g > capital)`` and its standard error,
    and the expected claims it cannot pay, ``E_π[(C_g − capital)+]`` (they stay with the
    covered lenders).
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
                "expected_unpaid_usd": float(p @ np.maximum(claim - capital[g], 0.0)),
            }
        )
    return pd.DataFrame(rows)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
