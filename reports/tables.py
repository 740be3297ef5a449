"""The report's tables, built from a :class:`ReportContext`; HTML and Excel show the same ones.

This module holds the tables of the sections every report has (summary, capital stack, gap
closure, assumptions, reproducibility) and :func:`report_tables`, every table by sheet name;
the risk tables are in :mod:`reports.risk_tables`, the analyses' in
:mod:`reports.analysis_tables`.
"""

from __future__ import annotations

import pandas as pd

from reports.analysis_tables import frontier_table, sensitivity_table, shadow_table, stress_table
from reports.charts import aggregate_gap
from reports.context import (
    CapitalStack,
    ExecutiveSummary,
    GapClosure,
    ReportContext,
    Reproducibility,
)
from reports.formats import ColumnFormat as F
from reports.formats import Table
from reports.risk_tables import funders_table, funds_table

__all__ = ["report_tables"]


def summary_table(s: ExecutiveSummary) -> Table:
    """The executive summary's key figures: one row per figure, with its value and unit.

    Unmet need, gap closed (US$ and share of need), its Monte Carlo error when replications were
    run, remaining gap, money committed per source kind, and private US$ per concessional US$.
    Values stay in their units (full US$, not millions; shares as fractions).
    """
    rows = [
        ("Unmet credit need before the programme", s.unmet_need_usd, "US$"),
        ("Gap closed", s.gap_closed_usd, "US$"),
        ("Gap closed, share of need", s.gap_closed_share, "share"),
        *(
            (("Gap closed, Monte Carlo error (SD over replications)", s.gap_closed_se_usd, "US$"),)
            if s.gap_closed_se_usd is not None
            else ()
        ),
        ("Remaining gap", s.remaining_gap_usd, "US$"),
        *((f"Committed: {kind}", v, "US$") for kind, v in s.money_by_kind_usd.items()),
        ("Private US$ per concessional US$", s.private_per_concessional, "US$ per US$"),
    ]
    frame = pd.DataFrame(rows, columns=["Figure", "Value", "Unit"])
    return Table(frame, {"Value": F.FLOAT}, caption="Key figures", sheet="Summary")


def capital_stack_table(cs: CapitalStack) -> Table:
    """US$ from each source (rows) into each instrument (columns), with totals.

    Instruments nobody funds are left out; a ``Total`` column and a ``Total`` row are added.
    Amounts are US$, shown in US$ millions; the note names the guarantee-fund columns.
    """
    amounts = cs.amounts_usd.apply(pd.to_numeric)
    amounts = amounts.loc[:, amounts.sum(axis=0) > 0]
    frame = amounts.copy()
    frame["Total"] = frame.sum(axis=1)
    frame.loc["Total"] = frame.sum(axis=0)
    frame = frame.rename_axis("Source").reset_index()
    frame.columns = [str(c) for c in frame.columns]
    formats = {c: F.USD_M for c in frame.columns if c != "Source"}
    funds = [g for g in cs.guarantee_funds if g in amounts.columns]
    note = (
        f"Guarantee funds: {', '.join(funds)}; the other columns are loan products."
        if funds
        else ""
    )
    return Table(
        frame,
        formats,
        caption="Committed by source and instrument (US$ m)",
        note=note,
        sheet="Capital stack",
    )


def gap_table(gc: GapClosure, by: str) -> Table:
    """Gap, credit, remaining gap, share closed and deforestation pressure per group.

    Parameters
    ----------
    gc : GapClosure
    by : {"region", "value_chain"}

    Returns
    -------
    Table
        One row per region or value chain, largest gap first (:func:`reports.charts.aggregate_gap`),
        then a ``Total`` row. Money is US$ shown in US$ millions; ``Closed`` is a share (NaN where
        there is no gap), the pressure gap-weighted (NaN on the total row).
    """
    g = aggregate_gap(gc.segments, by)
    label = "Region" if by == "region" else "Value chain"
    total_gap = g["gap_usd"].sum()
    frame = pd.DataFrame(
        {
            label: [str(i) for i in g.index] + ["Total"],
            "Gap (US$ m)": [*g["gap_usd"], total_gap],
            "Credit (US$ m)": [*g["credit_usd"], g["credit_usd"].sum()],
            "Remaining (US$ m)": [*g["remaining_usd"], g["remaining_usd"].sum()],
            "Closed": [
                *(g["credit_usd"] / g["gap_usd"].where(g["gap_usd"] > 0)),
                g["credit_usd"].sum() / total_gap if total_gap > 0 else float("nan"),
            ],
            "Deforestation pressure": [*g["deforestation_pressure"], float("nan")],
        }
    )
    formats = {
        "Gap (US$ m)": F.USD_M,
        "Credit (US$ m)": F.USD_M,
        "Remaining (US$ m)": F.USD_M,
        "Closed": F.PCT,
        "Deforestation pressure": F.FLOAT,
    }
    return Table(
        frame,
        formats,
        caption=f"Gap closure by {label.lower()}",
        note="Deforestation pressure is averaged over segments weighted by their gap.",
        sheet=f"Gap by {label.lower()}",
    )


def _assumption_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


def assumptions_table(ctx: ReportContext) -> Table:
    """The assumptions register: each case field's value, tag ([S], [D], [A], [U]) and source."""
    frame = pd.DataFrame(
        {
            "Field": [a.field for a in ctx.assumptions],
            "Value": [_assumption_value(a.value) for a in ctx.assumptions],
            "Tag": [a.tag for a in ctx.assumptions],
            "Source": [a.source for a in ctx.assumptions],
        }
    )
    return Table(
        frame,
        caption="Assumptions register",
        note="Tags: [S] sourced, [D] derived, [A] assumption, [U] unverified.",
        sheet="Assumptions",
    )


def reproducibility_table(r: Reproducibility) -> Table:
    """What it takes to get the same numbers again, one item per row.

    Case file and its SHA-256, seed, number of scenarios and method, solver and fallbacks, package
    versions and when the report was generated.
    """
    rows = [
        ("Case file", r.case_file),
        ("Case file SHA-256", r.case_sha256),
        ("Seed", str(r.seed)),
        ("Scenarios", f"{r.n_scenarios:,} ({r.scenario_method})"),
        ("Solver", r.solver),
        ("Solver fallbacks", "; ".join(r.solver_fallbacks) or "none"),
        *((f"Version: {k}", v) for k, v in r.package_versions.items()),
        ("Generated at", r.generated_at.isoformat(timespec="seconds")),
    ]
    return Table(
        pd.DataFrame(rows, columns=["Item", "Value"]),
        caption="Reproducibility",
        sheet="Reproducibility",
    )


def report_tables(ctx: ReportContext) -> dict[str, Table]:
    """Every table of the report by sheet name, in report order (for the Excel workbook)."""
    tables = [
        summary_table(ctx.summary),
        capital_stack_table(ctx.capital_stack),
        gap_table(ctx.gap_closure, "region"),
        gap_table(ctx.gap_closure, "value_chain"),
    ]
    if ctx.funder_risks:
        tables.append(funders_table(ctx.funder_risks))
    if ctx.guarantee_funds:
        tables.append(funds_table(ctx.guarantee_funds))
    if ctx.frontier is not None:
        tables.append(frontier_table(ctx.frontier))
    if ctx.sensitivity is not None:
        tables.append(sensitivity_table(ctx.sensitivity))
    if ctx.shadow_prices:
        tables.append(shadow_table(ctx.shadow_prices))
    if ctx.stress_tests:
        tables.append(stress_table(ctx.stress_tests))
    if ctx.assumptions:
        tables.append(assumptions_table(ctx))
    tables.append(reproducibility_table(ctx.reproducibility))
    return {t.sheet: t for t in tables}
