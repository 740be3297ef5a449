"""The tables of an :class:`~optimizer.result.Allocation`, read from a solved allocation problem.

:func:`build_tables` turns the optimal variables (:class:`Solution`, US$) into the allocation
by source × product × segment, the guarantees, the gap closed per segment, region and value
chain, each source's committed money and risk against its limits, each fund's capital and
depletion, and each CVaR-limited source's Euler contributions. Risk figures are recomputed from
the scenario losses at the optimum with :mod:`models.risk_measures`, never read back from the
solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.risk_measures import (
    conditional_value_at_risk,
    expected_loss,
    tail_weights,
    value_at_risk,
)
from optimizer.formulation.attribution import Attribution, attribute_losses
from optimizer.formulation.claims import cell_contributions, fund_table
from optimizer.saved_columns import EULER_FUND_PARTS

if TYPE_CHECKING:
    from optimizer.formulation.problem import AllocationProblem

FUND_COLUMNS = [
    "fund",
    "structure",
    "capital_usd",
    "capital_cap_usd",
    "guaranteed_usd",
    "leverage_used",
    "leverage_cap",
    "expected_claims_usd",
    "claims_cvar_usd",
    "depletion_probability",
    "depletion_se",
    "max_depletion_probability",
    "expected_unpaid_usd",
]
REPORT_ALPHA = 0.99
"""VaR/CVaR level shown for sources that have no CVaR limit of their own."""


@dataclass(frozen=True)
class Solution:
    """Optimal decision variables in US$, indexed as ``AllocationProblem.elig``.

    Attributes
    ----------
    x, c, t, z : ndarray of shapes (n_x,), (n_c,), (n_t,), (n_z,)
        Lending, fund capital, technical assistance and guarantee cover.
    """

    x: np.ndarray
    c: np.ndarray
    t: np.ndarray
    z: np.ndarray


def build_tables(prob: AllocationProblem, sol: Solution) -> dict[str, Any]:
    """Every table and gap figure of :class:`Allocation` (all but binding and solver facts),
    and the hash of the case they belong to."""
    case, scen, e = prob.case, prob.scenarios, prob.elig
    cells = scen.cells
    n_src, n_fund, n_cells = len(case.sources), len(case.funds), len(cells)
    lending = np.zeros((n_cells, n_src))
    np.add.at(lending, (e.x_cell, e.x_source), sol.x)
    covered = np.zeros((n_fund, n_cells, n_src))
    np.add.at(covered, (e.z_fund, e.z_cell, e.z_source), sol.z)
    losses, p = scen.losses, np.asarray(scen.probabilities, dtype=np.float64)
    capital = np.zeros((n_src, n_fund))
    np.add.at(capital, (e.c_source, e.c_fund), sol.c)
    att = attribute_losses(case, prob.claims, losses, lending, covered, capital)

    out: dict[str, Any] = {"allocation": _allocation(prob, sol, covered)}
    out["case_sha256"] = case.content_sha256
    out["guarantees"] = pd.DataFrame(
        {
            "source": [case.sources[s].id for s in e.c_source],
            "fund": [case.funds[g].id for g in e.c_fund],
            "capital_usd": sol.c,
        }
    )
    out.update(gap_tables(prob.case, prob.scenarios.cells, lending.sum(axis=1)))
    out["sources"] = _sources(prob, sol, lending, att, p)
    out["funds"] = _funds(prob, sol, covered, p, att.claims)
    out["euler"] = _euler(prob, lending, covered, att, p)
    return out


def _allocation(prob: AllocationProblem, sol: Solution, covered: np.ndarray) -> pd.DataFrame:
    case, e, cells = prob.case, prob.elig, prob.scenarios.cells
    cover_x = np.zeros((len(case.funds), e.x_source.size))
    np.add.at(cover_x, (e.z_fund, e.z_x), sol.z)
    mean_loss = prob.mean_loss_rate
    frame = pd.DataFrame(
        {
            "source": [case.sources[s].id for s in e.x_source],
            "kind": [str(case.sources[s].kind) for s in e.x_source],
            "product": cells["product"].to_numpy()[e.x_cell],
            "segment": cells["segment"].to_numpy()[e.x_cell],
            "region": cells["region"].to_numpy()[e.x_cell],
            "value_chain": cells["value_chain"].to_numpy()[e.x_cell],
            "pd": cells["pd"].to_numpy()[e.x_cell],
            "amount_usd": sol.x,
            "covered_usd": cover_x.sum(axis=0),
        }
    )
    for g, fund in enumerate(case.funds):
        frame[f"covered_usd_{fund.id}"] = cover_x[g]
    frame["expected_loss_usd"] = mean_loss[e.x_cell] * sol.x
    return frame[frame["amount_usd"] > 0].reset_index(drop=True)


def gap_tables(case: Any, cells: pd.DataFrame, credit_by_cell: np.ndarray) -> dict[str, Any]:
    """The segments, regions and chains tables and the gap figures of credit laid on cells.

    Parameters
    ----------
    case : Case
    cells : DataFrame
        The scenario set's cells (one row per cell, with its ``segment``).
    credit_by_cell : ndarray of shape (n_cells,)
        Lending per cell, US$ (every source's).

    Returns
    -------
    dict
        ``segments``, ``regions``, ``chains`` (DataFrames) and ``weighted_gap_usd``,
        ``unmet_gap_usd``, ``gap_closed_usd``, ``gap_closed_share``. Credit beyond a
        segment's gap closes nothing.
    """
    from optimizer.formulation.problem import segment_weights

    credit = pd.Series(credit_by_cell).groupby(cells["segment"].to_numpy()).sum()
    seg = pd.DataFrame(
        {
            "segment": [s.id for s in case.segments],
            "region": [s.region for s in case.segments],
            "value_chain": [s.value_chain for s in case.segments],
            "households": [s.households for s in case.segments],
            "need_usd": [s.need_usd for s in case.segments],
            "supply_usd": [s.supply_usd for s in case.segments],
            "gap_usd": [s.gap_usd for s in case.segments],
            "deforestation_pressure": [s.deforestation_pressure for s in case.segments],
            "weight": segment_weights(case),
        }
    )
    # The solver may overshoot a gap by its tolerance; credit beyond the gap closes nothing.
    seg["credit_usd"] = np.minimum(seg["segment"].map(credit).fillna(0.0), seg["gap_usd"])
    seg["unmet_usd"] = seg["gap_usd"] - seg["credit_usd"]
    seg["weighted_unmet_usd"] = seg["weight"] * seg["unmet_usd"]
    per_usd = np.array([s.households_per_usd for s in case.segments])
    seg["households_reached"] = per_usd * seg["credit_usd"].to_numpy()

    def closed(frame: pd.DataFrame) -> pd.DataFrame:
        gap = frame["gap_usd"].to_numpy()
        frame["share_closed"] = np.divide(
            frame["credit_usd"].to_numpy(), gap, out=np.full(gap.shape, np.nan), where=gap > 0
        )
        return frame

    sums = ["households", "need_usd", "supply_usd", "gap_usd", "credit_usd", "unmet_usd"]
    sums += ["weighted_unmet_usd", "households_reached"]
    regions = closed(seg.groupby("region", sort=False)[sums].sum().reset_index())
    chains = closed(seg.groupby("value_chain", sort=False)[sums].sum().reset_index())
    total_gap = float(seg["gap_usd"].sum())
    closed_usd = float(seg["credit_usd"].sum())
    return {
        "segments": closed(seg),
        "regions": regions,
        "chains": chains,
        "weighted_gap_usd": float(seg["weighted_unmet_usd"].sum()),
        "unmet_gap_usd": float(seg["unmet_usd"].sum()),
        "gap_closed_usd": closed_usd,
        "gap_closed_share": closed_usd / total_gap if total_gap > 0 else math.nan,
    }


def _sources(prob, sol, lending, att: Attribution, p) -> pd.DataFrame:
    case, e = prob.case, prob.elig
    ta = np.bincount(e.t_source, sol.t, minlength=len(case.sources))
    return _frame(source_rows(case, lending.sum(axis=0), att, ta, p))


def cvar_limit_usd(src: Any, committed_usd: float) -> float:
    """A source's CVaR limit in US$: its own, or its share of what it commits (lending plus
    guarantee capital); NaN without one."""
    if src.cvar_limit_usd is not None:
        return float(src.cvar_limit_usd)
    if src.cvar_limit_share is not None:
        return float(src.cvar_limit_share) * committed_usd
    return math.nan


def source_rows(
    case: Any,
    lend: np.ndarray,
    att: Attribution,
    ta: np.ndarray,
    p: np.ndarray,
    *,
    var_se: bool = False,
) -> list[dict[str, Any]]:
    """One row per source of the sources table: money, expected loss (and how much of it is
    on lending and on fund capital), VaR and CVaR of all its losses (with standard errors)
    and the CVaR limit with its headroom, US$.

    Parameters
    ----------
    case : Case
    lend, ta : ndarray of shape (n_sources,)
        Lending and technical assistance per source, US$.
    att : Attribution
        Each source's losses per scenario on lending and on fund capital, US$ (its
        ``fund_capital`` gives the guarantee capital per source).
    p : ndarray of shape (n_scenarios,)
        Scenario probabilities.
    var_se : bool, default False
        Also a ``var_se_usd`` column after ``var_usd`` (the evaluation's table has it; the
        result's does not).
    """
    capital = att.fund_capital.sum(axis=1)
    src_losses = att.total
    el = expected_loss(src_losses, p)
    el_lending, el_capital = p @ att.lending, p @ att.capital
    rows = []
    for s, src in enumerate(case.sources):
        alpha = src.cvar_alpha or REPORT_ALPHA
        var = value_at_risk(src_losses[:, s], alpha, p)
        cvar = conditional_value_at_risk(src_losses[:, s], alpha, p)
        limit = cvar_limit_usd(src, lend[s] + capital[s])
        rows.append(
            {
                "source": src.id,
                "kind": str(src.kind),
                "concessional": src.is_concessional,
                "amount_usd": src.amount_usd,
                "committed_usd": lend[s] + capital[s] + ta[s],
                "lending_usd": lend[s],
                "capital_usd": capital[s],
                "ta_usd": ta[s],
                "unused_usd": max(src.amount_usd - lend[s] - capital[s] - ta[s], 0.0),
                "expected_loss_usd": el.value[s],
                "expected_loss_se_usd": el.std_error[s],
                "expected_loss_lending_usd": float(el_lending[s]),
                "expected_loss_capital_usd": float(el_capital[s]),
                "el_rate": el.value[s] / at_risk
                if (at_risk := lend[s] + capital[s]) > 0
                else math.nan,
                "el_limit_rate": _nan(src.expected_loss_limit_rate),
                "cvar_alpha": alpha,
                "var_usd": var.value,
                **({"var_se_usd": var.std_error} if var_se else {}),
                "cvar_usd": cvar.value,
                "cvar_se_usd": cvar.std_error,
                "cvar_limit_usd": limit,
                "cvar_headroom_usd": limit - cvar.value,
            }
        )
    return rows


def _funds(prob, sol, covered, p, fund_losses) -> pd.DataFrame:
    capital = np.bincount(prob.elig.c_fund, sol.c, minlength=len(prob.case.funds))
    frame = fund_table(prob.case, capital, covered, fund_losses, p)
    return frame if not frame.empty else _frame([], FUND_COLUMNS)


def _euler(prob, lending, covered, att: Attribution, p) -> pd.DataFrame:
    case, cells = prob.case, prob.scenarios.cells
    total = att.total
    parts = []
    for s, src in enumerate(case.sources):
        if src.cvar_alpha is None or not (lending[:, s].any() or att.fund_capital[s].any()):
            continue
        w = tail_weights(total[:, s], src.cvar_alpha, p)
        contrib = cell_contributions(
            prob.scenarios.losses, prob.claims, w, lending[:, s], covered[:, :, s]
        )
        used = np.flatnonzero(lending[:, s] > 0)
        product = list(cells["product"].to_numpy()[used])
        segment = list(cells["segment"].to_numpy()[used])
        values = list(contrib[used])
        # what the tail loses beyond its lending cells: claims a fund could not pay back, and
        # the fund capital it put up, one row per fund (the rows still add up to the CVaR)
        tail = np.flatnonzero(w)
        on_capital = w[tail] @ att.capital_by_fund(tail)[:, s, :]
        for g, fund in enumerate(case.funds):
            rows, back = att.returned[g]
            unpaid = float(w[rows] @ back[:, s]) if rows.size else 0.0
            for label, value in zip(EULER_FUND_PARTS, (on_capital[g], unpaid), strict=True):
                if value != 0.0:
                    product.append(fund.id)
                    segment.append(label)
                    values.append(float(value))
        values = np.asarray(values, dtype=float)
        parts.append(
            pd.DataFrame(
                {
                    "source": src.id,
                    "product": product,
                    "segment": segment,
                    "contribution_usd": values,
                    "share_of_cvar": values / values.sum() if values.sum() else np.nan,
                }
            )
        )
    if parts:
        return pd.concat(parts, ignore_index=True)
    return _frame([], ["source", "product", "segment", "contribution_usd", "share_of_cvar"])


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    """Rows as a frame; an empty one still has its columns, numeric where not text."""
    if rows or columns is None:
        return pd.DataFrame(rows)
    text = {"source", "fund", "product", "segment", "structure"}
    return pd.DataFrame({c: pd.Series(dtype=object if c in text else float) for c in columns})


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
