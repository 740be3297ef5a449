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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.errors import OptionError
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.limit_checks import (
    limit_checks,
    z_ratio,
)
from optimizer.errors import ScenarioMismatch
from optimizer.formulation.attribution import Attribution, attribute_losses
from optimizer.formulation.exposures import FundClaims, check_cells, fund_claims, fund_table
from optimizer.result import Allocation
from optimizer.result_tables import source_rows


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


@dataclass(frozen=True)
class Holdings:
    """The allocation on the scenario set's cells, US$.

    lending (n_cells, n_sources); covered (n_funds, n_cells, n_sources); capital
    (n_sources, n_funds); ta (n_sources,).
    """

    lending: np.ndarray
    covered: np.ndarray
    capital: np.ndarray
    ta: np.ndarray

    def attribution(
        self, case: Case, claims: Sequence[FundClaims], losses: np.ndarray
    ) -> Attribution:
        """Every scenario's losses of these holdings, by whom they fall on (US$)."""
        return attribute_losses(case, claims, losses, self.lending, self.covered, self.capital)


def evaluate(case: Case, allocation: Allocation, scenarios: ScenarioSet) -> Evaluation:
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
    claims = fund_claims(case, scenarios)
    p = np.asarray(scenarios.probabilities, dtype=np.float64)
    att = holdings.attribution(case, claims, scenarios.losses)
    sources = _source_table(case, holdings, att, p)
    funds = fund_table(case, holdings.capital.sum(axis=0), holdings.covered, att.claims, p)
    checks = limit_checks(case, cells, holdings, sources, funds)
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
    )


# --- the allocation on the set's cells --------------------------------------------------------
def holdings_of(case: Case, allocation: Allocation, cells: pd.DataFrame) -> Holdings:
    """The allocation laid on a scenario set's cells (by PRODUCT|SEGMENT label), US$."""
    src_pos = {s.id: i for i, s in enumerate(case.sources)}
    fund_pos = {f.id: g for g, f in enumerate(case.funds)}
    alloc, guar = allocation.allocation, allocation.guarantees
    _known("source", set(alloc["source"]) | set(guar["source"]), src_pos, case)
    _known("fund", set(guar["fund"]), fund_pos, case)
    cover_cols = {
        c[len("covered_usd_") :]: c for c in alloc.columns if c.startswith("covered_usd_")
    }
    used = {f for f, col in cover_cols.items() if (alloc[col] > 0).any()}
    _known("fund", used, fund_pos, case)

    cell_pos = {label: j for j, label in enumerate(cells["cell"])}
    labels = (alloc["product"].astype(str) + "|" + alloc["segment"].astype(str)).to_numpy()
    missing = sorted({lab for lab in labels if lab not in cell_pos})
    if missing:
        raise ScenarioMismatch(
            f"the allocation lends into {len(missing)} cell(s) the scenario set of case "
            f"{case.name!r} does not have: {missing[:5]} (the case's eligibility changed, e.g. "
            "a stress excluded a product or segment); evaluate on a set whose case keeps these "
            "cells, or re-optimise for the new case"
        )
    j = np.array([cell_pos[lab] for lab in labels], dtype=np.int64)
    s = alloc["source"].map(src_pos).to_numpy(dtype=np.int64)
    n_cells, n_src, n_fund = len(cells), len(case.sources), len(case.funds)
    lending = np.zeros((n_cells, n_src))
    np.add.at(lending, (j, s), alloc["amount_usd"].to_numpy(dtype=np.float64))
    covered = np.zeros((n_fund, n_cells, n_src))
    for fund_id, col in cover_cols.items():
        if fund_id in fund_pos:
            np.add.at(covered[fund_pos[fund_id]], (j, s), alloc[col].to_numpy(dtype=np.float64))
    capital = np.zeros((n_src, n_fund))
    np.add.at(
        capital,
        (
            guar["source"].map(src_pos).to_numpy(dtype=np.int64),
            guar["fund"].map(fund_pos).to_numpy(dtype=np.int64),
        ),
        guar["capital_usd"].to_numpy(dtype=np.float64),
    )
    ta = allocation.sources.set_index("source")["ta_usd"]
    ta_usd = np.array([float(ta.get(src.id, 0.0)) for src in case.sources])
    return Holdings(lending, covered, capital, ta_usd)


def _known(what: str, ids: set, known: dict[str, int], case: Case) -> None:
    unknown = sorted(str(i) for i in ids if i not in known)
    if unknown:
        raise OptionError(
            f"the allocation names {what}(s) {unknown} that case {case.name!r} does not have "
            f"(it has {sorted(known)}); evaluate with the case the allocation was made for or "
            "a stress overlay of it"
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
