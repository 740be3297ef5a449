"""What ``optimize`` and ``run`` print: the allocation, its risk against every limit, the
binding limits' marginal values, the confidence margins and the replications' error bar."""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models import Case
from optimizer.door.cli_widgets import add_row, shown


def print_allocation(console: Console, case: Case, result, oos=None) -> None:
    """Gap closed, money by kind, leverage, each funder's risk in and out of sample, binding;
    the result's warnings and solver fallbacks first, so none goes unseen."""
    for note in (*result.warnings, *(f"fallback: {f}" for f in result.fallbacks)):
        console.print(f"[yellow]Warning:[/] {shown(note)}", highlight=False)
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
    for col in ("source", "committed", "EL", "of it on funds", "CVaR", "limit", "CVaR oos ± se"):
        table.add_column(col, justify="left" if col == "source" else "right", no_wrap=True)
    oos_src = None if oos is None else oos.sources.set_index("source")
    for r in src[src["committed_usd"] > 0].itertuples():
        oos_cell = ""
        if oos_src is not None and r.source in oos_src.index:
            o = oos_src.loc[r.source]
            oos_cell = f"{o.cvar_usd / 1e6:,.2f} ± {o.cvar_se_usd / 1e6:,.2f}"
        limit = "" if pd.isna(r.cvar_limit_usd) else f"{r.cvar_limit_usd / 1e6:,.2f}"
        add_row(
            table,
            r.source,
            f"{r.committed_usd / 1e6:,.1f}",
            f"{r.expected_loss_usd / 1e6:,.2f}",
            _on_funds(r),
            f"{r.cvar_usd / 1e6:,.2f}",
            limit,
            oos_cell,
        )
    console.print(table)
    if oos is not None:
        if oos.breaches.empty:
            console.print(
                f"[green]Every limit holds out of sample[/] ({oos.n_scenarios:,} "
                "independent scenarios)."
            )
        else:
            for r in oos.breaches.itertuples():
                noise = "" if r.significant else " (within Monte Carlo noise)"
                by = f"US${r.excess / 1e6:,.2f}m" if r.unit == "US$" else f"{r.excess:.4f}"
                console.print(
                    f"[yellow]Out of sample:[/] {escape(r.owner)} {escape(r.what)} "
                    f"exceeds its limit by {by}{noise}"
                )
    from optimizer.analysis.marginal import has_marginal_values

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
    from optimizer.analysis.marginal import committee_lines

    lines = committee_lines(binding)
    for r in lines.head(8).itertuples():
        step = "" if pd.isna(r.step_rate) else f" (a step of {r.step_rate:.3g} in its rate)"
        if pd.isna(r.resolved_gain_usd):
            gain = f"could not be re-solved ({escape(r.marginal_note)})"
        else:
            gain = (
                f"closes US${r.resolved_gain_usd / 1e6:,.1f}m of weighted gap, "
                f"US${r.resolved_gain_gap_usd / 1e6:,.1f}m of credit gap"
            )
        loss = (
            ""
            if pd.isna(r.resolved_loss_usd)
            else f"; US$1m the other way opens US${r.resolved_loss_usd / 1e6:,.1f}m weighted"
        )
        flag = (
            f" [yellow]— the LP dual says US${r.dual_gain_usd / 1e6:,.1f}m: degenerate "
            "vertex, trust the re-solve[/]"
            if r.dual_disagrees
            else ""
        )
        console.print(
            f"Binding: {escape(r.label)} — {escape(r.relaxation.replace('US$1 ', 'US$1m '))}"
            f"{step} {gain} (re-solved){loss}{flag}",
            highlight=False,
        )
    if len(lines) > 8:
        console.print(
            f"… and {len(lines) - 8} more levers in result.json (binding table)", highlight=False
        )


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
        add_row(
            table,
            f"{r.owner} {r.what}",
            f"{r.limit_usd / 1e6:,.2f}",
            f"{r.value_usd / 1e6:,.2f}",
            f"{r.std_error_usd / 1e6:,.3f}",
            f"{r.margin_usd / 1e6:,.3f}",
            f"{r.margin_in_se:.2f}",
        )
    console.print(table)


def print_replications(console: Console, reps) -> None:
    """``gap closed US$ X m +- Y m (R replications)`` and the scenario-count advice."""
    for line in reps.headline().splitlines():
        console.print(escape(line), highlight=False, soft_wrap=True)  # one line, grep-able


def _on_funds(row) -> str:
    """The part of a funder's expected loss on fund capital, blank when it has none (or the
    saved table predates the split)."""
    value = getattr(row, "expected_loss_capital_usd", None)
    return "" if value is None or pd.isna(value) or value <= 0 else f"{value / 1e6:,.2f}"
