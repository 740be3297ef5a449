"""Marginal values of the binding limits by re-solve: what one more (or one less) US$1m buys.

``Allocation.binding.shadow_price`` is the stage-1 dual of each binding row. The optimum is a
degenerate vertex on the shipped case (several limits bind at once around one allocation), so a
dual is only one of many valid ones: on 100,000 scenarios it said US$1m more money from
PUB_GUAR closes US$12.4m of weighted gap, where a re-solve with that money closes nothing (the
fund's capital cap binds too). :func:`marginal_values` relaxes and tightens each binding limit
by one step and re-solves the same problem on the SAME scenarios:

- a money row (budget, capital cap, a US$ CVaR limit, a claims-CVaR or TA row, every per-cell
  row) moves its right-hand side by US$1m;
- a share, rate, ratio or multiple (a CVaR limit as a share of commitment, an expected-loss or
  return-hurdle rate, a leverage cap, a senior cap, the mobilisation ratio, an earmark or a
  concentration share) moves by the step worth US$1m at the optimum (``1 / volume``), so the
  re-solve is the case with that coefficient changed, exactly.

Rows that are copies of one mechanism (one per cell or segment: ``segment_gap``,
``cover_total``, ``uptake``, ``must_cover``) form one group, relaxed together (every row by
US$1m) in one re-solve. Each re-solve runs both stages as :func:`optimizer.optimize` does, so
the weighted gain is the change of the stage-1 optimum and the credit-gap gain the change of
the returned allocation's plain unmet gap: what a committee would get from that case.

The problem is built and compiled once per worker with every family's right-hand side given a
parameter (DPP), so a re-solve only changes parameter values. Groups are dealt round-robin into
blocks run by :func:`models.workers.run_in_order`; each block solves the base itself and starts
every re-solve from the base's state (cutting plane: the base's cuts and HiGHS basis, valid for
any limit; one-LP: a cold start), on one BLAS thread, so the figures are bit-identical for any
``n_jobs`` and backend.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.errors import OptionError
from models.options import check_choice, check_n_jobs
from models.scenarios import ScenarioSet
from models.schema import Case
from models.workers import Backend, run_in_order
from optimizer.analysis.marginal_resolve import STEP_USD, BlockResult, marginal_block
from optimizer.errors import OptimizerError
from optimizer.result import Allocation
from optimizer.solve import PROGRAMME_FAMILIES, solver_and_tolerance

if TYPE_CHECKING:
    pass

__all__ = [
    "DISAGREE_ABS_USD",
    "DISAGREE_REL",
    "GROUPED_FAMILIES",
    "MARGINAL_COLUMNS",
    "STEP_USD",
    "has_marginal_values",
    "marginal_groups",
    "marginal_values",
]

GROUPED_FAMILIES = ("segment_gap", "cover_total", "uptake", "must_cover")
"""Families of one row per cell or segment: each is one group, one re-solve, one line."""
DISAGREE_REL = 0.01
DISAGREE_ABS_USD = 1e4
"""The dual disagrees with the re-solve when ``shadow_price x step`` is off either re-solved
figure (relaxed or tightened) by more than 1 % and US$10,000: above the stage-2 hold (a
hundredth of a percent of the gap) and the cutting plane's CVaR tolerance."""
MARGINAL_COLUMNS = (
    "marginal_group",
    "step_usd",
    "step_rate",
    "dual_gain_usd",
    "resolved_gain_usd",
    "resolved_loss_usd",
    "resolved_gain_gap_usd",
    "resolved_loss_gap_usd",
    "dual_disagrees",
    "marginal_note",
)
"""Columns :func:`marginal_values` adds to ``Allocation.binding`` (every row of a group carries
the group's figures)."""


def has_marginal_values(allocation: Allocation) -> bool:
    """Whether the result's binding table carries re-solved marginal values."""
    return all(c in allocation.binding.columns for c in MARGINAL_COLUMNS)


def marginal_groups(binding: pd.DataFrame) -> list[tuple[str, tuple[str, ...]]]:
    """The re-solve groups of a binding table: ``(family, subjects)`` in table order.

    A family of :data:`GROUPED_FAMILIES` is one group of all its binding rows; every other row
    is a group of its own.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for fam, subject in zip(binding["family"], binding["subject"], strict=True):
        key = (fam, "") if fam in GROUPED_FAMILIES else (fam, subject)
        groups.setdefault(key, []).append(subject)
    return [(fam, tuple(subjects)) for (fam, _), subjects in groups.items()]


def _group_label(family: str, subjects: tuple[str, ...]) -> str:
    if family in GROUPED_FAMILIES:
        return f"{family} ({len(subjects)} rows)"
    return f"{family} {subjects[0]}"


# --- the public step ---------------------------------------------------------------------------
def marginal_values(
    case: Case,
    scenarios: ScenarioSet,
    allocation: Allocation,
    *,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    method: str = "cutting_plane",
    solver: str = "HIGHS",
    gap_tolerance: float | None = None,
    time_limit_s: float | None = None,
) -> Allocation:
    """The allocation with re-solved marginal values on every binding row.

    Parameters
    ----------
    case, scenarios
        What ``allocation`` was solved from (the same scenarios: the re-solves see the same
        tail).
    allocation : Allocation
        From :func:`optimizer.optimize`.
    n_jobs : int, default 1
        Workers (-1: one per core). Groups are dealt round-robin into this many blocks; each
        builds and solves the base once. The figures do not depend on it.
    backend : {"loky", "threading", "dask"}, default "loky"
    scheduler : str, optional
        A dask scheduler address (needs ``backend="dask"``).
    method : {"cutting_plane", "lp", "same"}, default "cutting_plane"
        CVaR formulation of the re-solves (and of their own base), whatever ``allocation``
        used: both reach the same optimum, and the cutting plane re-starts each re-solve from
        the base's cuts and basis. Measured on the default case at 1,200 scenarios (32 groups,
        64 re-solves of both stages): 4.9 s with the cutting plane, 454 s with the one-LP
        formulation. ``"same"``: the allocation's method.
    solver : {"HIGHS", "CLARABEL"}, default "HIGHS"
        The one-LP formulation's first solver (the cutting plane's master is HiGHS).
    gap_tolerance : float, optional
        As for :func:`optimizer.optimize` (default the case's); used to hold each re-solve's
        stage 2.
    time_limit_s : float, optional
        Per solver call; a re-solve that reaches it gets NaN figures and a note.

    Returns
    -------
    Allocation
        A copy whose ``binding`` adds :data:`MARGINAL_COLUMNS`: ``marginal_group`` (rows that
        share it were re-solved together), ``step_usd`` (US$1m per row), ``step_rate`` (the
        share, rate, ratio or multiple step worth ``step_usd`` at the optimum; NaN for a money
        row), ``dual_gain_usd`` (Σ ``shadow_price × step_usd`` over the group: what the duals
        predict), ``resolved_gain_usd`` / ``resolved_loss_usd`` (weighted gap
        ``Σ_k w_k · unmet_k`` closed by relaxing, opened by tightening, US$),
        ``resolved_gain_gap_usd`` / ``resolved_loss_gap_usd`` (the same in plain credit gap),
        ``dual_disagrees`` (the dual is off a re-solved weighted figure: a degenerate vertex
        or a kink within the step) and ``marginal_note`` (why a figure is NaN). Its
        ``timings_s`` gains ``marginal_s``.

        When the base does not re-solve (a solver failure, the time limit), the allocation
        comes back without these columns and with a warning saying why.

    Raises
    ------
    ValueError
        Bad options, or an allocation of another case or scenario set.
    WorkersLost
        Worker processes kept dying.
    """
    if allocation.case_sha256 is not None and allocation.case_sha256 != case.content_sha256:
        raise OptionError("allocation was solved for another case: re-optimize this case first")
    if allocation.n_scenarios != scenarios.n_scenarios:
        raise OptionError(
            f"allocation was solved on {allocation.n_scenarios:,} scenarios, not these "
            f"{scenarios.n_scenarios:,}: pass the scenario set it was solved on"
        )
    check_n_jobs(n_jobs)
    check_choice(backend, Backend, "backend")
    if method not in ("cutting_plane", "lp", "same"):
        raise OptionError(f"method must be 'cutting_plane', 'lp' or 'same', got {method!r}")
    method = allocation.method if method == "same" else method
    name, tol = solver_and_tolerance(case, solver, gap_tolerance)
    start = time.perf_counter()
    binding = allocation.binding.reset_index(drop=True)
    groups = marginal_groups(binding)
    results: list[tuple[BlockResult, list[int]]] = []
    warnings = list(allocation.warnings)
    if groups:
        shared = (case, scenarios, method, name, tol, time_limit_s, allocation.warm_start)
        splits: list[list[int]] = []

        def blocks(workers: int) -> list[tuple[Any, ...]]:
            # dealt round-robin: the table lists the limits that move the optimum first, and
            # their re-solves are the long ones (measured at 10^5: 1-2 s against 0.3-0.5 s),
            # so contiguous blocks left one worker with most of the work
            workers = max(1, min(workers, len(groups)))
            parts = [list(range(len(groups)))[w::workers] for w in range(workers)]
            splits.extend(parts)
            return [(tuple(groups[i] for i in b),) for b in parts]

        def describe(i: int) -> str:
            first = groups[splits[i][0]]
            return f"marginal-value block {i + 1} (from {_group_label(*first)})"

        tasks = run_in_order(
            marginal_block, shared, blocks, Backend(backend), int(n_jobs), scheduler, describe
        )
        try:
            with closing(tasks):
                for i, block in enumerate(tasks):
                    results.append((block, splits[i]))
        except OptimizerError as exc:
            # an add-on that fails must not lose the optimum: said on the result, which
            # then quotes its LP duals
            note = (
                f"marginal values not computed: {exc}; the binding lines quote LP duals (give "
                "the solver more time, time_limit_s, or skip them: --no-marginal)"
            )
            timings = {**allocation.timings_s, "marginal_s": time.perf_counter() - start}
            return dataclasses.replace(
                allocation, warnings=(*allocation.warnings, note), timings_s=timings
            )
        base = results[0][0].base.weighted_usd
        gap = abs(base - allocation.objective_weighted_gap_usd)
        if gap > 1e-6 * max(abs(allocation.objective_weighted_gap_usd), 1.0):
            warnings.append(
                f"marginal values: the base re-solve's weighted gap US${base / 1e6:,.3f}m is "
                f"not the allocation's US${allocation.objective_weighted_gap_usd / 1e6:,.3f}m; "
                "its gains are measured from the re-solve"
            )
    table = _with_columns(binding, groups, results)
    timings = dict(allocation.timings_s)
    timings["marginal_s"] = time.perf_counter() - start
    return dataclasses.replace(
        allocation, binding=table, warnings=tuple(warnings), timings_s=timings
    )


def _with_columns(
    binding: pd.DataFrame,
    groups: list[tuple[str, tuple[str, ...]]],
    results: list[tuple[BlockResult, list[int]]],
) -> pd.DataFrame:
    """The binding table with each row's group figures."""
    n = len(binding)
    out = {c: np.full(n, math.nan) for c in MARGINAL_COLUMNS}
    out["marginal_group"] = np.full(n, "", dtype=object)
    out["marginal_note"] = np.full(n, "", dtype=object)
    out["dual_disagrees"] = np.zeros(n, dtype=bool)
    out["step_usd"] = np.full(n, STEP_USD)
    row_of = {}
    for i, (fam, subject) in enumerate(zip(binding["family"], binding["subject"], strict=True)):
        row_of[(fam, subject)] = i
    for block, indices in results:
        base = block.base
        for j, g in enumerate(indices):
            family, subjects = groups[g]
            rows = [row_of[(family, s)] for s in subjects]
            up, down = block.relaxed[j], block.tightened[j]
            dual = float(binding["shadow_price"].to_numpy()[rows].sum()) * STEP_USD
            gain = _usd(base.weighted_usd - up.weighted_usd)
            loss = _usd(down.weighted_usd - base.weighted_usd)
            allowed = max(DISAGREE_REL * abs(dual), DISAGREE_ABS_USD)
            off = [not abs(v - dual) <= allowed for v in (gain, loss)]  # NaN counts as off
            notes = [
                f"relaxed: {up.note}" if up.note else "",
                f"tightened: {down.note}" if down.note else "",
            ]
            for row, rate in zip(rows, block.step_rates[j], strict=True):
                out["marginal_group"][row] = _group_label(family, subjects)
                out["step_rate"][row] = rate
                out["dual_gain_usd"][row] = dual
                out["resolved_gain_usd"][row] = gain
                out["resolved_loss_usd"][row] = loss
                out["resolved_gain_gap_usd"][row] = _usd(base.unmet_usd - up.unmet_usd)
                out["resolved_loss_gap_usd"][row] = _usd(down.unmet_usd - base.unmet_usd)
                out["dual_disagrees"][row] = bool(any(off))
                out["marginal_note"][row] = "; ".join(n for n in notes if n)
    frame = binding.drop(columns=[c for c in MARGINAL_COLUMNS if c in binding.columns])
    for c in MARGINAL_COLUMNS:
        frame[c] = out[c]
    frame["marginal_group"] = frame["marginal_group"].astype(object)
    frame["marginal_note"] = frame["marginal_note"].astype(object)
    return frame


def _usd(value: float) -> float:
    """A difference of optima, with solver noise under US$1 (1e-6 of the problem's US$m
    unit) read as none: a committee is not told of US$-0.0m."""
    return 0.0 if abs(value) < 1.0 else value


def committee_lines(binding: pd.DataFrame) -> pd.DataFrame:
    """One row per re-solved group of a programme family (the levers a committee can pull),
    largest re-solved weighted gain first; the first row of each group stands for it."""
    if binding.empty or "marginal_group" not in binding.columns:
        return binding.iloc[0:0]
    frame = binding[binding["family"].isin(PROGRAMME_FAMILIES)]
    frame = frame.drop_duplicates("marginal_group")
    moves = frame[["resolved_gain_usd", "resolved_loss_usd", "dual_gain_usd"]].abs()
    frame = frame[(moves.fillna(np.inf) > DISAGREE_ABS_USD / 10).any(axis=1)]
    return frame.sort_values(
        "resolved_gain_usd", ascending=False, kind="stable", na_position="last"
    )
