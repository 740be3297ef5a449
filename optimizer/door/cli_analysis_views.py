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
    limits, summary = report.limits, report.summary.set_index("stress_id")
    reopt = None if report.reoptimized is None else report.reoptimized.set_index("stress_id")
    table = Table(
        title="Stress tests (US$ m)",
        caption="What the stressed case can still fund of the allocation (less money or "
        "uptake scales it down): gap closed, unmet gap, weighted gap given up beyond the "
        "base; risk limits broken, the largest in US$ m and in standard errors (SE). Every "
        "column is in stress_summary.csv.",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("stress", no_wrap=True, overflow="ellipsis", max_width=18)
    for col in ("closed", "unmet", "given up", "broken", "largest", "SE"):
        table.add_column(col, justify="right", no_wrap=True)
    for sid, r in summary.iterrows():
        add_row(
            table,
            str(r["name"]),
            usd_m(r.gap_closed_usd),
            usd_m(r.unmet_gap_usd),
            "" if sid == "base" else usd_m_signed(r.gap_given_up_usd),
            f"{r.breaches}/{r.limits_checked}",
            f"{r.largest_breach_usd / 1e6:,.1f}" if r.breaches else "—",
            f"{r.largest_breach_in_se:,.1f}" if r.breaches else "",
        )
    console.print(table)
    if reopt is not None:
        again = Table(
            title="Re-optimised under each stress (US$ m)",
            caption="The optimal weighted gap of the stressed case on the same scenarios, and "
            "how much more of it stays unmet than in the base case re-optimised.",
            box=box.SIMPLE_HEAD,
        )
        again.add_column("stress", no_wrap=True, overflow="ellipsis", max_width=30)
        again.add_column("weighted gap", justify="right", no_wrap=True)
        again.add_column("gives up", justify="right", no_wrap=True)
        add_row(again, "Base case", usd_m(report.base_weighted_gap_usd), "")
        for _, r in reopt.iterrows():
            if r.status in ("optimal", "optimal_inaccurate"):
                add_row(
                    again, str(r["name"]), usd_m(r.weighted_gap_usd), usd_m_signed(r.gives_up_usd)
                )
            else:
                add_row(again, str(r["name"]), str(r.status), "")
        console.print(again)
    breached = limits[~limits["held"]]
    if breached.empty:
        console.print("[green]Every limit holds under every stress.[/]")
    else:
        grid = Table(title="Limits breached (US$ m or probability)", box=box.SIMPLE_HEAD)
        for n, col in enumerate(("stress", "limit", "value", "limit", "excess", "in SE")):
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
                f"{r.excess_in_se:,.1f}",
            )
        console.print(grid)
    if report.reverse is not None:
        print_reverse(console, report.reverse)
    if reopt is not None:
        for sid, r in reopt[reopt["reason"] != ""].iterrows():
            console.print(
                f"[yellow]{escape(str(sid))}:[/] {escape(str(r.reason))}", highlight=False
            )


def print_reverse(console: Console, reverse) -> None:
    """The reverse stress, one row per binding limit: the PD multiplier and each event's
    probability at which it breaks ("holds" to x3 or probability 1; "breached" already)."""
    if reverse.empty:
        console.print("Reverse stress: the allocation binds on no risk limit.")
        return
    drivers = list(dict.fromkeys(zip(reverse["driver"], reverse["event"], strict=True)))
    table = Table(
        title="Reverse stress: the smallest setting that breaks each binding limit",
        caption="PD: every base PD times this (base x1). An event: its probability (base in "
        "the heading), the base's scenarios re-weighted.",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("limit", overflow="fold")
    base = reverse.drop_duplicates(["driver", "event"]).set_index(["driver", "event"])
    for driver, event in drivers:
        q0 = base.at[(driver, event), "base_setting"]
        head = "PD x" if driver == "pd_multiplier" else f"{event.replace('_', ' ')} ({q0:.0%})"
        table.add_column(head, justify="right", overflow="fold", min_width=6)
    for (owner, what), rows in reverse.groupby(["owner", "what"], sort=False):
        by = rows.set_index(["driver", "event"])
        cells = [f"{owner} {what}"]
        for key in drivers:
            r = by.loc[key]
            if r.status != "breaks":
                cells.append(str(r.status))
            elif key[0] == "pd_multiplier":
                cells.append(f"x{r.breaks_at:.2f}")
            else:
                cells.append(f"{r.breaks_at:.1%}")
        add_row(table, *cells)
    console.print(table)
