"""The report's tables, built from a :class:`ReportContext`; HTML and Excel show the same ones."""

from __future__ import annotations

import pandas as pd

from reports.charts import aggregate_gap
from reports.context import (
    CapitalStack,
    ExecutiveSummary,
    Frontier,
    FunderRisk,
    GapClosure,
    GuaranteeFundRisk,
    ReportContext,
    Reproducibility,
    RiskEstimate,
    Sensitivity,
    ShadowPrice,
    StressResult,
)
from reports.formats import ColumnFormat as F
from reports.formats import Table

__all__ = ["report_tables"]

# A risk figure within this of its limit counts as holding: a binding CVaR limit sits on it.
_LIMIT_TOLERANCE_USD = 1.0


WEIGHTED_GAP = "Weighted unmet gap (US$ m)"
WEIGHTED_GAP_NOTE = (
    "Weighted unmet gap: the optimizer's objective, each segment's unmet credit gap times "
    "1 + priority × deforestation pressure; it is not the plain credit gap in US$ (the headline "
    "figures), which it exceeds where forest is at risk."
)


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


def _status(values: list[float | None], limit: float | None) -> str:
    if limit is None:
        return "no limit"
    checked = [v for v in values if v is not None]
    held = all(v <= limit + _LIMIT_TOLERANCE_USD for v in checked)
    return "holds" if held else "breached"


def funder_frame(f: FunderRisk) -> pd.DataFrame:
    """One funder's risk figures against its limits, unformatted.

    Returns
    -------
    DataFrame of shape (3, 7), or (5, 7) for a funder with losses on fund capital
        Rows expected loss, VaR and CVaR at ``f.alpha``; after the expected loss, for a capital
        provider, its parts on lending and on fund capital (in sample, no limit). Columns ``Measure``; the in- and
        out-of-sample estimates and their Monte Carlo standard errors, US$ (the headers' "US$ m"
        is how they are shown; NaN where not evaluated); ``Limit (US$ m)``, US$ (NaN for VaR and
        where there is none); and ``Status``: "holds" when every evaluated estimate is at most
        US$ 1 above the limit, else "breached", or "no limit".
    """
    level = f"{f.alpha:.1%}".replace(".0%", "%")
    rows = []
    measures: list[tuple[str, RiskEstimate, float | None]] = [
        ("Expected loss", f.el, f.el_limit_usd)
    ]
    if f.el_on_capital_usd > 0:
        lending = f.el.in_sample_usd - f.el_on_capital_usd
        measures += [
            ("  of it on lending", RiskEstimate(lending, None, None, None), None),
            ("  of it on fund capital", RiskEstimate(f.el_on_capital_usd, None, None, None), None),
        ]
    measures += [(f"VaR {level}", f.var, None), (f"CVaR {level}", f.cvar, f.cvar_limit_usd)]
    for measure, est, limit in measures:
        rows.append(
            {
                "Measure": measure,
                "In sample (US$ m)": est.in_sample_usd,
                "± s.e. in": est.in_sample_se_usd,
                "Out of sample (US$ m)": est.out_of_sample_usd,
                "± s.e. out": est.out_of_sample_se_usd,
                "Limit (US$ m)": limit,
                "Status": (
                    ""
                    if measure.startswith("  of it")
                    else _status([est.in_sample_usd, est.out_of_sample_usd], limit)
                ),
            }
        )
    return pd.DataFrame(rows).astype({c: float for c in list(rows[0])[1:6]})


_RISK_FORMATS = {
    "In sample (US$ m)": F.USD_M2,
    "± s.e. in": F.USD_M2,
    "Out of sample (US$ m)": F.USD_M2,
    "± s.e. out": F.USD_M2,
    "Limit (US$ m)": F.USD_M2,
}


def funder_table(f: FunderRisk) -> Table:
    """One funder's risk against its limits (:func:`funder_frame`), formatted, with a note."""
    return Table(
        funder_frame(f),
        _RISK_FORMATS,
        caption=f"{f.name}: risk against limits",
        note="± s.e.: Monte Carlo standard error. A limit holds if it holds in and out of sample.",
    )


def funders_table(funders: tuple[FunderRisk, ...]) -> Table:
    """Every funder's risk figures in one table, ``Funder`` and ``Kind`` columns first."""
    parts = [funder_frame(f).assign(Funder=f.name, Kind=f.kind) for f in funders]
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[["Funder", "Kind", *frame.columns[:-2]]]
    return Table(frame, _RISK_FORMATS, caption="Risk per funder", sheet="Risk per funder")


def funds_table(funds: tuple[GuaranteeFundRisk, ...]) -> Table:
    """Capital, guaranteed volume, leverage and depletion probability of each guarantee fund.

    ``Status`` is "holds" when the probability of depletion, in sample and (if evaluated) out of
    sample, is at most the fund's maximum and its leverage at most its cap, else "breached". Money
    is US$ shown in US$ millions; probabilities are fractions.
    """
    rows = []
    for g in funds:
        probs = [g.depletion_probability, g.depletion_probability_oos]
        held = all(p <= g.max_depletion_probability + 1e-12 for p in probs if p is not None)
        lev_ok = g.leverage_used <= g.leverage_cap + 1e-9 if g.capital_usd > 0 else True
        rows.append(
            {
                "Fund": g.name,
                "Capital (US$ m)": g.capital_usd,
                "Guaranteed (US$ m)": g.guaranteed_usd,
                "Leverage used": g.leverage_used,
                "Leverage cap": g.leverage_cap,
                "P(depletion) in sample": probs[0],
                "P(depletion) out of sample": probs[1],
                "Max P(depletion)": g.max_depletion_probability,
                "Status": "holds" if held and lev_ok else "breached",
            }
        )
    frame = pd.DataFrame(rows).astype({"P(depletion) out of sample": float})
    formats = {
        "Capital (US$ m)": F.USD_M,
        "Guaranteed (US$ m)": F.USD_M,
        "Leverage used": F.RATIO,
        "Leverage cap": F.RATIO,
        "P(depletion) in sample": F.PCT2,
        "P(depletion) out of sample": F.PCT2,
        "Max P(depletion)": F.PCT2,
    }
    return Table(
        frame,
        formats,
        caption="Guarantee funds: capital, use and depletion risk",
        note="P(depletion) = probability that a year's claims exceed the fund's capital.",
        sheet="Guarantee funds",
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
