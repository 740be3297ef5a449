"""Risk charts: a funder's loss distribution, a guarantee fund's claims, CVaR contributions.

Histograms are weighted by the scenario probabilities (importance-sampling weights are honoured,
never replaced by equal weights) and drawn in US$ millions; each function returns SVG text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from reports._svg import (
    OKABE_ITO,
    check_weighted,
    millions,
    minus,
    new_figure,
    row_height,
    set_title,
    svg_chart,
    weighted_histogram,
    wrap,
)
from reports.formats import money_m

__all__ = ["claims_distribution_svg", "euler_svg", "loss_distribution_svg"]


def _probability_axis(ax, mass: np.ndarray) -> None:
    positive = mass[mass > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
        ax.set_ylabel("Probability (log scale)")
    else:
        ax.set_ylabel("Probability")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:.3g}%"))
    ax.grid(axis="y", color="#EEEEEE")


def _histogram(ax, values_usd, probabilities, what: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Draw the weighted histogram; return values, probabilities and the right end of the bins."""
    v, p = check_weighted(values_usd, probabilities, what)
    mass, edges = weighted_histogram(millions(v), p)
    keep = mass > 0
    bars = ax.bar(
        edges[:-1][keep],
        mass[keep],
        width=np.diff(edges)[keep],
        align="edge",
        color=OKABE_ITO["sky_blue"],
        edgecolor="white",
        linewidth=0.3,
        label="Scenario probability",
    )
    for i, bar in enumerate(bars):  # ids let tests and stylesheets find the bars
        bar.set_gid(f"hist-bar-{i}")
    _probability_axis(ax, mass)
    if np.all(v == v[0]):
        ax.text(
            0.5,
            0.6,
            f"Every scenario gives {money_m(v[0])}",
            transform=ax.transAxes,
            ha="center",
            fontsize=8,
        )
    return v, p, float(edges[-1])


def _vlines(ax, lines: list[tuple[str, float | None, str, str, float]]) -> float:
    right = 0.0
    for label, value, colour, style, width in lines:
        if value is None or not np.isfinite(value):
            continue
        ax.axvline(
            value / 1e6,
            color=colour,
            linestyle=style,
            linewidth=width,
            label=f"{label}: {money_m(value)}",
        )
        right = max(right, value / 1e6)
    return right


@svg_chart("loss-distribution")
def loss_distribution_svg(
    losses_usd,
    probabilities,
    el: float,
    var: float,
    cvar: float,
    limit: float | None,
    title: str,
    *,
    alpha: float | None = None,
) -> Figure:
    """Probability-weighted histogram of a funder's scenario losses with its risk figures.

    Parameters
    ----------
    losses_usd : array of shape (n_scenarios,)
        The funder's loss in each scenario, US$.
    probabilities : array of shape (n_scenarios,)
        Scenario probabilities (sum to 1; importance-sampling weights are honoured).
    el, var, cvar : float
        Expected loss, VaR and CVaR, US$ (as computed by the risk layer; drawn, not recomputed).
    limit : float or None
        The funder's CVaR limit, US$; ``None`` if it has none.
    title : str
    alpha : float, optional
        The VaR/CVaR level, printed in the legend (``0.99`` → "VaR 99%").
    """
    fig = new_figure(3.0)
    ax = fig.add_subplot()
    v, _, top = _histogram(ax, losses_usd, probabilities, "losses_usd")
    level = f" {alpha:.1%}".replace(".0%", "%") if alpha is not None else ""
    right = _vlines(
        ax,
        [
            ("Expected loss", el, OKABE_ITO["green"], "--", 1.4),
            (f"VaR{level}", var, OKABE_ITO["orange"], "-.", 1.4),
            (f"CVaR{level}", cvar, OKABE_ITO["vermillion"], "-", 1.6),
            ("CVaR limit", limit, OKABE_ITO["black"], ":", 2.0),
        ],
    )
    ax.set_xlim(min(0.0, v.min() / 1e6), max(right, top) * 1.05)
    ax.set_xlabel("Loss in a scenario (US$ m)")
    set_title(fig, title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@svg_chart("claims-distribution")
def claims_distribution_svg(claims_usd, probabilities, capital_usd: float, title: str) -> Figure:
    """Probability-weighted histogram of a guarantee fund's claims with a line at its capital.

    Parameters
    ----------
    claims_usd : array of shape (n_scenarios,)
        Claims paid by the fund in each scenario, US$.
    probabilities : array of shape (n_scenarios,)
    capital_usd : float
        The fund's capital, US$; claims beyond it deplete the fund.
    title : str
    """
    fig = new_figure(2.8)
    ax = fig.add_subplot()
    v, p, top = _histogram(ax, claims_usd, probabilities, "claims_usd")
    expected = float(p @ v)
    depletion = float(p[v > capital_usd].sum())
    right = _vlines(
        ax,
        [
            ("Expected claims", expected, OKABE_ITO["green"], "--", 1.4),
            ("Capital", capital_usd, OKABE_ITO["black"], ":", 2.0),
        ],
    )
    ax.plot([], [], linestyle="", label=f"P(claims > capital) = {depletion:.2%}")
    ax.set_xlim(min(0.0, v.min() / 1e6), max(right, top) * 1.05)
    ax.set_xlabel("Claims in a scenario (US$ m)")
    set_title(fig, title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@svg_chart("euler")
def euler_svg(
    frame: pd.DataFrame | pd.Series,
    *,
    title: str = "Contributions to CVaR",
    top_n: int = 10,
) -> Figure:
    """Euler contributions of a funder's CVaR, largest first, the tail grouped as "Other".

    Parameters
    ----------
    frame : DataFrame with column ``contribution_usd``, or Series
        Index: the segment or product; values: its contribution to the CVaR, US$ (they sum to
        the CVaR; a negative contribution hedges).
    title : str
    top_n : int
        Bars shown before the rest is summed into one "Other (n)" bar.
    """
    series = frame if isinstance(frame, pd.Series) else frame.get("contribution_usd")
    if series is None:
        raise ValueError(
            f"Euler frame needs a 'contribution_usd' column, has {list(frame.columns)}"
        )
    values = pd.to_numeric(series, errors="coerce")
    if values.empty or values.isna().any():
        raise ValueError("Euler contributions must be a non-empty numeric column")
    values = values.groupby(level=0, sort=False).sum().sort_values(ascending=False, kind="stable")
    if len(values) > top_n:
        rest = values.iloc[top_n - 1 :]
        values = pd.concat(
            [values.iloc[: top_n - 1], pd.Series({f"Other ({len(rest)})": rest.sum()})]
        )
    total = float(values.sum())
    m = millions(values.to_numpy())
    names = [wrap(s, 36) for s in values.index]
    fig = new_figure(row_height(names, per_line=0.095, extra=1.1))
    ax = fig.add_subplot()
    y = np.arange(len(values))
    ax.barh(y, m, color=OKABE_ITO["vermillion"], height=0.65)
    span = max(np.abs(m).max(), 1e-9)
    for yi, v in zip(y, m, strict=True):
        share = f" ({v * 1e6 / total:.0%})" if total > 0 else ""
        ax.text(
            v + 0.01 * span * (1 if v >= 0 else -1),
            yi,
            minus(f"{v:,.2f}{share}"),
            va="center",
            ha="left" if v >= 0 else "right",
            fontsize=7,
        )
    ax.axvline(0, color=OKABE_ITO["black"], linewidth=0.6)
    ax.set_xlim(min(0.0, m.min()) - 0.05 * span, max(m.max(), 0.0) + 0.3 * span)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"Contribution to CVaR (US$ m; total {total / 1e6:,.2f})")
    set_title(fig, title)
    return fig
