"""The report's analysis tables: frontier points, sensitivity, marginal values, stress tests.

Built from the analysis sections (:mod:`reports.analysis_sections`). The frontier's, the
sensitivity's and the stress tests' gap is the weighted unmet gap, the optimizer's objective,
said so in their headers and notes (:data:`WEIGHTED_GAP`, :data:`WEIGHTED_GAP_NOTE`). HTML and
Excel show the same tables (:func:`reports.tables.report_tables`).
"""

from __future__ import annotations

import pandas as pd

from reports.analysis_sections import Frontier, Sensitivity, ShadowPrice, StressResult
from reports.formats import ColumnFormat as F
from reports.formats import Table

__all__ = ["frontier_table", "sensitivity_table", "shadow_table", "stress_table"]

WEIGHTED_GAP = "Weighted unmet gap (US$ m)"
WEIGHTED_GAP_NOTE = (
    "Weighted unmet gap: the optimizer's objective, each segment's unmet credit gap times "
    "1 + priority × deforestation pressure; it is not the plain credit gap in US$ (the headline "
    "figures), which it exceeds where forest is at risk."
)


def frontier_table(fr: Frontier) -> Table:
    """The frontier's points: swept value, optimal weighted unmet gap, whether each solved.

    The gap is US$ shown in US$ millions (NaN where the point failed); ``Status`` is "solved" or
    "failed: " and the reason.
    """
    frame = pd.DataFrame(
        {
            fr.x_label: fr.x,
            WEIGHTED_GAP: fr.gap_usd,
            "Status": ["solved" if not r else f"failed: {r}" for r in fr.failure_reasons],
        }
    )
    return Table(
        frame,
        {fr.x_label: fr.x_format, WEIGHTED_GAP: F.USD_M},
        caption="Efficient frontier points",
        note=WEIGHTED_GAP_NOTE,
        sheet="Frontier",
    )


def sensitivity_table(se: Sensitivity) -> Table:
    """Change of the optimal weighted unmet gap when each input is set low and high.

    Changes are US$ shown in US$ millions, NaN where the point has no solution. The low and high
    settings and the notes are columns only when the sensitivity has them.
    """
    data: dict[str, object] = {"Input": list(se.labels)}
    if se.low_settings:
        data["Low setting"] = list(se.low_settings)
    data["Weighted gap change, low (US$ m)"] = se.low_delta_usd
    if se.high_settings:
        data["High setting"] = list(se.high_settings)
    data["Weighted gap change, high (US$ m)"] = se.high_delta_usd
    if any(se.notes):
        data["Note"] = list(se.notes)
    formats = {
        "Weighted gap change, low (US$ m)": F.USD_M,
        "Weighted gap change, high (US$ m)": F.USD_M,
    }
    return Table(
        pd.DataFrame(data),
        formats,
        caption="Sensitivity of the optimal weighted unmet gap",
        note="Positive: more of the gap stays unmet than in the base case; — where the point "
        f"has no solution (see the note). {WEIGHTED_GAP_NOTE}",
        sheet="Sensitivity",
    )


def shadow_table(prices: tuple[ShadowPrice, ...]) -> Table:
    """What relaxing each binding limit buys, one row per limit.

    With LP duals only, the weighted gap each relaxation closes by the dual. When any marginal value
    was re-solved: the weighted and credit gap closed, the weighted gap opened by the step back, the
    LP dual and "yes" where the dual disagrees. Money is US$, shown in US$ millions.
    """
    if not any(p.resolved_gain_usd is not None for p in prices):
        frame = pd.DataFrame(
            {
                "Constraint": [p.constraint for p in prices],
                "Relaxation": [p.relaxation for p in prices],
                "Weighted gap closed, LP dual (US$ m)": [p.gap_closed_usd for p in prices],
            }
        )
        return Table(
            frame,
            {"Weighted gap closed, LP dual (US$ m)": F.USD_M},
            caption="Shadow prices of binding limits (LP duals)",
            sheet="Shadow prices",
        )
    money = {
        "Weighted gap closed (US$ m)": [p.resolved_gain_usd for p in prices],
        "Credit gap closed (US$ m)": [p.resolved_gain_gap_usd for p in prices],
        "Weighted gap opened, step back (US$ m)": [p.resolved_loss_usd for p in prices],
        "LP dual (US$ m)": [p.gap_closed_usd for p in prices],
    }
    frame = pd.DataFrame(
        {
            "Constraint": [p.constraint for p in prices],
            "Relaxation": [p.relaxation for p in prices],
            **money,
            "Dual disagrees": ["yes" if p.dual_disagrees else "" for p in prices],
        }
    ).astype({c: float for c in money})
    return Table(
        frame,
        dict.fromkeys(money, F.USD_M),
        caption="Marginal values of binding limits, re-solved on the same scenarios (the LP "
        "dual alongside; 'yes' where it disagrees: a degenerate vertex)",
        sheet="Marginal values",
    )


def stress_table(stresses: tuple[StressResult, ...]) -> Table:
    """One row per stress test: the gap closed and left by what the stressed case can still
    fund, the weighted gap given up against the base, and the limits held and breached.

    Money is US$ shown in US$ millions; "Limits held" reads "k of n", "Limits breached" names
    them with their size ("none" when every limit held).
    """
    given_up = "Weighted gap given up (US$ m)"
    closed = "Gap closed (US$ m)"
    frame = pd.DataFrame(
        {
            "Stress": [s.name for s in stresses],
            "Description": [s.description for s in stresses],
            closed: [s.gap_closed_usd for s in stresses],
            WEIGHTED_GAP: [s.unmet_gap_usd for s in stresses],
            given_up: [s.gap_given_up_usd for s in stresses],
            "Limits held": [
                f"{len(s.limits_held) - len(s.breached)} of {len(s.limits_held)}" for s in stresses
            ],
            "Limits breached": [
                "; ".join(s.breach_notes or s.breached) or "none" for s in stresses
            ],
        }
    ).astype({WEIGHTED_GAP: float, closed: float, given_up: float})
    return Table(
        frame,
        {WEIGHTED_GAP: F.USD_M, closed: F.USD_M, given_up: F.USD_M},
        caption="Stress tests of the allocation",
        sheet="Stress tests",
    )
