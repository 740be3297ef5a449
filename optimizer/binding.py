"""Which constraint rows bind at a stage-1 solution, and their shadow prices in gap units."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.formulation.problem import USD_PER_UNIT, AllocationProblem

BINDING_SLACK_USD_M = 1e-6
"""A row is binding when its slack is within US$1 (plus 1e-7 of its right-hand side)..."""
ACTIVE_USD_M = 1e-7
"""...and its activity exceeds US$0.10, so ``0 <= 0`` rows of unused options are not listed."""
PRICE_TOL = 1e-9

PROGRAMME_FAMILIES = (
    "budget",
    "cvar_limit",
    "expected_loss_limit",
    "fund_depletion",
    "fund_capital_cap",
    "leverage",
    "return_hurdle",
    "senior_cap",
    "mobilization",
    "climate_earmark",
    "segment_share",
    "region_share",
    "product_share",
    "technical_assistance",
    "min_deploy",
    "climate_earmark_usd",
    "min_gap_closed",
    "min_households",
)
"""Constraint families worth a sentence (per-cell rows are too many to read)."""


def binding_constraints(prob: AllocationProblem) -> pd.DataFrame:
    """Binding rows of the stage-1 solution with their shadow prices.

    Returns
    -------
    DataFrame with columns ``family, subject, label, relaxation, slack_usd, shadow_price``.
    ``shadow_price`` is the weighted-gap US$ closed per US$ of relaxation of the row (the
    dual of ``lhs <= rhs`` at stage 1, >= 0), e.g. for ``budget`` of a source: US$1m more of
    its money closes ``shadow_price`` US$m of weighted gap.
    """
    rows = []
    for fam in prob.families:
        slack = fam.slack()
        rhs = np.abs(np.atleast_1d(np.asarray(fam.constraint.args[1].value, dtype=float)))
        rhs = np.broadcast_to(rhs, slack.shape)
        dual = fam.constraint.dual_value
        price = np.zeros(slack.shape) if dual is None else np.atleast_1d(np.asarray(dual))
        active = np.abs(np.atleast_1d(np.asarray(fam.activity.value, dtype=float)))
        tight = slack <= BINDING_SLACK_USD_M + 1e-7 * rhs
        keep = (tight & (active > ACTIVE_USD_M)) | (np.abs(price) > PRICE_TOL)
        for i in np.flatnonzero(keep):
            rows.append(
                (
                    fam.name,
                    fam.subjects[i],
                    fam.labels[i],
                    fam.relaxations[i],
                    float(max(slack[i], 0.0) * USD_PER_UNIT),
                    float(max(price[i], 0.0)),
                )
            )
    frame = pd.DataFrame(
        rows, columns=["family", "subject", "label", "relaxation", "slack_usd", "shadow_price"]
    )
    return frame.sort_values("shadow_price", ascending=False, kind="stable").reset_index(drop=True)
