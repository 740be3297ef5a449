"""Risk of a reference loan book, before any optimisation: what ``ppcfin simulate`` prints.

The reference book lends each segment its whole unmet gap, split equally across the products
that may serve it. Its loss rates per value chain and for the whole book show what the scenario
set implies, independent of any allocation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.risk_measures import (
    conditional_value_at_risk,
    expected_loss,
    value_at_risk,
)
from models.scenarios import ScenarioSet
from models.schema import Case

DEFAULT_LEVELS = (0.95, 0.99, 0.995)


def reference_book_weights(case: Case, cells: pd.DataFrame) -> np.ndarray:
    """Dollar share of each cell in the reference book.

    Returns
    -------
    ndarray of shape (n_cells,)
        Non-negative, summing to 1 (all zero if the case has no gap).
    """
    gap = cells["segment"].map({s.id: s.gap_usd for s in case.segments}).to_numpy(float)
    products_per_segment = cells.groupby("segment")["product"].transform("count").to_numpy()
    amount = gap / products_per_segment
    total = amount.sum()
    return amount / total if total > 0 else amount


def book_loss_table(
    case: Case, scenarios: ScenarioSet, levels: tuple[float, ...] = DEFAULT_LEVELS
) -> pd.DataFrame:
    """Loss rates of the reference book per value chain and in total.

    Returns
    -------
    DataFrame indexed by value chain (plus ``"whole book"``) with columns ``exposure_usd``,
    ``el_rate``, ``el_se`` and, for each level q, ``var_<q>``, ``var_<q>_se``, ``cvar_<q>``,
    ``cvar_<q>_se`` — all as loss per dollar of the book (fractions).
    """
    cells = scenarios.cells
    weights = reference_book_weights(case, cells)
    total_gap = case.total_gap_usd
    groups = {c.id: cells["value_chain"].to_numpy() == c.id for c in case.value_chains}
    groups = {k: v for k, v in groups.items() if v.any()}
    groups["whole book"] = np.ones(len(cells), dtype=bool)

    columns = np.zeros((len(groups), len(cells)))
    for row, mask in enumerate(groups.values()):
        share = np.where(mask, weights, 0.0)
        columns[row] = share / share.sum() if share.sum() > 0 else share
    # (S, G) loss rates of each group, one pass over the loss matrix
    rates = scenarios.losses @ columns.T
    probs = scenarios.probabilities
    el = expected_loss(rates, probs)
    frame = pd.DataFrame(index=pd.Index(list(groups), name="value_chain"))
    frame["exposure_usd"] = [float((weights * m).sum() * total_gap) for m in groups.values()]
    frame["el_rate"], frame["el_se"] = np.atleast_1d(el.value), np.atleast_1d(el.std_error)
    for q in levels:
        var = value_at_risk(rates, q, probs)
        cvar = conditional_value_at_risk(rates, q, probs)
        tag = f"{q:g}"
        frame[f"var_{tag}"], frame[f"var_{tag}_se"] = var.value, var.std_error
        frame[f"cvar_{tag}"], frame[f"cvar_{tag}_se"] = cvar.value, cvar.std_error
    return frame
