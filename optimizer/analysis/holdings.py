"""A fixed allocation laid on a scenario set's cells, and the part of it a case can fund.

:func:`holdings_of` puts an allocation's tables back on the cells of a scenario set (by their
``PRODUCT|SEGMENT`` labels). :func:`fundable` applies the documented rule by which a stressed
case that has less money, lower guarantee uptake or lower fund caps than the allocation uses
keeps only what it can still fund, so that a stress that removes money shows up in losses and
in unmet gap rather than as a breach of the budget it removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.errors import OptionError
from models.schema import Case
from optimizer.errors import ScenarioMismatch
from optimizer.formulation.attribution import Attribution, attribute_losses
from optimizer.formulation.exposures import FundClaims
from optimizer.result import Allocation


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


FUNDABLE_COLUMNS = ("source", "used_usd", "amount_usd", "kept_share", "withdrawn_usd")
COVER_COLUMNS = ("fund", "covered_usd", "kept_usd", "withdrawn_usd", "why")


@dataclass(frozen=True, eq=False)
class Fundable:
    """What a case can fund of fixed holdings (:func:`fundable`).

    Attributes
    ----------
    holdings : Holdings
        The holdings kept, US$.
    money : DataFrame
        One row per source that had to give up money, columns :data:`FUNDABLE_COLUMNS`:
        what the holdings used of it (lending, fund capital, TA), its amount in the case, the
        share kept and the US$ withdrawn.
    cover : DataFrame
        One row per fund whose cover fell, columns :data:`COVER_COLUMNS`: cover before and
        after, and why (``money``, ``leverage``, ``uptake``).
    lending_withdrawn_usd : float
        Lending given up in all (money scaled away, and must-cover lending whose cover went).
    """

    holdings: Holdings
    money: pd.DataFrame
    cover: pd.DataFrame
    lending_withdrawn_usd: float

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames

    def totals(self) -> dict[str, float]:
        """US$ withdrawn in all: ``money_withdrawn_usd``, ``cover_withdrawn_usd``,
        ``lending_withdrawn_usd`` (the :class:`~optimizer.analysis.evaluate.Evaluation`
        fields)."""
        return {
            "money_withdrawn_usd": float(self.money["withdrawn_usd"].sum()),
            "cover_withdrawn_usd": float(self.cover["withdrawn_usd"].sum()),
            "lending_withdrawn_usd": self.lending_withdrawn_usd,
        }


def fundable(case: Case, holdings: Holdings, cells: pd.DataFrame) -> Fundable:
    """The part of fixed holdings that ``case``'s money, fund caps and uptake can fund.

    The rule, applied in this order:

    1. **Money.** A source whose ``amount_usd`` is below what the holdings use of it
       (lending, fund capital and technical assistance) keeps the same share of each use:
       all of them are scaled by ``amount / used`` (its cover goes with its lending).
    2. **Fund capital.** A fund whose capital passes its ``capital_cap_usd`` has every
       provider's capital scaled down to the cap.
    3. **Leverage.** A fund guaranteeing more than ``leverage_cap`` times its (remaining)
       capital has its cover scaled down, pro rata over the loans it covers.
    4. **Uptake.** Cover of a loan above the fund's ``uptake_share`` of that loan's lending
       is withdrawn: lenders put no more under cover.
    5. **Must-cover lending.** Lending that must be covered (the cell's PD above the lender's
       ``max_pd_unguaranteed``) is cut to the most that stays fully covered within every
       fund's uptake share of it (none, when the shares of the funds covering it add up to
       less than 1), its cover with it. Other lending keeps its amount uncovered, so the
       lender bears the loss the fund no longer takes.

    An unchanged case keeps every holding exactly (the rule only ever scales down).

    Parameters
    ----------
    case : Case
        The (stressed) case whose money and funds apply.
    holdings : Holdings
        The allocation on ``cells``.
    cells : DataFrame
        The scenario set's cells (``pd`` per cell).

    Returns
    -------
    Fundable
    """
    lending, covered = holdings.lending.copy(), holdings.covered.copy()
    capital, ta = holdings.capital.copy(), holdings.ta.copy()
    before_cover = covered.sum(axis=(1, 2))
    why: dict[int, list[str]] = {}

    money_rows = []
    used = lending.sum(axis=0) + capital.sum(axis=1) + ta
    for s, src in enumerate(case.sources):
        if used[s] > src.amount_usd * (1 + 1e-12) and used[s] > 0:
            keep = src.amount_usd / used[s]
            lending[:, s] *= keep
            covered[:, :, s] *= keep
            capital[s] *= keep
            ta[s] *= keep
            money_rows.append((src.id, used[s], src.amount_usd, keep, used[s] - src.amount_usd))
    scaled = covered.sum(axis=(1, 2))
    for g in np.flatnonzero(scaled < before_cover):
        why.setdefault(int(g), []).append("money")

    for g, fund in enumerate(case.funds):
        fund_capital = capital[:, g].sum()
        if fund.capital_cap_usd is not None and fund_capital > fund.capital_cap_usd > 0:
            capital[:, g] *= fund.capital_cap_usd / fund_capital
            fund_capital = fund.capital_cap_usd
        guaranteed = covered[g].sum()
        room = fund.leverage_cap * fund_capital
        if guaranteed > room * (1 + 1e-12):
            covered[g] *= room / guaranteed
            why.setdefault(g, []).append("leverage")
        allowed = np.minimum(covered[g], fund.uptake_share * lending)
        if allowed.sum() < covered[g].sum() * (1 - 1e-12):
            why.setdefault(g, []).append("uptake")
        covered[g] = allowed

    _cut_must_cover(case, cells, lending, covered)
    lending_withdrawn = max(float(holdings.lending.sum() - lending.sum()), 0.0)

    after = covered.sum(axis=(1, 2))
    cover_rows = [
        (case.funds[g].id, before_cover[g], after[g], before_cover[g] - after[g], ", ".join(w))
        for g, w in sorted(why.items())
    ]
    return Fundable(
        holdings=Holdings(lending, covered, capital, ta),
        money=pd.DataFrame(money_rows, columns=list(FUNDABLE_COLUMNS)),
        cover=pd.DataFrame(cover_rows, columns=list(COVER_COLUMNS)),
        lending_withdrawn_usd=lending_withdrawn,
    )


def _cut_must_cover(
    case: Case, cells: pd.DataFrame, lending: np.ndarray, covered: np.ndarray
) -> None:
    """Rule 5 of :func:`fundable`, in place: the largest lending ``x <= held`` of each
    must-cover position with ``x <= Σ_g min(z_g, u_g·x)`` (the LP's must-cover and uptake
    rows), then cover ``min(z_g, u_g·x)`` scaled to at most ``x``."""
    must = _must_cover(case, cells)
    if not must.any():
        return
    uptake = np.array([f.uptake_share for f in case.funds])[:, None]
    z = covered[:, must]  # (n_funds, n_must)
    x = lending[must]
    # the largest fixed point of the concave x -> min(held, Σ_g min(z_g, u_g x)): from above
    for _ in range(200):
        nxt = np.minimum(x, np.minimum(z, uptake * x).sum(axis=0))
        if np.allclose(nxt, x, rtol=1e-13, atol=1e-9):
            break
        x = nxt
    x = np.where((uptake * (z > 0)).sum(axis=0) < 1.0 - 1e-12, 0.0, x)
    z = np.minimum(z, uptake * x)
    total = z.sum(axis=0)
    z *= np.divide(x, total, out=np.ones_like(x), where=total > x)
    lending[must], covered[:, must] = x, z


def _must_cover(case: Case, cells: pd.DataFrame) -> np.ndarray:
    """(n_cells, n_sources) bool: lending there must be fully covered (PD above the lender's
    ``max_pd_unguaranteed``), as in :func:`optimizer.formulation.eligibility.eligibility`."""
    pd_ = cells["pd"].to_numpy(dtype=np.float64)
    limit = np.array(
        [np.inf if s.max_pd_unguaranteed is None else s.max_pd_unguaranteed for s in case.sources]
    )
    return pd_[:, None] > limit[None, :]
