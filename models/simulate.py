"""``simulate``: the credit-loss Monte Carlo of a case, reproducible and parallel.

Scenarios are made in fixed-size chunks (:mod:`models.draws`); chunk i draws from the i-th
child of ``SeedSequence(seed)``, so the losses are bit-identical whatever the number of workers
or the backend (loky processes, threads, or a dask.distributed cluster; see
:mod:`models.workers`). The same property makes a lost worker harmless: its chunks are drawn
again, with the same numbers, or the run stops with :class:`~models.workers.WorkersLost`.

Importance sampling (the shift search and the mixture weights) is in :mod:`models.importance`,
the check of its tail that falls back to plain Monte Carlo in :mod:`models.tail_check`; the
memory a set needs, checked before allocating, in :mod:`models.memory`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata as importlib_metadata

import numpy as np

from models.cells import build_cells
from models.draws import CHUNK_SCENARIOS, Method, draw_chunks
from models.errors import OptionError, SimulationOptionError
from models.importance import sampling_plan
from models.loss_model import build_loss_model
from models.memory import (
    MEMORY_LIMIT_ENV,
    available_memory_bytes,
    check_memory,
    simulation_bytes,
)
from models.options import check_choice, check_n_jobs
from models.scenarios import ScenarioSet
from models.schema import Case
from models.tail_check import check_tail
from models.tilts import TailTilt, Tilt
from models.workers import Backend, WorkersLost, local_workers

__all__ = [
    "CHUNK_SCENARIOS",
    "MAX_SCENARIOS",
    "MEMORY_LIMIT_ENV",
    "Backend",
    "Method",
    "TailTilt",
    "Tilt",
    "WorkersLost",
    "available_memory_bytes",
    "simulate",
    "simulation_bytes",
]

MAX_SCENARIOS = 50_000_000


def check_arguments(
    n_scenarios: object, seed: object, method: object, n_jobs: object, backend: object
) -> tuple[Method, Backend]:
    """The sampling method and backend of valid :func:`simulate` arguments, or one
    :class:`SimulationOptionError` naming the argument and what is valid."""
    if isinstance(n_scenarios, bool) or not isinstance(n_scenarios, int | np.integer):
        raise SimulationOptionError(f"n_scenarios must be an integer, got {n_scenarios!r}")
    if not 1 <= n_scenarios <= MAX_SCENARIOS:
        raise SimulationOptionError(
            f"n_scenarios must be in [1, {MAX_SCENARIOS:,}], got {n_scenarios}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationOptionError(f"seed must be a non-negative integer, got {seed!r}")
    method = check_choice(method, Method, "method", SimulationOptionError)
    backend = check_choice(backend, Backend, "backend", SimulationOptionError)
    try:
        check_n_jobs(n_jobs)
    except OptionError as exc:  # the simulator's own kind, as for its other arguments
        raise SimulationOptionError(str(exc)) from None
    return method, backend


def check_dtype(dtype: object) -> np.dtype:
    """The loss matrix's dtype, float64 or float32, or :class:`SimulationOptionError`."""
    try:
        found = np.dtype(dtype)
        shown = found.name
    except TypeError:  # not a dtype at all ("bogus"); None means float64 to numpy: refused too
        found, shown = np.dtype(np.void), repr(dtype)
    if dtype is None or found.name not in ("float64", "float32"):
        raise SimulationOptionError(f"dtype must be float64 or float32, got {shown}")
    return found


def simulate(
    case: Case,
    n_scenarios: int,
    seed: int = 0,
    method: str | Method = Method.mc,
    n_jobs: int = 1,
    backend: str | Backend = Backend.loky,
    scheduler: str | None = None,
    granular: bool = False,
    dtype: type = np.float64,
    tilt: TailTilt | Tilt | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScenarioSet:
    """Simulate annual credit losses of every cell of a case.

    Parameters
    ----------
    case : Case
    n_scenarios : int
        Number of scenarios S, 1 to 50 million.
    seed : int
        Non-negative; the same seed gives bit-identical losses for any ``n_jobs``/``backend``.
    method : {"mc", "antithetic", "sobol", "importance"}
    n_jobs : int
        Worker processes (or threads); -1 for all cores.
    backend : {"loky", "threading", "dask"}
        ``"dask"`` runs chunks on a dask.distributed cluster: the one at ``scheduler``
        (``tcp://host:port``), or a local cluster of ``n_jobs`` workers when omitted.
    granular : bool
        Binomial defaults in pools of gap_k / avg ticket loans instead of the large-pool limit.
    dtype : numpy float type
        float64 (default) or float32 for the loss matrix (halves memory; ~1e-7 relative error).
    tilt : TailTilt or Tilt, optional
        Only used with ``method="importance"``. Default ``TailTilt()``: every factor shifted
        toward the 99.9 % tail of the equal-weighted book, the shift found by seeded
        cross-entropy pilots (:mod:`models.importance`). A :class:`Tilt` is the fixed macro-only
        shift of earlier versions.
    progress : callable, optional
        Called with the number of scenarios finished after each chunk (counted again from the
        start when an importance-sampled set falls back to plain Monte Carlo).

    Returns
    -------
    ScenarioSet
        ``losses`` of shape (S, J) and ``probabilities`` of shape (S,). Importance sampling
        records its shift and ``metadata["importance"]``, the tail check of
        :func:`models.tail_check.tail_diagnostic`.

    Raises
    ------
    SimulationOptionError
        (a :class:`SimulationError` and a ``ValueError``) A bad argument, dask unavailable / its scheduler unreachable, or more memory needed
        than this machine has available (checked before allocating; see
        :func:`simulation_bytes` and :func:`available_memory_bytes`).
    WorkersLost
        Worker processes kept dying (a :class:`SimulationError`): a loky worker lost once is
        replaced and its chunks drawn again with the same numbers (``RuntimeWarning``).

    Warns
    -----
    RuntimeWarning
        An importance-sampled tail that rests on a few weights (tail effective size below 30
        or below half of plain Monte Carlo's S(1 − α), or one scenario above 20 % of the
        tail's probability; :mod:`models.tail_check`). Where plain Monte Carlo would expect
        more tail scenarios than that effective size, the set returned is the plain Monte
        Carlo set of the same seed, ``method="mc"``, ``metadata["importance"]["fallback"]``
        true; otherwise the importance-sampled set is kept.
    """
    method, backend = check_arguments(n_scenarios, seed, method, n_jobs, backend)
    check_dtype(dtype)
    if tilt is not None and not isinstance(tilt, TailTilt | Tilt):
        raise SimulationOptionError(f"tilt must be a TailTilt or a Tilt, got {tilt!r:.60}")
    model = build_loss_model(case)
    tilt = (tilt or TailTilt()) if method is Method.importance else None
    if tilt is not None:
        tilt.check(*((model.n_cells,) if isinstance(tilt, TailTilt) else ()))
    # local workers hold chunks in flight; a remote cluster's memory is not this machine's
    workers = 1 if scheduler is not None else local_workers(n_jobs)
    check_memory(n_scenarios, model, dtype, workers)

    plan, tilt_meta = None, None
    if tilt is not None:  # in this process, before any chunk: a function of (case, seed, tilt)
        plan, tilt_meta = sampling_plan(model, tilt, int(seed), granular)
    where = (backend, n_jobs, scheduler)
    losses, log_lr, factors, events = draw_chunks(
        model, method, plan, int(seed), n_scenarios, granular, dtype, where, progress
    )
    log_lr -= log_lr.max()
    probabilities = np.exp(log_lr, out=log_lr)
    probabilities /= probabilities.sum()
    importance = None
    if plan is not None:
        importance = check_tail(losses, probabilities, *tilt.tail(model.n_cells), stacklevel=3)
        if importance["fallback"]:  # warned: the plain Monte Carlo set of the same seed
            del losses, probabilities, factors, events
            method = Method.mc
            losses, _, factors, events = draw_chunks(
                model, method, None, int(seed), n_scenarios, granular, dtype, where, progress
            )
            probabilities = np.full(n_scenarios, 1.0 / n_scenarios)

    ess = float(1.0 / np.sum(probabilities**2))
    return ScenarioSet(
        losses=losses,
        probabilities=probabilities,
        cells=build_cells(case),
        factors=factors,
        factor_names=model.factor_names,
        events=events,
        event_ids=model.event_ids,
        seed=int(seed),
        method=method.value,
        metadata={
            "case_name": case.name,
            "case_sha256": case.content_sha256,
            "stress": case.stress.id if case.stress else None,
            "granular": granular,
            "chunk_scenarios": CHUNK_SCENARIOS,
            "dtype": np.dtype(dtype).name,
            "effective_sample_size": ess,
            "tilt": tilt_meta,
            **({"importance": importance} if importance is not None else {}),
            "versions": _versions(),
        },
    )


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("ppc-finance", "numpy", "scipy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out
