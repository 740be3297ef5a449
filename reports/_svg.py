"""Chart plumbing: one look for every figure, and SVG text that is the same bytes for the same input.

Figures are built as :class:`matplotlib.figure.Figure` objects with an explicit Agg canvas, so
nothing here touches pyplot's global figure registry or switches the process-wide backend (an
analyst's Jupyter session keeps its own). The SVG writer runs inside ``rc_context`` with a fixed
hash salt and no date, so output is byte-identical across runs; text stays text (``svg.fonttype
= none``), which keeps the files small and the PDF searchable, and matplotlib escapes it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import ParamSpec

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
# Paul Tol's "muted" qualitative scheme: nine colour-blind-safe hues for many categories.
TOL_MUTED = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
HATCHES = ("", "///", "...", "xxx")
GREY = "#BBBBBB"

# A4 is 210 mm wide; the report's print margins leave 180 mm (7.09 in) for content.
PAGE_WIDTH_IN = 6.8
BASE_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "figure.titlesize": 9.5,
    "figure.titleweight": "bold",
    "axes.labelsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "x",
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "hatch.linewidth": 0.6,
    "hatch.color": "#FFFFFF",
    # User strings ("US$ 5 m to US$ 6 m") must never be read as mathtext between two "$".
    "text.parse_math": False,
}
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "ppcfin-reports", "svg.image_inline": True}
_ID_ATTR = re.compile(r'\bid="([^"]+)"')
P = ParamSpec("P")


def svg_chart(kind: str) -> Callable[[Callable[P, Figure]], Callable[P, str]]:
    """Decorate a function that builds a :class:`Figure` so it returns deterministic SVG text.

    The function body runs under :data:`BASE_STYLE` (artists read rcParams when created).
    """

    def decorate(build: Callable[P, Figure]) -> Callable[P, str]:
        @functools.wraps(build)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> str:
            with mpl.rc_context(BASE_STYLE):
                fig = build(*args, **kwargs)
                return to_svg(fig, kind)

        return wrapper

    return decorate


def new_figure(height_in: float, width_in: float = PAGE_WIDTH_IN) -> Figure:
    """An empty figure on its own Agg canvas, laid out by the constrained-layout engine."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    return fig


def to_svg(fig: Figure, kind: str) -> str:
    """Serialize ``fig`` to deterministic SVG text with ids unique to this chart.

    matplotlib names groups ``figure_1``, ``axes_1``… in every file, so two charts inlined in
    one HTML page would repeat ids. Every id (and each ``#id`` reference) is prefixed with the
    chart kind and a digest of the chart's own bytes: deterministic, and distinct across charts.
    """
    buf = io.StringIO()
    with mpl.rc_context({**BASE_STYLE, **_SVG_RC}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    prefix = f"{kind}-{hashlib.sha256(svg.encode()).hexdigest()[:8]}-"
    ids = set(_ID_ATTR.findall(svg))
    if ids:
        pattern = re.compile(r'(\bid="|#)(' + "|".join(map(re.escape, sorted(ids))) + r')(?=["\)])')
        svg = pattern.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)
    return svg


def wrap(label: object, width: int) -> str:
    """``label`` as text broken into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(str(label), width)) or str(label)


def row_height(labels: Sequence[str], per_line: float = 0.14, extra: float = 1.5) -> float:
    """Figure height for one bar per (wrapped) label: every row gets room for the tallest one."""
    lines = max((label.count("\n") + 1 for label in labels), default=1)
    return min(max(extra + len(labels) * per_line * (lines + 1), 2.4), 9.5)


def set_title(fig: Figure, title: str) -> None:
    """Figure title, left-aligned and wrapped so a long (user-given) name never runs off."""
    fig.suptitle(wrap(title, 95), x=0.01, ha="left")


def millions(values_usd) -> np.ndarray:
    """US$ → US$ millions, as a float array."""
    return np.asarray(values_usd, dtype=float) / 1e6


def check_weighted(values, probabilities, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a scenario vector and its probabilities; return them as float arrays.

    Probabilities must be finite, non-negative, of the same length as the values and sum to 1
    (within 1e-6): importance-sampling weights are honoured as given, never assumed equal.
    """
    v = np.asarray(values, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {v.shape}")
    if p.shape != v.shape:
        raise ValueError(f"probabilities must have shape {v.shape} like {what}, got {p.shape}")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(p))):
        raise ValueError(f"{what} and probabilities must be finite")
    if np.any(p < 0):
        raise ValueError(f"probabilities must be >= 0, got minimum {p.min()}")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"probabilities must sum to 1, got {p.sum():.9g}")
    return v, p


def weighted_histogram(
    values_m: np.ndarray, probabilities: np.ndarray, n_bins: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Probability mass per bin of ``values_m`` (US$ m) under scenario ``probabilities``.

    A degenerate vector (all values equal, e.g. all zero losses) gets one bin of width 1 centred
    on the value, rather than numpy's zero-width range.
    """
    lo, hi = float(values_m.min()), float(values_m.max())
    if hi - lo < 1e-12:
        edges = np.array([lo - 0.5, lo + 0.5]) if lo != 0 else np.array([0.0, 1.0])
    else:
        edges = np.linspace(lo, hi, n_bins + 1)
    mass, edges = np.histogram(values_m, bins=edges, weights=probabilities)
    return mass, edges


def legend_below(fig: Figure, handles: Sequence | None = None, ncol: int = 3) -> None:
    """A figure legend under the axes (constrained layout makes room), so it never covers data."""
    if handles is None:
        handles, _ = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol)


def minus(text: str) -> str:
    """Typographic minus sign, as matplotlib uses on tick labels."""
    return text.replace("-", "\u2212")
