"""What ``frontier``, ``sensitivity`` and ``stress`` print: the swept optimum, the tornado,
the stress table and every breach."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optimizer.door.cli_widgets import add_row, shown, usd_m, usd_m_signed


def print_frontier(console: Console, err_console: Console, front, multiplier: bool) -> None:
    """The optimal gap at each point of the sweep (``x`` after a multiplier's value); each
    failed point's reason on ``err_console``."""
    from optimizer.choices import FAILED_STATUSES

    unit = "x" if multiplier else ""
    table = Table(
        title=f"Frontier: {escape(front.label)} ({front.method}, {front.workers} worker(s))"
    )
    for col in ("value", "weighted gap US$ m", "gap closed", "status"):
        table.add_column(col, justify="right")
    for r in front.table.itertuples():
        ok = r.status not in FAILED_STATUSES
        table.add_row(
            f"{r.value:.3g}{unit}",
            f"{r.weighted_gap_usd / 1e6:,.1f}" if ok else "—",
            f"{r.gap_closed_share:.1%}" if ok else "—",
            escape(str(r.status)),
        )
    console.print(table)
    for r in front.table.itertuples():
        if r.status in FAILED_STATUSES:
            err_console.print(f"  point {r.value:.3g}{unit}: {shown(r.reason)}", highlight=False)


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
    for col, justify in (
        ("input", "left"),
        ("low", "left"),
        ("Δ low", "right"),
        ("high", "left"),
        ("Δ high", "right"),
    ):
        table.add_column(col, justify=justify)
    for r in tornado.itertuples():
        add_row(
            table,
            r.input,
            r.low_setting,
            usd_m_signed(r.low_change_usd),
            r.high_setting,
            usd_m_signed(r.high_change_usd),
        )
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
                cells += [
                    usd_m(reopt.at[sid, "weighted_gap_usd"]),
                    usd_m_signed(reopt.at[sid, "gives_up_usd"]),
                ]
            else:
                cells += [str(reopt.at[sid, "status"]), ""]
        add_row(table, *cells)
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
            add_row(
                grid,
                r.stress_id,
                f"{r.owner} {r.what}",
                _limit_value(r.value, r.unit),
                _limit_value(r.limit, r.unit),
                _limit_value(r.excess, r.unit) + noise,
            )
        console.print(grid)
    if reopt is not None:
        for sid, r in reopt[reopt["reason"] != ""].iterrows():
            console.print(
                f"[yellow]{escape(str(sid))}:[/] {escape(str(r.reason))}", highlight=False
            )
