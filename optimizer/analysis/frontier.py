"""Efficient frontiers: the optimal gap against a swept risk limit, amount, probability or ratio.

The allocation problem is compiled once per worker; each point only changes cvxpy parameter
values (DPP), so a sweep re-solves one compiled problem instead of rebuilding it. Points are split
into contiguous blocks, one per worker, run by :func:`models.workers.run_in_order` (loky
processes, threads, or a dask.distributed cluster; a worker lost mid-block is survived, or the
sweep stops with ``WorkersLost``); every point is solved from the same starting state and each
block on one BLAS thread, so the table does not depend on the number of workers or the backend,
bit for bit. A point that fails stays in the table with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.case_edit import with_changes
from models.errors import OptionError
from models.options import check_choice, check_n_jobs
from models.scenarios import ScenarioSet
from models.schema import Case
from models.workers import Backend, local_workers, run_in_order
from optimizer.analysis.frontier_spec import (
    SOURCE_KINDS,
    SWEEP_CHOICES,
    check_values,
    default_values,
    parse_sweep,
)
from optimizer.analysis.frontier_sweep import sweep_block
from optimizer.choices import CvarMethod, Solver
from optimizer.formulation.exposures import check_cells
from optimizer.formulation.warm_start import WarmStart
from optimizer.solve import auto_method

__all__ = [
    "FRONTIER_COLUMNS",
    "MAX_FRONTIER_POINTS",
    "SOURCE_KINDS",
    "SWEEP_CHOICES",
    "Frontier",
    "case_at",
    "frontier",
    "with_own_setting",
]

FRONTIER_COLUMNS = (
    "value",
    "weighted_gap_usd",
    "gap_closed_usd",
    "gap_closed_share",
    "public_usd",
    "private_usd",
    "climate_usd",
    "binding",
    "status",
    "reason",
    "seconds",
)
MAX_FRONTIER_POINTS = 1_000
"""Most points (``points``, or ``values``) one frontier takes. Each is an LP solve (default case:
~4 s at 2,000 scenarios in LP mode, ~0.4 s at 8,000 with the cutting plane, on 2 cores), so
more is a typo, or hours of work better split into sweeps over narrower ranges."""


@dataclass(frozen=True, eq=False)
class Frontier:
    """One row per swept value (in sweep order), failed points included.

    Attributes
    ----------
    sweep : str
        What was swept (see :data:`SWEEP_CHOICES`), e.g. ``"cvar_scale"``, ``"amount:climate"``,
        ``"depletion:G_PUB"``.
    label : str
        What the value means, for tables and charts.
    table : DataFrame
        Columns :data:`FRONTIER_COLUMNS`, one row per point; money in US$. ``weighted_gap_usd``
        is the stage-1 optimum (for ``deforestation_priority``: weighted at that point's
        priority); money by kind is that optimum's allocation. Points without a solution have
        ``status`` in :data:`optimizer.choices.FAILED_STATUSES`, ``reason`` saying why, and NaN figures.
    compiled_once : bool
        True when each worker's problem was canonicalized by cvxpy exactly once.
    method : {"lp", "cutting_plane"}
        The CVaR formulation used.
    compilations : int
        cvxpy canonicalizations over all workers (one per worker when ``compiled_once``).
    workers : int
        Blocks of contiguous points, each swept by one worker.
    """

    sweep: str
    label: str
    table: pd.DataFrame
    compiled_once: bool
    method: str = "lp"
    compilations: int = 1
    workers: int = 1


def with_own_setting(values: np.ndarray, own: float) -> np.ndarray:
    """``values`` (ascending) with the one nearest to ``own`` replaced by ``own``.

    ``own`` lies within the default range, so the order stays ascending.

    Examples
    --------
    >>> with_own_setting(np.linspace(0.5, 2.0, 6), 1.0).round(2).tolist()
    [0.5, 0.8, 1.0, 1.4, 1.7, 2.0]
    """
    out = np.array(values, dtype=float)
    out[int(np.argmin(np.abs(out - own)))] = own
    return out


def frontier(
    case: Case,
    scenarios: ScenarioSet,
    sweep: str = "cvar_scale",
    values: np.ndarray | list[float] | None = None,
    points: int = 7,
    solver: str = "HIGHS",
    *,
    method: str = "auto",
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    time_limit_s: float | None = None,
    on_point: Callable[[int, dict[str, Any]], None] | None = None,
    start: WarmStart | None = None,
) -> Frontier:
    """Sweep one quantity and record the optimal (stage-1) weighted gap at each point.

    Parameters
    ----------
    case, scenarios
        As for :func:`optimizer.optimize`.
    sweep : str, default "cvar_scale"
        ``"cvar_scale"``: every funder's CVaR limit times the value. ``"cvar_scale:SOURCE"``:
        one funder's. ``"amount:SOURCE"``: that source's money times the value;
        ``"amount:public"`` (``private``, ``climate``): every source of that kind's.
        ``"depletion:FUND"``: the fund's allowed depletion probability ε is the value itself (its
        claims CVaR is taken at level 1 − ε; an ε below the smallest scenario probability is
        that probability, the worst scenario, as in :func:`optimizer.optimize`).
        ``"mobilization"``: the private lending required per concessional US$ is the value.
        ``"deforestation_priority"``: the priority in the segment weights
        ``1 + priority · pressure`` is the value.
    values : array_like of shape (n_points,), optional
        Values to sweep, in order. Default ``points`` values: multipliers from 0.5 to 2
        (``cvar_scale``) or 0 to 2 (``amount``); ε from half to twice the fund's; a ratio or
        priority from 0 to twice the case's (at least to 1); the case's own setting (1 for a
        multiplier) always among them, in place of the nearest, so one point is the case.
    points : int, default 7
        Number of default values, 1 to :data:`MAX_FRONTIER_POINTS` (as is the length of
        ``values``).
    solver : {"HIGHS", "CLARABEL"}
        First solver tried at each point; the other is the fallback.
    method : {"auto", "lp", "cutting_plane"}, default "auto"
        As for :func:`optimizer.optimize`; ``"auto"`` is
        :func:`optimizer.solve.auto_method`. Recorded on the result.
    n_jobs : int, default 1
        Workers (-1: one per core; with a ``scheduler``, one per cluster worker thread). The
        points are split into this many contiguous blocks; each worker builds the problem once.
        One block (without a scheduler) is swept in this process.
    backend : {"loky", "threading", "dask"}, default "loky"
        ``"dask"`` runs the blocks on the dask.distributed cluster at ``scheduler`` (even a
        single block), or on a local cluster of ``n_jobs`` single-threaded worker processes.
    scheduler : str, optional
        A dask scheduler address (``tcp://HOST:PORT``); needs ``backend="dask"``.
    time_limit_s : float, optional
        Time limit per solver call, seconds (a point that reaches it fails, in the table).
    on_point : callable, optional
        ``on_point(index, row)`` for each point as its row arrives, in point order (with
        several workers rows arrive a block at a time).
    start : WarmStart, optional
        ``Allocation.warm_start`` of the case itself solved on ``scenarios`` (the headline of a
        run): every point's cut loop starts from its cuts, so no worker solves the case again
        for them (:mod:`optimizer.formulation.warm_start`). Ignored when from other scenarios.

    Returns
    -------
    Frontier

    Raises
    ------
    ValueError
        A bad sweep, value, method, solver, backend or ``n_jobs``, or more than
        :data:`MAX_FRONTIER_POINTS` points (the message names the valid choices).
    ScenarioMismatch
        The scenario set belongs to another case.
    SimulationError
        ``backend="dask"`` without dask.distributed installed, or an unreachable ``scheduler``
        (a ``ValueError``: the CLI exits 2).
    WorkersLost
        Worker processes kept dying: a loky pool broken twice, or dask gave up on a block
        (``KilledWorker``). Not bad input: the CLI exits 1.
    """
    check_cells(case, scenarios)  # a scenario set of another case fails here, not in a worker
    spec = parse_sweep(case, scenarios, sweep)
    if values is None:
        if isinstance(points, bool) or not isinstance(points, int | np.integer) or points < 1:
            raise OptionError(f"points must be an integer >= 1, got {points!r}")
        if points > MAX_FRONTIER_POINTS:
            raise OptionError(
                f"points = {points:,} is more than a frontier takes (at most "
                f"{MAX_FRONTIER_POINTS:,}, each an LP solve): use fewer points, or several "
                "sweeps over narrower ranges"
            )
        values = with_own_setting(default_values(spec, int(points)), spec.base)
    elif np.size(values) > MAX_FRONTIER_POINTS:
        raise OptionError(
            f"values holds {np.size(values):,} points, more than a frontier takes (at most "
            f"{MAX_FRONTIER_POINTS:,}, each an LP solve): sweep fewer values"
        )
    values = check_values(spec, values)
    name = check_choice(str(solver).upper(), Solver, "solver").value
    method = check_choice(method, CvarMethod, "method").value
    if method == "auto":
        method = auto_method(scenarios)
    if time_limit_s is not None and not time_limit_s > 0:
        raise OptionError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    _check_parallel(n_jobs, backend, scheduler)
    cvar_method = "cuts" if method == "cutting_plane" else "lp"

    rows: list[dict[str, Any]] = []

    def arrived(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_point is not None:
            on_point(len(rows) - 1, row)

    shared = (case, scenarios, spec)
    options = (name, cvar_method, time_limit_s, start)
    on_cluster = backend == "dask" and scheduler is not None
    if not on_cluster and min(local_workers(int(n_jobs)), values.size) == 1:
        # in this process: rows are reported as each point ends, not a block at a time
        results = [sweep_block(*shared, values, *options, on_row=arrived)]
        n_blocks = 1
    else:
        starts: list[int] = []  # first point of each block, once the workers are known

        def blocks(workers: int) -> list[tuple[Any, ...]]:
            # no more blocks than points: n_jobs=10**9 must not build 10**9 empty blocks
            workers = min(workers, values.size)
            split = [b for b in np.array_split(np.arange(values.size), workers) if b.size]
            starts.extend(int(b[0]) for b in split)
            return [(values[b], *options) for b in split]

        def describe(i: int) -> str:
            return f"frontier points {starts[i] + 1} to {values.size} of sweep {spec.name!r}"

        results = []
        tasks = run_in_order(
            sweep_block, shared, blocks, Backend(backend), int(n_jobs), scheduler, describe
        )
        with closing(tasks):  # a stopped sweep cancels the blocks still queued
            for result in tasks:  # block order, whatever worker finished first
                results.append(result)
                for row in result.rows:
                    arrived(row)
        n_blocks = len(starts)
    compilations = sum(r.compilations for r in results)
    table = pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))
    return Frontier(
        sweep=spec.name,
        label=spec.label,
        table=table,
        compiled_once=compilations == n_blocks,
        method=method,
        compilations=compilations,
        workers=n_blocks,
    )


def case_at(case: Case, sweep: str, value: float) -> Case:
    """The case with the swept quantity set to ``value``: what a fresh ``optimize`` would solve.

    The frontier's point at ``value`` and ``optimize(case_at(case, sweep, value), scenarios)``
    have the same stage-1 optimum.

    Raises
    ------
    OptionError
        A bad sweep (as :func:`frontier`).
    InvalidEdit
        The case cannot hold the value (e.g. a CVaR share limit scaled above 100 %, a CVaR limit
        above a source's scaled amount, a depletion probability above 0.5), naming the field.
    """
    spec = parse_sweep(case, None, sweep)
    changes: dict[str, float] = {}
    if spec.kind in ("cvar_scale", "amount"):
        for src in case.sources:
            if src.id not in spec.targets:
                continue
            if spec.kind == "amount":
                changes[f"sources[{src.id}].amount_usd"] = src.amount_usd * value
            elif src.cvar_limit_usd is not None:
                changes[f"sources[{src.id}].cvar_limit_usd"] = src.cvar_limit_usd * value
            else:
                changes[f"sources[{src.id}].cvar_limit_share"] = src.cvar_limit_share * value
    elif spec.kind == "depletion":
        for fund in case.funds:
            if fund.id in spec.targets:
                changes[f"funds[{fund.id}].max_depletion_probability"] = value
    elif spec.kind == "mobilization":
        changes["policy.min_private_per_concessional"] = value
    else:
        changes["policy.deforestation_priority"] = value
    return with_changes(case, changes, what=f"{sweep} at {value:g} makes the case invalid")


def _check_parallel(n_jobs: object, backend: object, scheduler: object) -> None:
    check_n_jobs(n_jobs)
    check_choice(backend, Backend, "backend")
    if scheduler is not None and backend != "dask":
        raise OptionError(f"scheduler {scheduler!r} needs backend='dask', got {backend!r}")
