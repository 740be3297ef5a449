"""Efficient frontiers: the optimal gap against a swept risk limit, amount, probability or ratio.

The allocation problem is compiled once per worker; each point only changes cvxpy parameter
values (DPP), so a sweep re-solves one compiled problem instead of rebuilding it. Points are split
into contiguous blocks, one per worker (joblib: loky processes, threads, or a dask.distributed
cluster); every point is solved from the same starting state, so the table does not depend on the
number of workers. A point that fails stays in the table with its reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.exposures import check_cells
from optimizer.frontier_sweep import (
    FAILED_STATUSES,
    SOURCE_KINDS,
    SWEEP_CHOICES,
    check_values,
    default_values,
    parse_sweep,
    sweep_block,
)
from optimizer.solve import AUTO_CUTS_ABOVE_SCENARIOS, SOLVERS

__all__ = [
    "BACKENDS",
    "FAILED_STATUSES",
    "FRONTIER_COLUMNS",
    "METHODS",
    "SOURCE_KINDS",
    "SWEEP_CHOICES",
    "Frontier",
    "case_at",
    "frontier",
]

FRONTIER_COLUMNS = (
    "value", "weighted_gap_usd", "gap_closed_usd", "gap_closed_share", "public_usd",
    "private_usd", "climate_usd", "binding", "status", "reason", "seconds",
)  # fmt: skip
BACKENDS = ("loky", "threading", "dask")
METHODS = ("auto", "lp", "cutting_plane")


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
        ``status`` in :data:`FAILED_STATUSES`, ``reason`` saying why, and NaN figures.
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
        claims CVaR is taken at level 1 − ε). ``"mobilization"``: the private lending required
        per concessional US$ is the value. ``"deforestation_priority"``: the priority in the
        segment weights ``1 + priority · pressure`` is the value.
    values : array_like of shape (n_points,), optional
        Values to sweep, in order. Default ``points`` values: multipliers from 0.5 to 2
        (``cvar_scale``) or 0 to 2 (``amount``); ε from half to twice the fund's; a ratio or
        priority from 0 to twice the case's (at least to 1).
    points : int, default 7
        Number of default values.
    solver : {"HIGHS", "CLARABEL"}
        First solver tried at each point; the other is the fallback.
    method : {"auto", "lp", "cutting_plane"}, default "auto"
        As for :func:`optimizer.optimize`; ``"auto"`` picks the cutting plane above
        ``AUTO_CUTS_ABOVE_SCENARIOS`` scenarios. Recorded on the result.
    n_jobs : int, default 1
        Workers (-1: one per core; with a ``scheduler``, one per cluster worker). The points are
        split into this many contiguous blocks; each worker builds the problem once.
    backend : {"loky", "threading", "dask"}, default "loky"
        ``"dask"`` runs the blocks on the dask.distributed cluster at ``scheduler``, or on a
        local cluster of ``n_jobs`` single-threaded worker processes.
    scheduler : str, optional
        A dask scheduler address (``tcp://HOST:PORT``); needs ``backend="dask"``.
    time_limit_s : float, optional
        Time limit per solver call, seconds (a point that reaches it fails, in the table).
    on_point : callable, optional
        ``on_point(index, row)`` for each point as its row arrives, in point order (with
        several workers rows arrive a block at a time).

    Returns
    -------
    Frontier

    Raises
    ------
    ValueError
        A bad sweep, value, method, solver, backend or ``n_jobs`` (the message names the valid
        choices).
    ScenarioMismatch
        The scenario set belongs to another case.
    """
    check_cells(case, scenarios)  # a scenario set of another case fails here, not in a worker
    spec = parse_sweep(case, scenarios, sweep)
    if values is None:
        if isinstance(points, bool) or not isinstance(points, int | np.integer) or points < 1:
            raise ValueError(f"points must be an integer >= 1, got {points!r}")
        values = default_values(spec, int(points))
    values = check_values(spec, values)
    name = str(solver).upper()
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        method = "cutting_plane" if scenarios.n_scenarios > AUTO_CUTS_ABOVE_SCENARIOS else "lp"
    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be > 0 seconds, got {time_limit_s}")
    _check_parallel(n_jobs, backend, scheduler)
    cvar_method = "cuts" if method == "cutting_plane" else "lp"

    rows: list[dict[str, Any]] = []

    def arrived(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_point is not None:
            on_point(len(rows) - 1, row)

    args = (case, scenarios, spec)
    options = (name, cvar_method, time_limit_s)
    with _Workers(backend, n_jobs, scheduler, values.size) as (parallel, n_blocks):
        blocks = [b for b in np.array_split(values, n_blocks) if b.size]
        if parallel is None:  # in this process: rows are reported as each point ends
            results = [sweep_block(*args, values, *options, on_row=arrived)]
        else:
            results = []
            for result in parallel(delayed(sweep_block)(*args, b, *options) for b in blocks):
                results.append(result)
                for row in result.rows:
                    arrived(row)
    compilations = sum(r.compilations for r in results)
    table = pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))
    return Frontier(
        sweep=spec.name,
        label=spec.label,
        table=table,
        compiled_once=compilations == len(blocks),
        method=method,
        compilations=compilations,
        workers=len(blocks),
    )


def case_at(case: Case, sweep: str, value: float) -> Case:
    """The case with the swept quantity set to ``value``: what a fresh ``optimize`` would solve.

    The frontier's point at ``value`` and ``optimize(case_at(case, sweep, value), scenarios)``
    have the same stage-1 optimum.

    Raises
    ------
    ValueError
        A bad sweep (as :func:`frontier`).
    pydantic.ValidationError
        The case cannot hold the value (e.g. a CVaR share limit scaled above 100 %, a CVaR limit
        above a source's scaled amount, a depletion probability above 0.5).
    """
    spec = parse_sweep(case, None, sweep)
    raw = case.model_dump()
    if spec.kind in ("cvar_scale", "amount"):
        for src in raw["sources"]:
            if src["id"] not in spec.targets:
                continue
            if spec.kind == "amount":
                src["amount_usd"] *= value
            elif src["cvar_limit_usd"] is not None:
                src["cvar_limit_usd"] *= value
            else:
                src["cvar_limit_share"] *= value
    elif spec.kind == "depletion":
        for fund in raw["funds"]:
            if fund["id"] in spec.targets:
                fund["max_depletion_probability"] = value
    elif spec.kind == "mobilization":
        raw["policy"]["min_private_per_concessional"] = value
    else:
        raw["policy"]["deforestation_priority"] = value
    return Case.model_validate(raw)


def _check_parallel(n_jobs: object, backend: object, scheduler: object) -> None:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (-1: one per core), got {n_jobs!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if scheduler is not None and backend != "dask":
        raise ValueError(f"scheduler {scheduler!r} needs backend='dask', got {backend!r}")


class _Workers:
    """joblib Parallel (ordered generator) on the chosen backend, and the number of blocks."""

    def __init__(self, backend: str, n_jobs: int, scheduler: str | None, n_points: int):
        self.backend, self.n_jobs, self.scheduler, self.n_points = (
            backend,
            int(n_jobs),
            scheduler,
            n_points,
        )
        self._client = self._cluster = self._config = None

    def _blocks(self, workers: int) -> int:
        return max(1, min(workers, self.n_points))

    def __enter__(self) -> tuple[Parallel | None, int]:
        """(None, 1) to sweep in this process, else (an ordered Parallel, number of blocks)."""
        if self.backend == "dask" and (self.scheduler or self._blocks(self._local()) > 1):
            return self._dask()
        blocks = self._blocks(self._local())
        if blocks == 1:
            return None, 1
        return Parallel(n_jobs=blocks, backend=self.backend, return_as="generator"), blocks

    def _local(self) -> int:
        return self.n_jobs if self.n_jobs > 0 else max(1, os.cpu_count() or 1)

    def _dask(self) -> tuple[Parallel, int]:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError(
                "backend 'dask' needs dask.distributed: pip install 'ppc-finance[dask]'"
            ) from None
        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise ValueError(
                    f"cannot reach the dask scheduler at {self.scheduler}: {exc}"
                ) from None
            workers = len(self._client.scheduler_info().get("workers", {})) or 1
            blocks = self._blocks(self.n_jobs if self.n_jobs > 0 else workers)
        else:
            blocks = self._blocks(self._local())
            self._cluster = LocalCluster(
                n_workers=blocks,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
                processes=True,
            )
            self._client = Client(self._cluster)
        self._config = parallel_config(backend="dask")
        self._config.__enter__()
        return Parallel(return_as="generator"), blocks

    def __exit__(self, *exc: object) -> None:
        if self._config is not None:
            self._config.__exit__(*exc)
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
