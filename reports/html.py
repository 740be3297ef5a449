"""Render a :class:`ReportContext` to one self-contained HTML document.

Everything the page needs is inline: the stylesheet is included into a ``<style>`` element and
the charts are inline SVG, so the file opens offline and WeasyPrint fetches nothing. Every string
that reaches the page goes through Jinja2's autoescaping; the only markup marked safe is the SVG
our own chart functions produce (matplotlib escapes the text inside it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from reports import analysis_tables, charts, risk_tables, tables
from reports.context import ReportContext
from reports.formats import format_value, money_m, percent

__all__ = ["TEMPLATES", "environment", "render_html"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> Environment:
    """The Jinja2 environment: autoescaping on for everything, undefined names are errors."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2", "xml"), default_for_string=True, default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money_m"] = money_m
    env.filters["percent"] = percent
    env.filters["fmt"] = format_value
    env.filters["when"] = when
    return env


def when(moment: datetime) -> str:
    """A timestamp as ``2025-11-24 01:45:00 UTC`` (naive datetimes are printed as given)."""
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _inline(svg: str) -> Markup:
    """Our chart's SVG, minus the XML prolog and DOCTYPE (not allowed inside HTML)."""
    return Markup(svg[svg.index("<svg") :])


def _charts(ctx: ReportContext) -> dict[str, object]:
    out: dict[str, object] = {
        "capital_stack": charts.capital_stack_svg(
            ctx.capital_stack.amounts_usd, guarantee_funds=ctx.capital_stack.guarantee_funds
        ),
        "gap_region": charts.gap_closure_svg(ctx.gap_closure.segments, by="region"),
        "gap_chain": charts.gap_closure_svg(ctx.gap_closure.segments, by="value_chain"),
        "losses": [],
        "euler": [],
        "claims": [],
    }
    for f in ctx.funder_risks:
        out["losses"].append(
            charts.loss_distribution_svg(
                f.losses_usd,
                f.probabilities,
                f.el.in_sample_usd,
                f.var.in_sample_usd,
                f.cvar.in_sample_usd,
                f.cvar_limit_usd,
                f"{f.name}: scenario losses (in sample)",
                alpha=f.alpha,
            )
        )
        euler = None
        if f.euler_usd is not None and len(f.euler_usd):
            euler = charts.euler_svg(
                f.euler_usd, title=f"{f.name}: contributions to CVaR by {f.euler_by}"
            )
        out["euler"].append(euler)
    for g in ctx.guarantee_funds:
        out["claims"].append(
            charts.claims_distribution_svg(
                g.claims_usd, g.probabilities, g.capital_usd, f"{g.name}: claims (in sample)"
            )
        )
    if ctx.frontier is not None:
        fr = ctx.frontier
        x, label = fr.x, fr.x_label
        if fr.x_format.value.startswith("usd_m"):
            x = fr.x / 1e6
        elif fr.x_format.value.startswith("pct"):
            x = fr.x * 100
        out["frontier"] = charts.frontier_svg(x, fr.gap_usd, label, fr.failed_mask)
    if ctx.sensitivity is not None:
        se = ctx.sensitivity
        out["tornado"] = charts.tornado_svg(se.labels, se.low_delta_usd, se.high_delta_usd)
    return {
        k: [None if s is None else _inline(s) for s in v] if isinstance(v, list) else _inline(v)
        for k, v in out.items()
    }


def _tables(ctx: ReportContext) -> dict[str, object]:
    t: dict[str, object] = {
        "capital_stack": tables.capital_stack_table(ctx.capital_stack),
        "gap_region": tables.gap_table(ctx.gap_closure, "region"),
        "gap_chain": tables.gap_table(ctx.gap_closure, "value_chain"),
        "funders": [risk_tables.funder_table(f) for f in ctx.funder_risks],
        "reproducibility": tables.reproducibility_table(ctx.reproducibility),
    }
    if ctx.guarantee_funds:
        t["funds"] = risk_tables.funds_table(ctx.guarantee_funds)
    if ctx.frontier is not None:
        t["frontier"] = analysis_tables.frontier_table(ctx.frontier)
    if ctx.sensitivity is not None:
        t["sensitivity"] = analysis_tables.sensitivity_table(ctx.sensitivity)
    if ctx.shadow_prices:
        t["shadow"] = analysis_tables.shadow_table(ctx.shadow_prices)
    if ctx.stress_tests:
        t["stress"] = analysis_tables.stress_table(ctx.stress_tests)
    if ctx.assumptions:
        t["assumptions"] = tables.assumptions_table(ctx)
    return t


def render_html(context: ReportContext) -> str:
    """The full report as an HTML document (UTF-8 text, no external resources)."""
    if not isinstance(context, ReportContext):
        raise TypeError(f"render_html needs a ReportContext, got {type(context).__name__}")
    template = environment().get_template("report.html.j2")
    return template.render(
        ctx=context,
        sections=context.present_sections(),
        charts=_charts(context),
        tables=_tables(context),
    )
