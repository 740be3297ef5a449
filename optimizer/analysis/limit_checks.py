"""Every limit of a case checked against evaluated figures: breached, and significantly so.

:func:`limit_checks` gives one row per limit (:data:`CHECK_COLUMNS`): the value, the limit,
the excess in US$ (or probability) and in standard errors; a breach beyond the optimiser's own
tolerance is ``breached``, one beyond :data:`SIGNIFICANT_SE` standard errors ``significant``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.schema import Case

if TYPE_CHECKING:
    from optimizer.analysis.holdings import Holdings

SIGNIFICANT_SE = 2.0
"""A breach larger than this many standard errors is statistically significant."""
BREACH_RTOL = 1e-6
BREACH_ATOL_USD = 1.0
"""A money figure breaches its limit when it exceeds it by more than US$1 + 1e-6 of the limit
(the optimiser's own tolerance), so an optimal allocation re-evaluated in-sample breaches nothing."""
BREACH_ATOL_PROBABILITY = 1e-12
"""Claims equal to capital up to solver precision do not deplete a fund (as in the result)."""

CHECK_COLUMNS = (
    "owner_kind",
    "owner",
    "what",
    "bound",
    "value",
    "limit",
    "excess",
    "unit",
    "std_error",
    "excess_in_se",
    "breached",
    "significant",
)


def limit_checks(
    case: Case, cells: pd.DataFrame, h: Holdings, sources: pd.DataFrame, funds: pd.DataFrame
) -> pd.DataFrame:
    """Every limit of the case against the evaluated figures (rows of :data:`CHECK_COLUMNS`).

    Parameters
    ----------
    case : Case
    cells : DataFrame
        The scenario set's cells (one row per cell, the loss matrix's columns).
    h : Holdings
        The allocation's positions on those cells (:func:`optimizer.analysis.evaluate.holdings_of`).
    sources, funds : DataFrame
        The evaluation's per-funder and per-fund figures (US$, with standard errors).
    """
    rows: list[tuple] = []

    def add(kind, owner, what, bound, value, limit, unit, se=0.0) -> None:
        value, limit, se = float(value), float(limit), float(se)
        excess, breached = breach(value, limit, bound, unit)
        rows.append(
            (
                kind,
                owner,
                what,
                bound,
                value,
                limit,
                excess,
                unit,
                se,
                z_ratio(excess, se),
                breached,
                breached and excess > SIGNIFICANT_SE * se,
            )
        )

    for s, (src, row) in enumerate(zip(case.sources, sources.itertuples(), strict=True)):
        add("source", src.id, "budget", "max", row.committed_usd, src.amount_usd, "US$")
        if not math.isnan(row.cvar_limit_usd):
            add(
                "source",
                src.id,
                f"cvar{row.cvar_alpha * 100:g}",
                "max",
                row.cvar_usd,
                row.cvar_limit_usd,
                "US$",
                row.cvar_se_usd,
            )
        if src.expected_loss_limit_rate is not None:
            add(
                "source",
                src.id,
                "expected_loss",
                "max",
                row.expected_loss_usd,
                src.expected_loss_limit_rate * (row.lending_usd + row.capital_usd),
                "US$",
                row.expected_loss_se_usd,
            )
        if src.return_hurdle_rate is not None and row.lending_usd > 0:
            add(
                "source",
                src.id,
                "return_hurdle",
                "min",
                income_before_loss(case, cells, h, s) - _lending_loss(row),
                src.return_hurdle_rate * row.lending_usd,
                "US$",
                row.expected_loss_se_usd,
            )
    for g, (fund, row) in enumerate(zip(case.funds, funds.itertuples(), strict=True)):
        if fund.capital_cap_usd is not None:
            add("fund", fund.id, "capital_cap", "max", row.capital_usd, fund.capital_cap_usd, "US$")
        if row.guaranteed_usd <= 0:
            continue
        add(
            "fund",
            fund.id,
            "leverage",
            "max",
            row.guaranteed_usd,
            fund.leverage_cap * row.capital_usd,
            "US$",
        )
        allowed = np.minimum(h.covered[g], fund.uptake_share * h.lending)
        add("fund", fund.id, "uptake", "max", row.guaranteed_usd, allowed.sum(), "US$")
        add(
            "fund",
            fund.id,
            "depletion_probability",
            "max",
            row.depletion_probability,
            row.max_depletion_probability,
            "probability",
            row.depletion_se,
        )
        add(
            "fund",
            fund.id,
            f"claims_cvar{(1 - fund.max_depletion_probability) * 100:g}",
            "max",
            row.claims_cvar_usd,
            row.capital_usd,
            "US$",
            row.claims_cvar_se_usd,
        )
    frame = pd.DataFrame(rows, columns=list(CHECK_COLUMNS))
    return frame.astype({"breached": bool, "significant": bool})


def breach(value: float, limit: float, bound: str, unit: str) -> tuple[float, bool]:
    """``(excess, breached)`` of a figure against its limit: ``excess`` is by how much it
    passes (``bound`` ``"max"``: above, ``"min"``: below; negative: room left); breached
    beyond the optimiser's own tolerance (:data:`BREACH_RTOL`, :data:`BREACH_ATOL_USD`, or
    :data:`BREACH_ATOL_PROBABILITY` for a probability)."""
    excess = value - limit if bound == "max" else limit - value
    if unit == "probability":
        tol = BREACH_ATOL_PROBABILITY
    else:
        tol = BREACH_RTOL * abs(limit) + BREACH_ATOL_USD
    return excess, bool(excess > tol)


def income_before_loss(case: Case, cells: pd.DataFrame, h: Holdings, s: int) -> float:
    """Source ``s``'s net income on its lending before expected loss, US$: margin (rate less
    transaction cost) less its cost of funds, less the guarantee fees it pays (as in the LP's
    return hurdle)."""
    margin = (cells["rate"] - cells["transaction_cost_rate"]).to_numpy(dtype=np.float64)
    fee = np.array([f.fee_rate for f in case.funds])
    income = (margin - case.sources[s].cost_of_funds_rate) @ h.lending[:, s]
    return float(income - fee @ h.covered[:, :, s].sum(axis=1))


def z_ratio(excess: float, se: float) -> float:
    """``excess / se``: ±inf for an excess without error, 0 for none."""
    if se > 0:
        return excess / se
    return math.copysign(math.inf, excess) if excess != 0 else 0.0


def _lending_loss(row) -> float:
    """A source's expected loss on its lending (a table saved before losses were split
    between lending and fund capital has only the whole)."""
    value = getattr(row, "expected_loss_lending_usd", math.nan)
    return float(row.expected_loss_usd if value is None or math.isnan(value) else value)
