"""The report's charts, each returned as deterministic SVG text sized for an A4 page.

This module holds the allocation charts and re-exports the risk charts of
:mod:`reports.risk_charts`, so ``reports.charts`` is the one place to find every chart.

Inputs are plain arrays and DataFrames; money comes in US$ (as everywhere in ppcfin) and is drawn
in US$ millions. Scenario distributions are weighted by their probabilities, never assumed equal.
Every function returns a complete SVG document (``str``) whose user-derived text matplotlib has
escaped; the same input gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from reports._svg import (
    GREY,
    OKABE_ITO,
    TOL_MUTED,
    legend_below,
    millions,
    minus,
    new_figure,
    row_height,
    set_title,
    svg_chart,
    wrap,
)
from reports.risk_charts import claims_distribution_svg, euler_svg, loss_distribution_svg

__all__ = [
    "capital_stack_svg",
    "claims_distribution_svg",
    "euler_svg",
    "frontier_svg",
    "gap_closure_svg",
    "loss_distribution_svg",
    "tornado_svg",
]

GAP_GROUPS = ("region", "value_chain")
_GAP_COLUMNS = ("gap_usd", "credit_usd", "deforestation_pressure")


def _numeric_frame(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ValueError(f"{what} must be a non-empty DataFrame")
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = [str(c) for c in values.columns if values[c].isna().any()]
    if bad:
        raise ValueError(f"{what} has missing or non-numeric values in columns {bad}")
    return values


@svg_chart("capital-stack")
def capital_stack_svg(
    frame: pd.DataFrame,
    *,
    guarantee_funds: Sequence[str] = (),
    title: str = "Capital stack: who funds which instrument",
) -> Figure:
    """Stacked horizontal bars: one bar per source, one segment per instrument.

    Parameters
    ----------
    frame : DataFrame of shape (n_sources, n_instruments)
        US$ from each source (index) into each loan product or guarantee fund (columns).
    guarantee_funds : sequence of str
        Column names that are guarantee funds; they are hatched to set them apart from loans.
    title : str
    """
    values = _numeric_frame(frame, "capital stack frame")
    if (values.to_numpy() < -1e-6).any():
        raise ValueError("capital stack amounts must be >= 0")
    values = values.clip(lower=0.0)
    used = [c for c in values.columns if values[c].sum() > 0]
    funds = {str(g) for g in guarantee_funds}
    sources = [wrap(s, 34) for s in values.index]
    fig = new_figure(row_height(sources, per_line=0.15, extra=1.7 + 0.12 * len(used)))
    ax = fig.add_subplot()
    y = np.arange(len(values))
    left = np.zeros(len(values))
    for i, col in enumerate(used):
        width = millions(values[col])
        hatch = "///" if str(col) in funds else ""
        ax.barh(
            y,
            width,
            left=left,
            color=TOL_MUTED[i % len(TOL_MUTED)],
            hatch=hatch,
            edgecolor="white",
            linewidth=0.4,
            label=wrap(col, 45),
            height=0.7,
        )
        left += width
    xmax = max(left.max(), 1e-9)
    for yi, total in zip(y, left, strict=True):
        ax.text(total + 0.01 * xmax, yi, f"{total:,.1f}", va="center", fontsize=7)
    ax.set_yticks(y, sources)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.1)
    ax.set_xlabel("Committed (US$ m)")
    set_title(fig, title)
    if used:
        legend_below(fig, ncol=2)
    return fig


def aggregate_gap(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Gap, credit and remaining gap per region or value chain, largest gap first.

    Parameters
    ----------
    frame : DataFrame
        One row per segment with columns ``by``, ``gap_usd`` (US$), ``credit_usd`` (US$) and
        ``deforestation_pressure`` (0..1), as for :func:`gap_closure_svg`.
    by : {"region", "value_chain"}

    Returns
    -------
    DataFrame of shape (n_groups, 4)
        Indexed by group, in descending ``gap_usd``, with columns ``gap_usd`` and ``credit_usd``
        (sums, US$; credit capped at the gap), ``remaining_usd`` (gap − credit, US$, >= 0) and
        ``deforestation_pressure`` (mean weighted by gap; the plain mean where a group has no gap).

    Raises
    ------
    ValueError
        If ``by`` is neither, a column is missing, or the frame is empty or has missing or
        non-numeric values.
    """
    if by not in GAP_GROUPS:
        raise ValueError(f"by must be one of {GAP_GROUPS}, got {by!r}")
    missing = [c for c in (by, *_GAP_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"gap frame lacks columns {missing}; it has {list(frame.columns)}")
    data = frame[[by, *_GAP_COLUMNS]].copy()
    _numeric_frame(data[list(_GAP_COLUMNS)], "gap frame")
    data["pressure_x_gap"] = data["deforestation_pressure"] * data["gap_usd"]
    g = data.groupby(by, sort=False).agg(
        gap_usd=("gap_usd", "sum"),
        credit_usd=("credit_usd", "sum"),
        pressure_x_gap=("pressure_x_gap", "sum"),
        pressure_mean=("deforestation_pressure", "mean"),
    )
    # Gap-weighted pressure: a region's priority is where its unmet credit is.
    weighted = g["pressure_x_gap"] / g["gap_usd"].where(g["gap_usd"] > 0)
    g["deforestation_pressure"] = weighted.fillna(g["pressure_mean"])
    g["credit_usd"] = np.minimum(g["credit_usd"], g["gap_usd"])
    g["remaining_usd"] = (g["gap_usd"] - g["credit_usd"]).clip(lower=0.0)
    return g.sort_values("gap_usd", ascending=False)[
        ["gap_usd", "credit_usd", "remaining_usd", "deforestation_pressure"]
    ]


@svg_chart("gap-closure")
def gap_closure_svg(frame: pd.DataFrame, by: str = "region", *, title: str | None = None) -> Figure:
    """Credit provided and remaining gap per region or value chain, with deforestation priority.

    Parameters
    ----------
    frame : DataFrame
        One row per segment (or per group) with columns ``region`` and/or ``value_chain``,
        ``gap_usd`` (unmet need before the programme, US$), ``credit_usd`` (credit the allocation
        provides, US$) and ``deforestation_pressure`` (0..1). Rows are summed per group; the
        pressure is averaged weighted by gap.
    by : {"region", "value_chain"}
    title : str, optional
    """
    g = aggregate_gap(frame, by)
    names = [wrap(s, 30) for s in g.index]
    fig = new_figure(row_height(names, per_line=0.16, extra=1.7))
    ax, axp = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [4.2, 1.0]})
    y = np.arange(len(g))
    credit, remaining = millions(g["credit_usd"]), millions(g["remaining_usd"])
    ax.barh(y, credit, color=OKABE_ITO["blue"], height=0.7, label="Credit provided")
    ax.barh(y, remaining, left=credit, color=GREY, height=0.7, label="Remaining gap")
    total = credit + remaining
    xmax = max(total.max(), 1e-9)
    share = np.divide(credit, total, out=np.zeros_like(credit), where=total > 0)
    for yi, t, s in zip(y, total, share, strict=True):
        ax.text(t + 0.01 * xmax, yi, f"{s:.0%} closed", va="center", fontsize=7)
    ax.set_xlim(0, xmax * 1.18)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("Credit gap (US$ m)")
    label = "region" if by == "region" else "value chain"
    set_title(fig, title or f"Gap closure by {label}")

    cmap = mpl.colormaps["Greens"]
    pressure = g["deforestation_pressure"].to_numpy(dtype=float)
    colours = cmap(0.25 + 0.75 * np.clip(pressure, 0, 1))
    axp.hlines(y, 0, pressure, color=GREY, linewidth=1.2)
    axp.scatter(
        pressure, y, c=colours, s=42, edgecolors=OKABE_ITO["black"], linewidths=0.5, zorder=3
    )
    axp.set_xlim(0, 1.05)
    axp.set_xticks([0, 0.5, 1])
    axp.set_xlabel("Deforestation\npressure (0–1)")
    axp.tick_params(axis="y", left=False)
    handles = [
        Patch(color=OKABE_ITO["blue"], label="Credit provided"),
        Patch(color=GREY, label="Remaining gap"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor=cmap(0.9),
            markeredgecolor=OKABE_ITO["black"],
            markersize=6,
            label="Deforestation pressure (darker = higher priority)",
        ),
    ]
    legend_below(fig, handles=handles)
    return fig


@svg_chart("frontier")
def frontier_svg(x, gap, xlabel: str, failed_mask, *, title: str = "Efficient frontier") -> Figure:
    """The optimal unmet gap against a swept quantity; failed points are marked, not dropped.

    Parameters
    ----------
    x : array of shape (n_points,)
        The swept quantity, in the units ``xlabel`` names.
    gap : array of shape (n_points,)
        Optimal unmet credit gap, US$ (ignored where the point failed; may be NaN there).
    xlabel : str
        Axis label with units, e.g. ``"Senior notes CVaR limit (US$ m)"``.
    failed_mask : array of bool, shape (n_points,)
        True where the solve failed.
    title : str
    """
    xs = np.asarray(x, dtype=float)
    gs = np.asarray(gap, dtype=float)
    failed = np.asarray(failed_mask, dtype=bool)
    if not (xs.ndim == 1 and xs.shape == gs.shape == failed.shape and xs.size):
        raise ValueError(
            f"x, gap and failed_mask must be 1-D of equal length, got {xs.shape}, {gs.shape}, "
            f"{failed.shape}"
        )
    if not np.all(np.isfinite(gs[~failed])):
        raise ValueError("gap must be finite at every point that did not fail")
    order = np.argsort(xs, kind="stable")
    xs, gs, failed = xs[order], gs[order], failed[order]
    fig = new_figure(3.0)
    ax = fig.add_subplot()
    ok = ~failed
    ax.plot(
        xs[ok],
        gs[ok] / 1e6,
        color=OKABE_ITO["blue"],
        marker="o",
        markersize=4,
        linewidth=1.5,
        label="Optimal weighted unmet gap",
    )
    # A failed point has no gap to plot: mark its x with a band and a cross above the data.
    for xf in xs[failed]:
        ax.axvline(xf, color=OKABE_ITO["vermillion"], linestyle=":", linewidth=1.2)
    if failed.any():
        ax.plot(
            xs[failed],
            np.full(failed.sum(), 0.95),
            transform=ax.get_xaxis_transform(),
            linestyle="",
            marker="X",
            markersize=8,
            color=OKABE_ITO["vermillion"],
            label="Failed point (no solution)",
            gid="failed-points",
        )
    if not ok.any():
        ax.text(0.5, 0.5, "No point solved", transform=ax.transAxes, ha="center")
    ax.grid(axis="y", color="#EEEEEE")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Weighted unmet gap (US$ m)")
    set_title(fig, title)
    ax.legend(loc="best")
    return fig


@svg_chart("tornado")
def tornado_svg(
    labels: Sequence[str],
    low_delta,
    high_delta,
    *,
    low_label: str = "Low value",
    high_label: str = "High value",
    title: str = "Sensitivity of the weighted unmet gap",
) -> Figure:
    """Sensitivity tornado: change of the optimal unmet gap when each input moves low or high.

    Parameters
    ----------
    labels : sequence of str, length n_inputs
    low_delta, high_delta : array of shape (n_inputs,)
        Change of the unmet gap vs the base case, US$ (positive = more gap left unmet); NaN
        where the point has no solution (drawn as "no solution", never as zero).
    low_label, high_label : str
        Legend names of the two cases.
    title : str
    """
    lo, hi = np.asarray(low_delta, dtype=float), np.asarray(high_delta, dtype=float)
    if not (lo.shape == hi.shape == (len(labels),) and len(labels)):
        raise ValueError(
            f"labels, low_delta and high_delta must have equal length, got {len(labels)}, "
            f"{lo.shape}, {hi.shape}"
        )
    if np.isinf(lo).any() or np.isinf(hi).any():
        raise ValueError("low_delta and high_delta must be finite (NaN marks a failed point)")
    swing = np.fmax(np.abs(np.nan_to_num(lo)), np.abs(np.nan_to_num(hi)))
    order = np.argsort(-swing, kind="stable")
    lo, hi = lo[order] / 1e6, hi[order] / 1e6
    names = [wrap(labels[i], 34) for i in order]
    fig = new_figure(row_height(names, per_line=0.17, extra=1.5))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y - 0.18, np.nan_to_num(lo), height=0.36, color=OKABE_ITO["blue"], label=low_label)
    ax.barh(
        y + 0.18,
        np.nan_to_num(hi),
        height=0.36,
        color=OKABE_ITO["orange"],
        hatch="///",
        label=high_label,
    )
    span = max(float(np.nanmax(np.abs(np.concatenate([lo, hi])), initial=0.0)), 1e-9)
    for yi, a, b in zip(y, lo, hi, strict=True):
        for offset, value in ((-0.18, a), (0.18, b)):
            if np.isnan(value):
                ax.text(
                    0.01 * span,
                    yi + offset,
                    "no solution",
                    va="center",
                    ha="left",
                    fontsize=7,
                    color=OKABE_ITO["vermillion"],
                    gid="no-solution",
                )
                continue
            ax.text(
                value + np.sign(value or 1) * 0.01 * span,
                yi + offset,
                minus(f"{value:+,.1f}"),
                va="center",
                ha="left" if value >= 0 else "right",
                fontsize=7,
            )
    ax.axvline(0, color=OKABE_ITO["black"], linewidth=0.8)
    ax.set_xlim(-span * 1.25, span * 1.25)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("Change in weighted unmet gap vs the headline (US$ m; positive = more unmet)")
    set_title(fig, title)
    legend_below(fig, ncol=2)
    return fig
