"""``Allocation``: the frozen result of an optimisation, its tables and its JSON file.

Money in every table is US$ (the problem works in US$ millions; the conversion happens here).
Risk figures are recomputed from the scenario losses at the optimum with
:mod:`models.risk_measures`, never read back from the solver, so they are the same numbers an
independent evaluation of the allocation would give.

The tables themselves are built from a solved problem in :mod:`optimizer.result_tables`
(``Solution``, ``build_tables``, ``FUND_COLUMNS``, ``REPORT_ALPHA`` are importable from here, as
before); this module is the result object, its equality, JSON file and text summary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import pandas as pd

from optimizer.result_tables import FUND_COLUMNS, REPORT_ALPHA, Solution, build_tables

if TYPE_CHECKING:
    from optimizer.analysis.confidence import LimitConfidence
    from optimizer.formulation.warm_start import WarmStart

__all__ = [
    "FORMAT_VERSION",
    "FRAMES",
    "FUND_COLUMNS",
    "REPORT_ALPHA",
    "Allocation",
    "Solution",
    "build_tables",
]

FORMAT_VERSION = 3
"""Bumped whenever the JSON layout changes; other versions are refused on reading. Version 2
records the case's ``content_sha256`` and leaves ``timings_s`` out (they go to timings.json);
3 adds ``confidence`` (the margins the limits were held to) and the marginal-value columns of
``binding``."""
FRAMES = (
    "allocation",
    "guarantees",
    "segments",
    "regions",
    "chains",
    "sources",
    "funds",
    "binding",
    "euler",
)


@dataclass(frozen=True, eq=False)
class Allocation:
    """The optimal allocation of a case and everything a risk committee asks about it.

    Attributes
    ----------
    allocation : DataFrame
        One row per (source, product, segment) with lending: ``amount_usd``, cover by each
        fund ``covered_usd_<FUND>``, ``covered_usd``, ``pd``, ``expected_loss_usd`` (gross).
    guarantees : DataFrame
        Capital by (source, fund), ``capital_usd``.
    segments, regions, chains : DataFrame
        Need, supply, gap, credit, unmet gap and share closed; segments add the objective
        weight ``w = 1 + priority · deforestation_pressure``.
    sources : DataFrame
        Per source: committed, lending, capital, TA, expected loss, VaR and CVaR (at its own
        ``cvar_alpha``, else 0.99) with Monte Carlo standard errors, CVaR limit and headroom,
        EL rate against its limit.
    funds : DataFrame
        Per fund: capital, guaranteed volume, leverage used, expected claims, CVaR of claims at
        ``1 − ε``, empirical depletion probability ``P_π(C_g > capital)``.
    binding : DataFrame
        Binding constraint rows of stage 1: family, subject, label, relaxation, slack and
        shadow price (the dual: weighted-gap US$ per US$ of relaxation). With marginal values
        (:func:`optimizer.analysis.marginal.marginal_values`) also what a re-solve with each limit
        relaxed or tightened by one step closes or opens, in weighted and in plain credit gap,
        and whether the dual disagrees (:data:`optimizer.analysis.marginal.MARGINAL_COLUMNS`).
    euler : DataFrame
        For each CVaR-limited source, each cell's Euler contribution to its CVaR; they sum to
        the source's CVaR.
    objective_weighted_gap_usd : float
        Stage-1 optimum of ``Σ_k w_k · unmet_k``, US$.
    weighted_gap_usd : float
        Weighted unmet gap of the returned (stage-2) allocation, US$: within the gap tolerance
        of the optimum.
    unmet_gap_usd, gap_closed_usd, gap_closed_share : float
        Of the returned allocation, unweighted.
    solver, status : str
        Solver of the last stage; ``"optimal"`` or ``"optimal_inaccurate"``.
    fallbacks, warnings : tuple of str
    timings_s : dict of str to float
        ``build_s``, ``stage{1,2}_canonicalize_s``, ``stage{1,2}_solve_s``. Not part of the
        result: left out of ``==`` and of :meth:`to_json` (``save_run`` keeps them in
        timings.json), so equal runs give equal files.
    n_scenarios : int
    case_name : str
    method : str
        ``"lp"`` (one linear programme with Rockafellar–Uryasev CVaR) or ``"cutting_plane"``.
    case_sha256 : str or None
        ``content_sha256`` of the case solved (None for a case built in Python): a saved
        result is refused for any other case.
    confidence : LimitConfidence or None
        Set by :func:`optimizer.analysis.confidence.optimize_with_confidence`: the margin taken on
        each risk limit so it holds at that confidence out of sample, and its cost in gap; None for
        an unmargined optimum.
    warm_start : WarmStart or None
        Where another solve of this case can start from this one (its stage-1 cuts and optimum:
        :mod:`optimizer.formulation.warm_start`); None for the one-LP formulation or a result read
        from a file. Not part of the result: left out of ``==`` and of :meth:`to_json`.
    """

    allocation: pd.DataFrame
    guarantees: pd.DataFrame
    segments: pd.DataFrame
    regions: pd.DataFrame
    chains: pd.DataFrame
    sources: pd.DataFrame
    funds: pd.DataFrame
    binding: pd.DataFrame
    euler: pd.DataFrame
    objective_weighted_gap_usd: float
    weighted_gap_usd: float
    unmet_gap_usd: float
    gap_closed_usd: float
    gap_closed_share: float
    solver: str
    status: str
    fallbacks: tuple[str, ...]
    warnings: tuple[str, ...]
    timings_s: dict[str, float] = field(compare=False)
    n_scenarios: int
    case_name: str
    method: str = "lp"
    case_sha256: str | None = None
    confidence: LimitConfidence | None = None
    format_version: int = field(default=FORMAT_VERSION)
    warm_start: WarmStart | None = field(default=None, compare=False, repr=False)

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Allocation):
            return NotImplemented
        for f in fields(self):
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            same = a.equals(b) if isinstance(a, pd.DataFrame) else _same(a, b)
            if not same:
                return False
        return True

    # --- files -----------------------------------------------------------------------------
    def to_json(self) -> str:
        """The result as JSON text; floats are written exactly (shortest round-trip repr).

        ``timings_s`` is left out: the same case and seed give the same bytes.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.compare:
                continue
            value = getattr(self, f.name)
            if isinstance(value, pd.DataFrame):
                out[f.name] = _frame_to_dict(value)
            elif f.name == "confidence" and value is not None:
                out[f.name] = {
                    k.name: _frame_to_dict(v) if isinstance(v, pd.DataFrame) else _nan_to_none(v)
                    for k in fields(value)
                    for v in [getattr(value, k.name)]
                }
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = _nan_to_none(value)
        return json.dumps(out, allow_nan=False)

    @classmethod
    def from_json(
        cls, text: str, source: str = "result.json", timings_s: dict[str, float] | None = None
    ) -> Allocation:
        """Read what :meth:`to_json` wrote, validated field by field.

        Parameters
        ----------
        text : str
            The JSON text.
        source : str
            How error messages name the file (its path).
        timings_s : dict, optional
            Solver timings to attach (from timings.json); default none.

        Raises
        ------
        SavedRunError
            A ``ValueError`` naming ``source``, the field and what is wrong: not JSON, another
            format version (version 1 files do not record their case: re-run), a missing or
            mistyped field, a table with missing columns or ragged rows, NaN where a number
            is needed.
        """
        from optimizer.persist import parse_saved
        from optimizer.saved import ResultFile
        from optimizer.saved_columns import ALLOCATION_COLUMNS

        fix = "re-run `ppcfin optimize` or `ppcfin run`"
        saved = parse_saved(ResultFile, text, source, fix, FORMAT_VERSION, "result.json")
        kwargs: dict[str, Any] = {}
        for name in ResultFile.model_fields:
            value = getattr(saved, name)
            if name in FRAMES:
                kwargs[name] = value.frame(ALLOCATION_COLUMNS[name])
            elif name in ("fallbacks", "warnings"):
                kwargs[name] = tuple(value)
            elif name == "confidence":
                kwargs[name] = None if value is None else value.build_confidence()
            else:
                kwargs[name] = math.nan if value is None and name != "case_sha256" else value
        return cls(**kwargs, timings_s=dict(timings_s or {}))

    # --- text ------------------------------------------------------------------------------
    def summary(self) -> str:
        """A short text block: gap closed, money used, binding limits, top shadow prices."""
        m = 1e6
        total = self.gap_closed_usd + self.unmet_gap_usd
        src = self.sources
        lines = [
            f"ppcfin allocation — {self.case_name}",
            f"  method {self.method}, solver {self.solver} ({self.status}), "
            f"{self.n_scenarios:,} scenarios",
            f"  gap closed US${self.gap_closed_usd / m:,.1f}m of US${total / m:,.1f}m "
            f"({self.gap_closed_share:.1%}); weighted unmet gap US${self.weighted_gap_usd / m:,.1f}m",
        ]
        for kind, grp in src.groupby("kind", sort=True):
            lines.append(
                f"  {kind:<8} committed US${grp['committed_usd'].sum() / m:,.1f}m "
                f"of US${grp['amount_usd'].sum() / m:,.1f}m"
            )
        limited = src[src["cvar_limit_usd"].notna()]
        for row in limited.itertuples():
            lines.append(
                f"  {row.source:<14} CVaR{row.cvar_alpha * 100:g}% US${row.cvar_usd / m:,.2f}m "
                f"(limit US${row.cvar_limit_usd / m:,.2f}m)"
            )
        from optimizer.analysis.marginal import committee_lines, has_marginal_values  # needs cvxpy

        if has_marginal_values(self):
            for row in committee_lines(self.binding).head(5).itertuples():
                flag = f" (dual {row.dual_gain_usd / m:,.1f}m)" if row.dual_disagrees else ""
                lines.append(
                    f"  binding: {row.label} — US$1m step closes US${row.resolved_gain_usd / m:,.1f}m "
                    f"weighted gap, US${row.resolved_gain_gap_usd / m:,.1f}m credit gap{flag}"
                )
        else:
            for row in self.binding.head(5).itertuples():
                lines.append(
                    f"  binding: {row.label} — {row.shadow_price:.3f} weighted-gap US$ per US$"
                )
        if self.confidence is not None:
            c = self.confidence
            lines.append(
                f"  limits held at {c.confidence:.0%} confidence: {int(c.margins['binding'].sum())}"
                f" binding, cost US${c.cost_weighted_gap_usd / m:,.1f}m of weighted gap"
            )
        lines += [f"  fallback: {f}" for f in self.fallbacks]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def _frame_to_dict(frame: pd.DataFrame) -> dict[str, Any]:
    split = frame.to_dict(orient="split")
    split["data"] = [[_nan_to_none(v) for v in row] for row in split["data"]]
    split["dtypes"] = [str(t) for t in frame.dtypes]
    return split
