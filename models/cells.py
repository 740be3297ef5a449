"""Cells: the (loan product, segment) pairs a case allows. The columns of every loss matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.schema import Case, LoanProduct, Segment

PD_CAP = 0.999
"""No cell's probability of default exceeds this, whatever multipliers stack up."""

CELL_COLUMNS = (
    "cell",
    "product",
    "segment",
    "region",
    "value_chain",
    "pd",
    "lgd_mean",
    "lgd_sd",
    "rate",
    "transaction_cost_rate",
    "ta_cost_rate",
    "avg_ticket_usd",
    "state_run",
    "remote",
    "deforestation_pressure",
)


def product_serves(product: LoanProduct, segment: Segment) -> bool:
    """Whether ``product`` may lend to ``segment`` (eligible chain, not excluded)."""
    if segment.id in product.excluded_segments:
        return False
    return product.eligible_chains is None or segment.value_chain in product.eligible_chains


def build_cells(case: Case) -> pd.DataFrame:
    """The eligible cells of a case, in a fixed order (products outer, segments inner).

    Returns
    -------
    DataFrame with one row per cell j (``RangeIndex`` 0..J-1) and columns :data:`CELL_COLUMNS`:
    ``cell`` is the label ``"PRODUCT|SEGMENT"``; ``pd`` is the unconditional annual PD before
    shock events: product base PD x segment multiplier x state-lender uplift, capped at
    :data:`PD_CAP`; ``transaction_cost_rate`` includes the remote uplift.
    """
    uplift = case.risk_model.state_lender_pd_uplift
    rows = []
    for product in case.products:
        for segment in case.segments:
            if not product_serves(product, segment):
                continue
            pd_ = product.base_pd * segment.pd_multiplier * (uplift if product.state_run else 1.0)
            cost = product.transaction_cost_rate * (
                1.0 + (product.remote_cost_uplift_share if segment.remote else 0.0)
            )
            rows.append(
                (
                    f"{product.id}|{segment.id}",
                    product.id,
                    segment.id,
                    segment.region,
                    segment.value_chain,
                    min(pd_, PD_CAP),
                    product.lgd_mean,
                    product.lgd_sd,
                    product.rate,
                    cost,
                    product.ta_cost_rate,
                    product.avg_ticket_usd,
                    product.state_run,
                    segment.remote,
                    segment.deforestation_pressure,
                )
            )
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    frame["pd"] = frame["pd"].astype(np.float64)
    return frame
