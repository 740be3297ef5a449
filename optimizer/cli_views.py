"""Rich tables the CLI prints. Numbers come from :mod:`models.tables`; this only lays them out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from models import Case
from models.scenarios import ScenarioSet
from models.tables import (
    funds_frame,
    gap_by_region_and_chain,
    products_frame,
    sources_frame,
)
from models.text import printable


def _add_row(table: Table, *cells: str, style: str | None = None) -> None:
    """Add a row whose cells are plain text (ids and names are user input, never markup)."""
    table.add_row(*(Text(c) for c in cells), style=style)


def usd_m(value: float | None) -> str:
    """US$ as millions with one decimal: ``152.3``; blank for missing."""
    if value is None or pd.isna(value):
        return ""
    return f"{value / 1e6:,.1f}"


def pct(value: float | None, digits: int = 1) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{value:.{digits}%}"


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
        _add_row(table, str(region), *cells, style=style)
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
            _add_row(
                table,
                str(sid),
                kind,
                usd_m(row.amount_usd),
                pct(row.cost_of_funds_rate),
                row.finances,
                "; ".join(limits),
            )
        _add_row(
            table, f"total {kind}", "", usd_m(group.amount_usd.sum()), "", "", "", style="bold"
        )
    _add_row(table, "total", "", usd_m(src.amount_usd.sum()), "", "", "", style="bold")
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
            _add_row(
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
        _add_row(
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


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``advance(done, what=None)``: items done so far, and
    optionally what is being done now (replaces the label)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
    )
    label = escape(label)  # may hold user input (a sweep); the description is read as markup
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, what: str | None = None) -> None:
            if what:
                bar.update(task, completed=done, description=f"{label}: {escape(what)}")
            else:
                bar.update(task, completed=done)

        yield advance


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
        _add_row(table, *cells, style="bold" if name == "whole book" else None)
    console.print(table)


def _with_se(value: float, se: float) -> str:
    # value over its standard error: two short lines keep the table within 80 columns
    return f"{100 * value:.2f}\n±{100 * se:.2f}"


def print_allocation(console: Console, case: Case, result, oos=None) -> None:
    """Gap closed, money by kind, leverage, each funder's risk in and out of sample, binding;
    the result's warnings and solver fallbacks first, so none goes unseen."""
    for note in (*result.warnings, *(f"fallback: {f}" for f in result.fallbacks)):
        console.print(f"[yellow]Warning:[/] {escape(printable(str(note)))}", highlight=False)
    need = case.total_gap_usd
    console.print(
        f"[bold]{escape(case.name)}[/]: gap closed US${result.gap_closed_usd / 1e6:,.1f}m of "
        f"US${need / 1e6:,.1f}m ({result.gap_closed_share:.1%}); method {result.method}, "
        f"solver {result.solver} ({result.status}), {result.n_scenarios:,} scenarios",
        highlight=False,
    )
    src = result.sources
    kinds = src.groupby("kind")["committed_usd"].sum()
    conc = src.loc[src["concessional"], "committed_usd"].sum()
    private = src.loc[src["kind"] == "private", "lending_usd"].sum()
    console.print(
        "Money committed: "
        + ", ".join(f"{k} US${v / 1e6:,.1f}m" for k, v in kinds.items())
        + f"; private lending per concessional dollar {private / conc if conc else 0:.2f}",
        highlight=False,
    )
    funds = result.funds[result.funds["capital_usd"] > 0]
    if not funds.empty:
        console.print(
            "Guarantee leverage: "
            + ", ".join(
                f"{escape(str(r.fund))} {r.leverage_used:.1f}x of {r.leverage_cap:g}x"
                for r in funds.itertuples()
            ),
            highlight=False,
        )
    table = Table(title="Each funder's risk against its limit (US$ m)", box=box.SIMPLE_HEAD)
    for col in ("source", "committed", "EL", "CVaR", "limit", "CVaR oos ± se"):
        table.add_column(col, justify="left" if col == "source" else "right", no_wrap=True)
    oos_src = None if oos is None else oos.sources.set_index("source")
    for r in src[src["committed_usd"] > 0].itertuples():
        oos_cell = ""
        if oos_src is not None and r.source in oos_src.index:
            o = oos_src.loc[r.source]
            oos_cell = f"{o.cvar_usd / 1e6:,.2f} ± {o.cvar_se_usd / 1e6:,.2f}"
        limit = "" if pd.isna(r.cvar_limit_usd) else f"{r.cvar_limit_usd / 1e6:,.2f}"
        _add_row(table, r.source, f"{r.committed_usd / 1e6:,.1f}",
                 f"{r.expected_loss_usd / 1e6:,.2f}", f"{r.cvar_usd / 1e6:,.2f}", limit,
                 oos_cell)  # fmt: skip
    console.print(table)
    if oos is not None:
        if oos.breaches.empty:
            console.print(f"[green]Every limit holds out of sample[/] ({oos.n_scenarios:,} "
                          "independent scenarios).")  # fmt: skip
        else:
            for r in oos.breaches.itertuples():
                noise = "" if r.significant else " (within Monte Carlo noise)"
                by = f"US${r.excess / 1e6:,.2f}m" if r.unit == "US$" else f"{r.excess:.4f}"
                console.print(f"[yellow]Out of sample:[/] {escape(r.owner)} {escape(r.what)} "
                              f"exceeds its limit by {by}{noise}")  # fmt: skip
    from optimizer.marginal import has_marginal_values

    if getattr(result, "confidence", None) is not None:
        print_margins(console, result.confidence)
    from optimizer.solve import PROGRAMME_FAMILIES  # here: `ppcfin validate` needs no cvxpy

    if has_marginal_values(result):
        _print_marginal(console, result.binding)
        return
    binding = result.binding[result.binding["family"].isin(PROGRAMME_FAMILIES)]
    for r in binding[binding["shadow_price"] > 1e-6].head(8).itertuples():
        console.print(
            f"Binding: {escape(r.label)} — {escape(r.relaxation.replace('US$1 ', 'US$1m '))} "
            f"closes US${r.shadow_price:,.2f}m of weighted gap (LP dual)",
            highlight=False,
        )


def _print_marginal(console: Console, binding: pd.DataFrame) -> None:
    """Each lever's re-solved gain (weighted and plain credit gap), the dual only where it
    disagrees (a degenerate vertex)."""
    from optimizer.marginal import committee_lines

    lines = committee_lines(binding)
    for r in lines.head(8).itertuples():
        step = "" if pd.isna(r.step_rate) else f" (a step of {r.step_rate:.3g} in its rate)"
        if pd.isna(r.resolved_gain_usd):
            gain = f"could not be re-solved ({escape(r.marginal_note)})"
        else:
            gain = (f"closes US${r.resolved_gain_usd / 1e6:,.1f}m of weighted gap, "
                    f"US${r.resolved_gain_gap_usd / 1e6:,.1f}m of credit gap")  # fmt: skip
        loss = (
            ""
            if pd.isna(r.resolved_loss_usd)
            else f"; US$1m the other way opens US${r.resolved_loss_usd / 1e6:,.1f}m weighted"
        )
        flag = (f" [yellow]— the LP dual says US${r.dual_gain_usd / 1e6:,.1f}m: degenerate "
                "vertex, trust the re-solve[/]" if r.dual_disagrees else "")  # fmt: skip
        console.print(
            f"Binding: {escape(r.label)} — {escape(r.relaxation.replace('US$1 ', 'US$1m '))}"
            f"{step} {gain} (re-solved){loss}{flag}",
            highlight=False,
        )
    if len(lines) > 8:
        console.print(f"… and {len(lines) - 8} more levers in result.json (binding table)",
                      highlight=False)  # fmt: skip


def print_margins(console: Console, conf) -> None:
    """The margin each binding risk limit was held to (US$ m and SEs) and its cost in gap."""
    binding = conf.margins[conf.margins["binding"]]
    console.print(
        f"Limits held at {conf.confidence:.0%} confidence (z = {conf.z:.3f}; "
        f"{conf.solves} margined solve(s){'' if conf.converged else ', margins not yet stable'}"
        f"): {len(binding)} binding; cost US${conf.cost_weighted_gap_usd / 1e6:,.1f}m of "
        f"weighted gap, US${conf.cost_gap_closed_usd / 1e6:,.1f}m of gap closed",
        highlight=False,
    )
    if binding.empty:
        return
    table = Table(title="Confidence margins on binding limits (US$ m)", box=box.SIMPLE_HEAD)
    for col in ("owner", "limit", "value", "se", "margin", "margin in se"):
        table.add_column(col, justify="left" if col == "owner" else "right", no_wrap=True)
    for r in binding.itertuples():
        _add_row(table, f"{r.owner} {r.what}", f"{r.limit_usd / 1e6:,.2f}",
                 f"{r.value_usd / 1e6:,.2f}", f"{r.std_error_usd / 1e6:,.3f}",
                 f"{r.margin_usd / 1e6:,.3f}", f"{r.margin_in_se:.2f}")  # fmt: skip
    console.print(table)


def print_replications(console: Console, reps) -> None:
    """``gap closed US$ X m +- Y m (R replications)`` and the scenario-count advice."""
    for line in reps.headline().splitlines():
        console.print(escape(line), highlight=False, soft_wrap=True)  # one line, grep-able


def _usd_m_signed(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value / 1e6:+,.1f}"


def print_sensitivity(console: Console, sens) -> None:
    """The tornado as a table: each input's low/high setting and the change of the optimal
    weighted gap (US$ m), largest swing first; points without a solution say why."""
    console.print(
        f"[bold]{escape(sens.case_name)}[/]: optimal weighted gap US$"
        f"{sens.base_weighted_gap_usd / 1e6:,.1f}m (gap closed US$"
        f"{sens.base_gap_closed_usd / 1e6:,.1f}m); each input ±{sens.shock:.0%} in turn, "
        f"{sens.n_scenarios:,} scenarios, seed {sens.seed} (common random numbers)",
        highlight=False,
    )
    tornado = sens.tornado.sort_values("swing_usd", ascending=False, na_position="last")
    table = Table(
        title="Change of the optimal weighted gap, US$ m (positive = more gap left unmet)",
        box=box.SIMPLE_HEAD,
    )
    for col, justify in (("input", "left"), ("low", "left"), ("Δ low", "right"),
                         ("high", "left"), ("Δ high", "right")):  # fmt: skip
        table.add_column(col, justify=justify)
    for r in tornado.itertuples():
        _add_row(table, r.input, r.low_setting, _usd_m_signed(r.low_change_usd), r.high_setting,
                 _usd_m_signed(r.high_change_usd))  # fmt: skip
    console.print(table)
    for r in tornado[tornado["note"] != ""].itertuples():
        console.print(f"[yellow]{escape(r.input)}:[/] {escape(r.note)}", highlight=False)


def _limit_value(value: float, unit: str) -> str:
    return f"{value:.2%}" if unit == "probability" else f"{value / 1e6:,.2f}"


def print_stress(console: Console, report) -> None:
    """Per stress: limits breached, change of funders' expected losses and, when re-optimised,
    the gap given up; then every breach (value, limit, excess, whether beyond MC noise)."""
    console.print(
        f"[bold]{escape(report.case_name)}[/]: the allocation held fixed under "
        f"{len(report.outcomes)} stress(es), {report.n_scenarios:,} scenarios, seed "
        f"{report.seed} (common random numbers with the base case)",
        highlight=False,
    )
    limits, funders = report.limits, report.funders
    reopt = None if report.reoptimized is None else report.reoptimized.set_index("stress_id")
    table = Table(
        title="Stress tests (US$ m)",
        caption="Δ EL: change of the funders' expected losses. Re-optimised: the optimal "
        "weighted gap under the stress and how much more of it stays unmet.",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("stress", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("breached", justify="right", no_wrap=True, min_width=8)
    table.add_column("Δ EL", justify="right", no_wrap=True, min_width=7)
    if reopt is not None:
        table.add_column("re-optimised", justify="right", no_wrap=True, min_width=12)
        table.add_column("gives up", justify="right", no_wrap=True, min_width=9)
    for sid, name in [("base", "Base case")] + [(o.stress_id, o.name) for o in report.outcomes]:
        lim = limits[limits["stress_id"] == sid]
        el = funders.loc[funders["stress_id"] == sid, "expected_loss_change_usd"].sum()
        cells = [name, f"{int((~lim['held']).sum())} of {len(lim)}", f"{el / 1e6:+,.1f}"]
        if reopt is not None:
            if sid == "base":
                cells += [usd_m(report.base_weighted_gap_usd), ""]
            elif reopt.at[sid, "status"] in ("optimal", "optimal_inaccurate"):
                cells += [usd_m(reopt.at[sid, "weighted_gap_usd"]),
                          _usd_m_signed(reopt.at[sid, "gives_up_usd"])]  # fmt: skip
            else:
                cells += [str(reopt.at[sid, "status"]), ""]
        _add_row(table, *cells)
    console.print(table)
    breached = limits[~limits["held"]]
    if breached.empty:
        console.print("[green]Every limit holds under every stress.[/]")
    else:
        grid = Table(title="Limits breached (US$ m or probability)", box=box.SIMPLE_HEAD)
        for n, col in enumerate(("stress", "limit", "value", "limit", "excess")):
            grid.add_column(col, justify="left" if n < 2 else "right")
        for r in breached.itertuples():
            noise = "" if r.significant else " (noise)"
            _add_row(grid, r.stress_id, f"{r.owner} {r.what}", _limit_value(r.value, r.unit),
                     _limit_value(r.limit, r.unit), _limit_value(r.excess, r.unit) + noise)  # fmt: skip
        console.print(grid)
    if reopt is not None:
        for sid, r in reopt[reopt["reason"] != ""].iterrows():
            console.print(
                f"[yellow]{escape(str(sid))}:[/] {escape(str(r.reason))}", highlight=False
            )
