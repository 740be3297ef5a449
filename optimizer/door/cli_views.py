"""What ``validate`` and ``simulate`` print: the case's summary and its reference book's losses.

Numbers come from :mod:`models.tables` and :mod:`models.book`; this only lays them out.
"""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models import Case
from models.scenarios import ScenarioSet
from models.tables import (
    funds_frame,
    gap_by_region_and_chain,
    products_frame,
    sources_frame,
)
from optimizer.door.cli_widgets import add_row, pct, usd_m


def print_case_summary(console: Console, case: Case) -> None:
    """Header, gap by region x value chain, funders by kind, guarantee funds, loan products."""
    title = case.name + (f"  [stress: {case.stress.name}]" if case.stress else "")
    console.print(f"[bold]{escape(title)}[/]", highlight=False)
    sha = case.content_sha256[:12] if case.content_sha256 else "-"
    console.print(
        # the path is the user's: "[/]" in a folder name is text, not markup
        f"file {escape(str(case.source_file))}  sha256 {sha}"
        f"  segments {len(case.segments)}  households {case.total_households:,}"
        f"  need US${case.total_need_usd / 1e6:,.1f}m  credit gap US${case.total_gap_usd / 1e6:,.1f}m",
        highlight=False,
    )

    pivot = gap_by_region_and_chain(case)
    table = Table(title="Unmet credit gap by region and value chain (US$ m)", show_lines=False)
    table.add_column("region")
    for col in pivot.columns:
        table.add_column(escape(str(col)), justify="right")
    for region, row in pivot.iterrows():
        cells = ["" if v == 0 else usd_m(v) for v in row]
        style = "bold" if region == "total" else None
        add_row(table, str(region), *cells, style=style)
    console.print(table)

    src = sources_frame(case)
    table = Table(title="Finance sources by kind (US$ m)")
    for col, justify in [
        ("source", "left"),
        ("kind", "left"),
        ("amount", "right"),
        ("cost", "right"),
        ("finances", "left"),
        ("risk limits", "left"),
    ]:
        table.add_column(col, justify=justify)
    for kind, group in src.groupby("kind", sort=False):
        for sid, row in group.iterrows():
            limits = [row.cvar_limit] if row.cvar_limit else []
            if pd.notna(row.expected_loss_limit_rate):
                limits.append(f"EL <= {row.expected_loss_limit_rate:.1%}")
            if pd.notna(row.return_hurdle_rate):
                limits.append(f"hurdle {row.return_hurdle_rate:.1%}")
            add_row(
                table,
                str(sid),
                kind,
                usd_m(row.amount_usd),
                pct(row.cost_of_funds_rate),
                row.finances,
                "; ".join(limits),
            )
        add_row(table, f"total {kind}", "", usd_m(group.amount_usd.sum()), "", "", "", style="bold")
    add_row(table, "total", "", usd_m(src.amount_usd.sum()), "", "", "", style="bold")
    console.print(table)

    funds = funds_frame(case)
    if not funds.empty:
        table = Table(title="Guarantee funds")
        for col in [
            "fund",
            "structure",
            "coverage",
            "leverage cap",
            "fee",
            "max depletion P",
            "uptake",
            "capital cap US$ m",
            "products",
            "contingent on",
        ]:
            table.add_column(col)
        for fid, row in funds.iterrows():
            cover = pct(row.coverage_ratio, 0)
            if pd.notna(row.first_loss_cap_share):
                cover += f" of first {row.first_loss_cap_share:.0%}"
            add_row(
                table,
                str(fid),
                row.structure,
                cover,
                f"{row.leverage_cap:g}x",
                pct(row.fee_rate),
                pct(row.max_depletion_probability),
                pct(row.uptake_share, 0),
                usd_m(row.capital_cap_usd),
                row.eligible_products,
                row.contingent_on,
            )
        console.print(table)

    prods = products_frame(case)
    table = Table(title="Loan products")
    for col in ["product", "rate", "tenor (m)", "ticket US$", "base PD", "LGD", "cost", "chains"]:
        table.add_column(col)
    for pid, row in prods.iterrows():
        add_row(
            table,
            str(pid),
            pct(row.rate),
            str(row.tenor_months),
            f"{row.avg_ticket_usd:,.0f}",
            pct(row.base_pd),
            pct(row.lgd_mean, 0),
            pct(row.transaction_cost_rate),
            row.eligible_chains,
        )
    console.print(table)
    console.print("[green]The case is valid.[/]")


def print_book_losses(
    console: Console, case: Case, scen: ScenarioSet, table_frame: pd.DataFrame
) -> None:
    """Loss rates of the reference book (each segment's gap, split over its products)."""
    console.print(
        f"[bold]{escape(case.name)}[/]: {scen.n_scenarios:,} scenarios x {scen.n_cells} cells, "
        f"method {scen.method}, seed {scen.seed}, effective sample size "
        f"{scen.effective_sample_size:,.0f}",
        highlight=False,
    )
    levels = sorted(
        {c.split("_")[1] for c in table_frame.columns if c.startswith("var_")}, key=float
    )
    table = Table(
        title="Annual loss rate of the reference book, % of exposure ± standard error",
        caption="Reference book: each segment's unmet gap (US$ m shown), split equally over "
        "its products.",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("value chain\nUS$ m", max_width=12, overflow="fold")
    table.add_column("EL", justify="right", no_wrap=True)
    for q in levels:
        table.add_column(f"VaR\n{100 * float(q):g}", justify="right", no_wrap=True)
        table.add_column(f"CVaR\n{100 * float(q):g}", justify="right", no_wrap=True)
    for name, row in table_frame.iterrows():
        cells = [f"{name}\n{row.exposure_usd / 1e6:,.0f}", _with_se(row.el_rate, row.el_se)]
        for q in levels:
            cells += [
                _with_se(row[f"var_{q}"], row[f"var_{q}_se"]),
                _with_se(row[f"cvar_{q}"], row[f"cvar_{q}_se"]),
            ]
        add_row(table, *cells, style="bold" if name == "whole book" else None)
    console.print(table)


def _with_se(value: float, se: float) -> str:
    # value over its standard error: two short lines keep the table within 80 columns
    return f"{100 * value:.2f}\n±{100 * se:.2f}"
