"""The headline's own error bar: re-draw the scenarios R times, re-optimise, read the spread.

An optimum found on one scenario set is itself a Monte Carlo estimate: another seed gives
another allocation and another gap closed. :func:`replicate` draws ``R`` independent scenario
sets (seeds spawned from the run's seed with :class:`numpy.random.SeedSequence`, so the same
seed gives the same replications), optimises each exactly as ``ppcfin optimize`` does
(confidence margins included), and reports gap closed as mean ± standard error, with the
scenario count that would bring that error to a target share of the mean (the error of an
optimum shrinks like ``1/sqrt(n)``).

Replications run in parallel through :func:`models.workers.run_in_order`, each simulated on
one worker and solved on one BLAS thread, so the numbers do not depend on ``n_jobs`` or the
backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models import DEFAULT_SAMPLING, Case, simulate
from models.errors import OptionError
from models.workers import Backend, run_in_order
from optimizer.errors import OptimizerError
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.warm_start import WarmStart

DEFAULT_TARGET = 0.01
"""Relative precision the advice aims at: the error of gap closed within 1 % of its mean."""
MAX_REPLICATIONS = 1_000
REPLICATION_COLUMNS = (
    "replication",
    "seed",
    "weighted_gap_closed_usd",
    "gap_closed_usd",
    "status",
    "reason",
)


@dataclass(frozen=True, eq=False)
class Replications:
    """Gap closed over ``replications`` independent scenario sets of ``n_scenarios`` each.

    Attributes
    ----------
    table : DataFrame
        One row per replication (columns :data:`REPLICATION_COLUMNS`): its seed, weighted gap
        closed (``Σ w_k gap_k`` minus the weighted unmet gap) and plain gap closed, US$, and
        ``status`` ``"optimal"`` or the error class of a replication that did not solve
        (``reason`` says why; it is left out of the statistics).
    gap_closed_usd, gap_closed_se_usd : float
        Mean over the solved replications and the standard error of one run at
        ``n_scenarios`` (their standard deviation, ``ddof=1``): the headline's error bar.
    weighted_gap_closed_usd, weighted_gap_closed_se_usd : float
        The same for the weighted gap closed (what the optimiser maximises).
    mean_se_usd : float
        Standard error of ``gap_closed_usd`` itself, ``gap_closed_se_usd / sqrt(solved)``.
    target_relative_se : float
        The precision the advice aims at, as a share of the mean.
    advised_n_scenarios : int
        ``n · (SE / (target · mean))²`` rounded up to a thousand: the scenario count at which
        one run's gap closed has that relative error (for the plain gap; the weighted gap's
        advice is ``advised_weighted_n_scenarios``).
    advised_weighted_n_scenarios : int
    n_scenarios, seed, replications, solved : int
    confidence : float
        The limit confidence each replication was optimised at (0: off).
    """

    table: pd.DataFrame
    gap_closed_usd: float
    gap_closed_se_usd: float
    weighted_gap_closed_usd: float
    weighted_gap_closed_se_usd: float
    mean_se_usd: float
    target_relative_se: float
    advised_n_scenarios: int
    advised_weighted_n_scenarios: int
    n_scenarios: int
    seed: int
    replications: int
    solved: int
    confidence: float

    __hash__ = None  # type: ignore[assignment]  # holds a DataFrame

    def headline(self) -> str:
        """``gap closed US$ X m +- Y m (R replications)`` and the advice, one line each."""
        m = 1e6
        lines = [
            f"gap closed US${self.gap_closed_usd / m:,.1f}m +- {self.gap_closed_se_usd / m:,.1f}m "
            f"({self.solved} replications of {self.n_scenarios:,} scenarios); weighted gap "
            f"closed US${self.weighted_gap_closed_usd / m:,.1f}m "
            f"+- {self.weighted_gap_closed_se_usd / m:,.1f}m",
            f"for a standard error within {self.target_relative_se:.1%} of the mean: about "
            f"{self.advised_n_scenarios:,} scenarios (weighted gap: "
            f"{self.advised_weighted_n_scenarios:,})",
        ]
        if self.solved < self.replications:
            lines.append(
                f"{self.replications - self.solved} replication(s) did not solve (see the table)"
            )
        return "\n".join(lines)


def replication_seeds(seed: int, replications: int) -> list[int]:
    """``replications`` independent seeds derived from ``seed`` (SeedSequence spawn), 32-bit."""
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def check_replications(replications: object) -> int:
    """A replication count for a run or a command line: 0 (none) or 2 to
    :data:`MAX_REPLICATIONS`; ValueError otherwise, before any work is done."""
    if (
        isinstance(replications, bool)
        or not isinstance(replications, int)
        or not (replications == 0 or 2 <= replications <= MAX_REPLICATIONS)
    ):
        raise OptionError(
            f"replications must be 0 (none) or at least 2, got {replications!r} (at most "
            f"{MAX_REPLICATIONS:,}; a spread needs two draws)"
        )
    return replications


def replicate(
    case: Case,
    n_scenarios: int,
    seed: int,
    replications: int = 10,
    *,
    n_jobs: int = 1,
    backend: str | Backend = Backend.loky,
    scheduler: str | None = None,
    method: str = DEFAULT_SAMPLING,
    dtype: str = "float64",
    optimize_method: str = "auto",
    confidence: float | None = None,
    target_relative_se: float = DEFAULT_TARGET,
    on_replication: Callable[[int], None] | None = None,
    start: WarmStart | None = None,
) -> Replications:
    """Re-draw ``replications`` scenario sets, re-optimise each, and report the spread.

    Parameters
    ----------
    case : Case
    n_scenarios : int
        Scenarios per replication (the headline run's count).
    seed : int
        The headline run's seed; replication r uses ``replication_seeds(seed, R)[r]``.
    replications : int, default 10
        R, in 2..:data:`MAX_REPLICATIONS`.
    n_jobs, backend, scheduler
        Replications solved in parallel (as :func:`models.simulate` takes them); the numbers
        do not depend on them.
    method, dtype
        Scenario method and loss precision, as for :func:`models.simulate`.
    optimize_method : {"auto", "lp", "cutting_plane"}
    confidence : float, optional
        Limit confidence for :func:`optimizer.analysis.confidence.optimize_with_confidence`; default
        the case's (``policy.confidence``), 0 for the plain optimum.
    target_relative_se : float, default 0.01
        The advice's precision, a share of the mean in (0, 1).
    on_replication : callable, optional
        Called with the number of replications finished, after each.
    start : WarmStart, optional
        The headline's ``Allocation.warm_start``: each replication's cut loop begins with cuts made
        on its own scenarios at the headline's optimum (:mod:`optimizer.formulation.warm_start`).
        Every replication starts from the same one, so the numbers still do not depend on
        ``n_jobs``.

    Returns
    -------
    Replications

    Raises
    ------
    ValueError
        ``replications`` or ``target_relative_se`` out of range.
    OptimizerError
        Fewer than two replications solved (the message gives the first one's reason).
    """
    from optimizer.analysis.confidence import resolve_confidence

    if isinstance(replications, bool) or not 2 <= int(replications) <= MAX_REPLICATIONS:
        raise OptionError(
            f"replications must be between 2 and {MAX_REPLICATIONS:,} (a spread needs two "
            f"draws), got {replications!r}"
        )
    if not 0.0 < float(target_relative_se) < 1.0:
        raise OptionError(
            f"target_relative_se must be in (0, 1), e.g. 0.01 for 1 %, got {target_relative_se!r}"
        )
    level = resolve_confidence(case, confidence)
    seeds = replication_seeds(seed, int(replications))
    tasks = run_in_order(
        _one_replication,
        (case, n_scenarios, method, dtype, optimize_method, level, start),
        [(r, s) for r, s in enumerate(seeds)],
        Backend(backend),
        n_jobs,
        scheduler,
        lambda i: f"replication {i + 1} (seed {seeds[i]})",
    )
    rows = []
    with closing(tasks):  # a stopped run cancels the replications still queued
        for row in tasks:
            rows.append(row)
            if on_replication:
                on_replication(len(rows))
    table = pd.DataFrame(rows, columns=list(REPLICATION_COLUMNS))
    ok = table[table["status"] == "optimal"]
    if len(ok) < 2:
        failed = table[table["status"] != "optimal"]
        raise OptimizerError(
            f"only {len(ok)} of {len(table)} replications solved, too few for an error bar; "
            f"first failure: {failed['reason'].iloc[0]}"
        )
    plain, plain_se = _mean_sd(ok["gap_closed_usd"])
    weighted, weighted_se = _mean_sd(ok["weighted_gap_closed_usd"])
    target = float(target_relative_se)
    return Replications(
        table=table,
        gap_closed_usd=plain,
        gap_closed_se_usd=plain_se,
        weighted_gap_closed_usd=weighted,
        weighted_gap_closed_se_usd=weighted_se,
        mean_se_usd=plain_se / math.sqrt(len(ok)),
        target_relative_se=target,
        advised_n_scenarios=advised_scenarios(n_scenarios, plain, plain_se, target),
        advised_weighted_n_scenarios=advised_scenarios(n_scenarios, weighted, weighted_se, target),
        n_scenarios=int(n_scenarios),
        seed=int(seed),
        replications=int(replications),
        solved=len(ok),
        confidence=level,
    )


def advised_scenarios(n_scenarios: int, mean: float, se: float, target: float) -> int:
    """``n · (se / (target · mean))²`` rounded up to a thousand (at least 1,000).

    A standard error that scales like ``1/sqrt(n)`` reaches ``target · mean`` there. A zero
    mean (nothing closed) has no relative precision: ``n`` is returned unchanged.
    """
    if mean <= 0:
        return int(n_scenarios)
    needed = n_scenarios * (se / (target * mean)) ** 2
    return max(1_000, math.ceil(needed / 1_000.0) * 1_000)


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    v = values.to_numpy(dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1))


def _one_replication(
    case: Case,
    n_scenarios: int,
    method: str,
    dtype: str,
    optimize_method: str,
    confidence: float,
    start: WarmStart | None,
    replication: int,
    seed: int,
) -> dict[str, Any]:
    """Simulate and optimise one replication; a case that does not solve becomes a status.

    On one BLAS thread (:func:`optimizer.formulation.blas_threads.one_blas_thread`), in this process
    or a worker alike, so the numbers are those of any other worker count.
    """
    from optimizer.analysis.confidence import VALIDATION_SEED_OFFSET, optimize_with_confidence

    row: dict[str, Any] = {"replication": replication, "seed": seed, "reason": ""}
    with one_blas_thread():
        scen = simulate(case, n_scenarios, seed=seed, method=method, dtype=dtype)
        val = None
        if confidence:  # margined as the headline is: on a validation set of its own
            val = simulate(
                case, n_scenarios, seed=seed + VALIDATION_SEED_OFFSET, method=method, dtype=dtype
            )
        try:
            res = optimize_with_confidence(
                case, scen, confidence, method=optimize_method, start=start, validation=val
            )
        except OptimizerError as exc:
            nan = math.nan
            return row | {
                "weighted_gap_closed_usd": nan,
                "gap_closed_usd": nan,
                "status": type(exc).__name__,
                "reason": str(exc),
            }
    seg = res.segments
    total_weighted = float((seg["weight"] * seg["gap_usd"]).sum())
    return row | {
        "weighted_gap_closed_usd": total_weighted - res.weighted_gap_usd,
        "gap_closed_usd": res.gap_closed_usd,
        "status": "optimal",
    }
