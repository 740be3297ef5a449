"""An independent reading of who bears the loss, for tests that rebuild losses from the tables.

Written from the rule, not from :mod:`optimizer.formulation.attribution`: a fund pays
``min(C, K)``; its capital layers (junior first, one layer of every provider by default) absorb
that pro rata within a layer; the excess ``(C − K)+`` goes back to the covered lenders pro rata
to their claims.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def bear_fund_losses(
    case,
    net: dict[str, np.ndarray],
    claims_by: dict[tuple[str, str], np.ndarray],
    guarantees: pd.DataFrame,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each source's lending loss (unpaid claims back) and its loss on fund capital.

    Parameters
    ----------
    net : dict source id -> (S,)
        Loss on lending net of every claim.
    claims_by : dict (fund id, source id) -> (S,)
        Each lender's claims on each fund.
    guarantees : DataFrame
        A result's guarantees table (``source, fund, capital_usd``).

    Returns
    -------
    lending, capital : dict source id -> (S,)
    """
    capital_by = guarantees.groupby(["source", "fund"])["capital_usd"].sum().to_dict()
    lending = {k: v.astype(float).copy() for k, v in net.items()}
    n = len(next(iter(net.values())))
    capital = {s.id: np.zeros(n) for s in case.sources}
    for fund in case.funds:
        mine = {s: c for (f, s), c in claims_by.items() if f == fund.id}
        total = sum(mine.values(), np.zeros(n))
        held = sum(c for (s, f), c in capital_by.items() if f == fund.id)
        paid = np.minimum(total, held)
        unpaid = total - paid
        with np.errstate(invalid="ignore", divide="ignore"):
            for s, c in mine.items():
                lending[s] += np.where(total > 0, unpaid * c / total, 0.0)
        layers = fund.capital_layers or (tuple(s.id for s in case.sources if fund.id in s.funds),)
        below = 0.0
        for layer in layers:
            size = sum(capital_by.get((s, fund.id), 0.0) for s in layer)
            if size <= 0:
                continue
            hit = np.clip(paid - below, 0.0, size)
            for s in layer:
                capital[s] += hit * capital_by.get((s, fund.id), 0.0) / size
            below += size
    return lending, capital
