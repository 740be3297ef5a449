"""``evaluate``: the risk of a fixed allocation on any scenario set (out-of-sample, stress).

The allocation's amounts are read from its tables (``allocation``, ``guarantees``, ``sources``) and
put back on the scenario set's cells by their ``PRODUCT|SEGMENT`` labels, so the same allocation can
be priced on the set it was optimised on (in-sample: the numbers of ``Allocation.sources`` and
``Allocation.funds`` again), on a fresh seed (out-of-sample) or on a stressed case's scenarios.
Losses and claims come from :mod:`optimizer.formulation.exposures` and every risk figure from
:mod:`models.risk_measures`, with the set's scenario probabilities, so a figure here and the same
figure in an ``Allocation`` are computed by the same code.

Every limit of the case is then checked against the evaluated figures; a breach is
*significant* when it exceeds its Monte Carlo standard error ``SIGNIFICANT_SE`` times, and
otherwise within Monte Carlo noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.holdings import Holdings, fundable, holdings_of
from optimizer.analysis.limit_checks import (
    limit_checks,
    z_ratio,
)
from optimizer.formulation.attribution import Attribution
from optimizer.formulation.exposures import check_cells, fund_claims, fund_table
from optimizer.result import Allocation
from optimizer.result_tables import gap_tables, source_rows

__all__ = ["Evaluation", "Holdings", "evaluate", "holdings_of"]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Risk figures of a fixed allocation on one scenario set, and the limits it breaches.

    Attributes
    ----------
    sources : DataFrame
        One row per source of the case, the columns of ``Allocation.sources``: committed,
        lending, capital and TA; expected loss, VaR and CVaR (at the source's ``cvar_alpha``,
        else 0.99) with Monte Carlo standard errors (``expected_loss_se_usd``, ``var_se_usd``,
        ``cvar_se_usd``); CVaR limit and headroom; EL rate and its limit. US$.
    funds : DataFrame
        One row per fund: the columns of ``Allocation.funds`` (capital, guaranteed volume,
        leverage, expected claims, claims CVaR at ``1 − ε``, depletion probability
        ``P_π(C_g > capital)`` and its standard error) plus ``expected_claims_se_usd``,
        ``claims_cvar_se_usd`` and ``claims_cvar_headroom_usd = capital − claims CVaR``.
    chains : DataFrame
        Per value chain: ``lending_usd``, gross ``expected_loss_usd`` (before guarantee
        cover, whoever bears it) and ``el_rate``: where a stress bites.
    checks : DataFrame
        Every limit checked, columns :data:`CHECK_COLUMNS`: ``bound`` is ``"max"`` (value must
        not exceed limit) or ``"min"``; ``excess`` is by how much the value passes its limit
        (negative: room left); ``excess_in_se = excess / std_error`` (``inf`` for deterministic
        figures, whose ``std_error`` is 0); ``significant`` when ``excess > 2 std_error``.
    breaches : DataFrame
        The rows of ``checks`` that are breached, largest ``excess_in_se`` first.
    case_name : str
        The case whose limits were checked.
    n_scenarios : int
    effective_sample_size : float
        Kish size ``1 / Σπ²`` of the set's probabilities (``n_scenarios`` for plain MC).
    method : str
        How the scenario set was drawn (``"mc"``, ``"importance"``...).
    seed : int
        The scenario set's seed.
    lending_usd, gap_closed_usd, unmet_gap_usd, weighted_gap_usd : float
        The credit evaluated and the gap it leaves (as in ``Allocation``; credit beyond a
        segment's gap closes nothing), US$.
    money_withdrawn_usd, cover_withdrawn_usd, lending_withdrawn_usd : float
        With ``fund=True``: what the case could not fund of the allocation — money (lending,
        fund capital and TA) its sources no longer have, guarantee cover and lending given
        up (:func:`optimizer.analysis.holdings.fundable`); 0 otherwise, US$.
    """

    sources: pd.DataFrame
    funds: pd.DataFrame
    chains: pd.DataFrame
    checks: pd.DataFrame
    breaches: pd.DataFrame
    case_name: str
    n_scenarios: int
    effective_sample_size: float
    method: str
    seed: int
    lending_usd: float = math.nan
    gap_closed_usd: float = math.nan
    unmet_gap_usd: float = math.nan
    weighted_gap_usd: float = math.nan
    money_withdrawn_usd: float = 0.0
    cover_withdrawn_usd: float = 0.0
    lending_withdrawn_usd: float = 0.0

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames

    @property
    def significant_breaches(self) -> pd.DataFrame:
        """Breaches beyond ``SIGNIFICANT_SE`` standard errors (not Monte Carlo noise)."""
        return self.breaches[self.breaches["significant"]].reset_index(drop=True)

    def compare(self, reference: Allocation | Evaluation) -> pd.DataFrame:
        """This evaluation against another (typically the in-sample ``Allocation``).

        Returns
        -------
        DataFrame
            One row per source and measure (expected loss, CVaR) and per fund (depletion
            probability): ``reference``, ``reference_se``, ``evaluated``, ``evaluated_se``,
            ``difference = evaluated − reference``, ``difference_se = sqrt(se_ref² + se_eval²)``
            and ``difference_in_se``. The combined error assumes independent scenario sets
            (another seed); sets drawn with common random numbers (a stressed case simulated
            with the same seed) are positively correlated and this overstates it.
        """
        rows = []
        pairs = [
            ("source", self.sources, reference.sources, "source", m, se)
            for m, se in (
                ("expected_loss_usd", "expected_loss_se_usd"),
                ("cvar_usd", "cvar_se_usd"),
            )
        ]
        pairs.append(
            ("fund", self.funds, reference.funds, "fund", "depletion_probability", "depletion_se")
        )
        for kind, mine, ref, key, measure, se in pairs:
            theirs = ref.set_index(key)
            for row in mine.itertuples(index=False):
                owner = getattr(row, key)
                if owner not in theirs.index:
                    continue
                a, a_se = float(theirs.at[owner, measure]), float(theirs.at[owner, se])
                b, b_se = float(getattr(row, measure)), float(getattr(row, se))
                d_se = math.hypot(a_se, b_se)
                rows.append(
                    (kind, owner, measure, a, a_se, b, b_se, b - a, d_se, z_ratio(b - a, d_se))
                )
        columns = [
            "owner_kind",
            "owner",
            "measure",
            "reference",
            "reference_se",
            "evaluated",
            "evaluated_se",
            "difference",
            "difference_se",
            "difference_in_se",
        ]
        return pd.DataFrame(rows, columns=columns)


def evaluate(
    case: Case, allocation: Allocation, scenarios: ScenarioSet, *, fund: bool = False
) -> Evaluation:
    """Price a fixed allocation on a scenario set and check it against the case's limits.

    Parameters
    ----------
    case : Case
        The case whose limits apply and whose scenarios ``scenarios`` are: the case optimised,
        or a stressed version of it (same sources and funds; a stress overlay that changes
        amounts or uptake shows up as deterministic breaches).
    allocation : Allocation
        The allocation to evaluate; only its ``allocation``, ``guarantees`` and ``sources``
        (``ta_usd``) tables are read.
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) simulated for ``case``, with probabilities
        (honoured, e.g. importance-sampling weights).
    fund : bool, default False
        Evaluate only what ``case`` can fund of the allocation
        (:func:`optimizer.analysis.holdings.fundable`: less money, lower fund caps or uptake
        scale it down, by a stated rule) instead of the allocation as it stands, whose
        budgets and uptake the case may then breach. The stress tests use it.

    Returns
    -------
    Evaluation

    Raises
    ------
    ScenarioMismatch
        The scenario set was not simulated for ``case``, or the allocation lends into cells
        the set does not have (a stress that changed eligibility), or covers with a fund that
        pays only in events the set does not record.
    ValueError
        The allocation names sources or funds that ``case`` does not have.
    """
    cells = check_cells(case, scenarios)
    holdings = holdings_of(case, allocation, cells)
    withdrawn = fundable(case, holdings, cells) if fund else None
    if withdrawn is not None:
        holdings = withdrawn.holdings
    claims = fund_claims(case, scenarios)
    p = np.asarray(scenarios.probabilities, dtype=np.float64)
    att = holdings.attribution(case, claims, scenarios.losses)
    sources = _source_table(case, holdings, att, p)
    funds = fund_table(case, holdings.capital.sum(axis=0), holdings.covered, att.claims, p)
    checks = limit_checks(case, cells, holdings, sources, funds)
    gaps = gap_tables(case, cells, holdings.lending.sum(axis=1))
    breaches = checks[checks["breached"]].sort_values(
        ["excess_in_se", "excess"], ascending=False, kind="stable"
    )
    return Evaluation(
        sources=sources,
        funds=funds,
        chains=_chain_table(cells, holdings, scenarios.losses, p),
        checks=checks,
        breaches=breaches.reset_index(drop=True),
        case_name=case.name,
        n_scenarios=scenarios.n_scenarios,
        effective_sample_size=scenarios.effective_sample_size,
        method=str(scenarios.method),
        seed=int(scenarios.seed),
        lending_usd=float(holdings.lending.sum()),
        gap_closed_usd=gaps["gap_closed_usd"],
        unmet_gap_usd=gaps["unmet_gap_usd"],
        weighted_gap_usd=gaps["weighted_gap_usd"],
        **(withdrawn.totals() if withdrawn is not None else {}),
    )


# --- tables ---------------------------------------------------------------------------------
def _source_table(case: Case, h: Holdings, att: Attribution, p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(source_rows(case, h.lending.sum(axis=0), att, h.ta, p, var_se=True))


def _chain_table(
    cells: pd.DataFrame, h: Holdings, losses: np.ndarray, p: np.ndarray
) -> pd.DataFrame:
    lending = h.lending.sum(axis=1)
    frame = pd.DataFrame(
        {
            "value_chain": cells["value_chain"].to_numpy(),
            "lending_usd": lending,
            "expected_loss_usd": (p @ np.asarray(losses, dtype=np.float64)) * lending,
        }
    )
    out = frame.groupby("value_chain", sort=False).sum().reset_index()
    lent = out["lending_usd"].to_numpy()
    out["el_rate"] = np.divide(
        out["expected_loss_usd"].to_numpy(), lent, out=np.full(lent.shape, np.nan), where=lent > 0
    )
    return out


# --- limits ---------------------------------------------------------------------------------
