"""``simulate``: the credit-loss Monte Carlo of a case, reproducible and parallel.

Scenarios are made in fixed-size chunks; chunk i draws from the i-th child of
``SeedSequence(seed)``, so the losses are bit-identical whatever the number of workers or the
backend (loky processes, threads, or a dask.distributed cluster; see :mod:`models.workers`).
The same property makes a lost worker harmless: its chunks are drawn again, with the same
numbers, or the run stops with :class:`~models.workers.WorkersLost`.

Importance sampling (the shift search and the mixture weights) is in :mod:`models.importance`,
the check of its tail that falls back to plain Monte Carlo in :mod:`models.tail_check`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from enum import StrEnum
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
from scipy import special
from scipy.stats import qmc

from models.cells import build_cells
from models.errors import SimulationError
from models.importance import SamplingPlan, TailTilt, Tilt, sampling_plan
from models.loss_model import ROW_BLOCK, LossModel, build_loss_model, chunk_losses
from models.scenarios import ScenarioSet
from models.schema import Case
from models.tail_check import check_tail
from models.workers import Backend, WorkersLost, local_workers, run_in_order

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

CHUNK_SCENARIOS = 16_384
"""Scenarios per chunk. Fixed (never derived from n_jobs) so results do not depend on it."""
MAX_SCENARIOS = 50_000_000
MEMORY_LIMIT_ENV = "PPCFIN_MEMORY_LIMIT_BYTES"
"""Environment variable: bytes of memory to assume available instead of measuring (tests)."""
MEMINFO = "/proc/meminfo"
CGROUP_MEMORY = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")


class Method(StrEnum):
    """How scenarios are drawn."""

    mc = "mc"
    """Plain Monte Carlo, equal probabilities."""
    antithetic = "antithetic"
    """Pairs (Z, −Z) of factor draws and (U, 1−U) of event draws; equal probabilities."""
    sobol = "sobol"
    """Scrambled Sobol points for factors, events and LGD scores; equal probabilities."""
    importance = "importance"
    """Every factor shifted and events tilted toward the book's tail (a defensive mixture with
    the model); likelihood-ratio weights. See :mod:`models.importance`."""


def _check_arguments(
    n_scenarios: object, seed: object, method: object, n_jobs: object, backend: object
) -> tuple[Method, Backend]:
    if isinstance(n_scenarios, bool) or not isinstance(n_scenarios, int | np.integer):
        raise SimulationError(f"n_scenarios must be an integer, got {n_scenarios!r}")
    if not 1 <= n_scenarios <= MAX_SCENARIOS:
        raise SimulationError(f"n_scenarios must be in [1, {MAX_SCENARIOS:,}], got {n_scenarios}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        method = Method(method)
    except ValueError:
        valid = ", ".join(m.value for m in Method)
        raise SimulationError(f"method must be one of {valid}; got {method!r}") from None
    try:
        backend = Backend(backend)
    except ValueError:
        valid = ", ".join(b.value for b in Backend)
        raise SimulationError(f"backend must be one of {valid}; got {backend!r}") from None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1):
        raise SimulationError(
            f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}"
        )
    return method, backend


def _sobol_uniforms(dim: int, seed: int, start: int, count: int) -> np.ndarray:
    """Points start..start+count of one scrambled Sobol sequence (same for every chunking)."""
    engine = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng([seed, 0x50B01]))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warning for non-power-of-2 n
        u = engine.random(count)
    return np.clip(u, 1e-12, 1.0 - 1e-12)


def _draw_chunk(
    model: LossModel,
    method: Method,
    plan: SamplingPlan | None,
    seed: int,
    child: np.random.SeedSequence,
    start: int,
    count: int,
    granular: bool,
    dtype: type,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk: (losses (m, J), log likelihood ratio (m,), factors (m, F), events (m, E))."""
    rng = np.random.default_rng(child)
    n_f, n_e, n_p = model.n_factors, model.n_events, model.n_products
    p_event = model.event_probability
    log_lr = np.zeros(count)
    if method is Method.sobol:
        u = _sobol_uniforms(n_f + n_e + n_p + (model.t_dof is not None), seed, start, count)
        normals = special.ndtri(u[:, :n_f])
        event_u = u[:, n_f : n_f + n_e]
        lgd_normals = special.ndtri(u[:, n_f + n_e : n_f + n_e + n_p])
        mixing_u = u[:, -1] if model.t_dof is not None else None
    else:
        if method is Method.antithetic:
            half = (count + 1) // 2
            normals = rng.standard_normal((half, n_f))
            normals = np.concatenate([normals, -normals])[:count]
            event_u = rng.random((half, n_e))
            event_u = np.concatenate([event_u, 1.0 - event_u])[:count]
            lgd_normals = rng.standard_normal((half, n_p))
            lgd_normals = np.concatenate([lgd_normals, -lgd_normals])[:count]
        else:
            normals = rng.standard_normal((count, n_f))
            event_u = rng.random((count, n_e))
            lgd_normals = rng.standard_normal((count, n_p))
        mixing_u = rng.random(count) if model.t_dof is not None else None

    mixing = None
    if model.t_dof is not None:
        from scipy.stats import chi2

        mixing = chi2.ppf(mixing_u, model.t_dof) / model.t_dof
    if plan is not None:
        # after the factors, events and LGD scores: those stay plain Monte Carlo's draws
        component_u = rng.random(count) if plan.defensive_share > 0 else None
        flags, log_lr = plan.apply(normals, event_u, p_event, component_u, mixing)
    else:
        flags = event_u < p_event

    losses = chunk_losses(
        model, normals, flags, mixing, lgd_normals, rng if granular else None, dtype
    )
    return losses, log_lr, normals.astype(np.float32), flags


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
        :func:`models.importance.tail_diagnostic`.

    Raises
    ------
    SimulationError
        A bad argument, dask unavailable / its scheduler unreachable, or more memory needed
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
    method, backend = _check_arguments(n_scenarios, seed, method, n_jobs, backend)
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise SimulationError(f"dtype must be float64 or float32, got {np.dtype(dtype)}")
    if tilt is not None and not isinstance(tilt, TailTilt | Tilt):
        raise SimulationError(f"tilt must be a TailTilt or a Tilt, got {tilt!r:.60}")
    model = build_loss_model(case)
    tilt = (tilt or TailTilt()) if method is Method.importance else None
    if tilt is not None:
        tilt.check(*((model.n_cells,) if isinstance(tilt, TailTilt) else ()))
    # local workers hold chunks in flight; a remote cluster's memory is not this machine's
    workers = 1 if scheduler is not None else local_workers(n_jobs)
    _check_memory(n_scenarios, model, dtype, workers)

    plan, tilt_meta = None, None
    if tilt is not None:  # in this process, before any chunk: a function of (case, seed, tilt)
        plan, tilt_meta = sampling_plan(model, tilt, int(seed), granular)
    where = (backend, n_jobs, scheduler)
    losses, log_lr, factors, events = _draw_all(
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
            losses, _, factors, events = _draw_all(
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


def _draw_all(
    model: LossModel,
    method: Method,
    plan: SamplingPlan | None,
    seed: int,
    n_scenarios: int,
    granular: bool,
    dtype: type,
    where: tuple[Backend, int, str | None],
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every chunk, in order: losses (S, J), log likelihood ratio (S,), factors, events."""
    backend, n_jobs, scheduler = where
    starts = list(range(0, n_scenarios, CHUNK_SCENARIOS))
    children = np.random.SeedSequence(seed).spawn(len(starts))

    losses = np.empty((n_scenarios, model.n_cells), dtype=dtype)
    log_lr = np.empty(n_scenarios)
    factors = np.empty((n_scenarios, model.n_factors), dtype=np.float32)
    events = np.empty((n_scenarios, model.n_events), dtype=bool)

    chunks = run_in_order(
        _draw_chunk,
        (model, method, plan, seed),
        [
            (child, start, min(CHUNK_SCENARIOS, n_scenarios - start), granular, dtype)
            for child, start in zip(children, starts, strict=True)
        ],
        backend,
        n_jobs,
        scheduler,
        describe=lambda i: f"scenarios {starts[i]:,} to {n_scenarios - 1:,}",
    )
    # results come back in submission order, so each chunk lands in its own rows
    for start, (chunk, chunk_lr, chunk_f, chunk_e) in zip(starts, chunks, strict=True):
        stop = start + chunk.shape[0]
        losses[start:stop], log_lr[start:stop] = chunk, chunk_lr
        factors[start:stop], events[start:stop] = chunk_f, chunk_e
        if progress is not None:
            progress(stop)
    return losses, log_lr, factors, events


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("ppc-finance", "numpy", "scipy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


# --- memory, checked before allocating ---------------------------------------------------------
def simulation_bytes(
    n_scenarios: int,
    n_cells: int,
    n_factors: int,
    n_events: int,
    dtype: type | str = np.float64,
    workers: int = 1,
    n_products: int = 0,
) -> int:
    """Peak bytes :func:`simulate` needs: ``n_scenarios`` x per-scenario bytes + chunk buffers.

    Per scenario: the loss row (``n_cells`` values of ``dtype``), float32 factors, bool events,
    the float64 log likelihood ratio and, at the end, the weights, probabilities and their
    square (effective sample size). Per chunk alive: its loss block and its float64 draws
    (factors, events, LGD scores, Sobol points), plus row-block temporaries. Two chunks are
    alive in this process (the one being copied in while the next is drawn); with several
    workers, up to two more per worker in flight and two per worker buffered (joblib's
    pre-dispatch). Measured against ``tracemalloc`` in ``tests/test_memory_estimate.py``.
    """
    itemsize = np.dtype(dtype).itemsize
    per_scenario = n_cells * itemsize + 4 * n_factors + n_events + 4 * 8
    chunk = min(int(n_scenarios), CHUNK_SCENARIOS)
    per_chunk = chunk * (n_cells * itemsize + 24 * (n_factors + n_events + n_products))
    alive = 2 if workers <= 1 else 2 + 4 * workers
    temporaries = 3 * min(chunk, ROW_BLOCK) * n_cells * 8
    return int(n_scenarios) * per_scenario + alive * per_chunk + temporaries


def available_memory_bytes() -> int | None:
    """Bytes this process may still allocate, or None when the system does not say.

    The least of ``MemAvailable`` (``/proc/meminfo``, else ``os.sysconf`` free pages), the
    cgroup v2 limit less its usage and the ``RLIMIT_AS`` soft limit less this process's
    address space. ``PPCFIN_MEMORY_LIMIT_BYTES`` (bytes) replaces them all.

    Raises
    ------
    SimulationError
        ``PPCFIN_MEMORY_LIMIT_BYTES`` is set but not a positive integer.
    """
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override is not None:
        digits = override.strip().replace("_", "")
        if not digits.isdigit() or int(digits) <= 0:
            raise SimulationError(
                f"{MEMORY_LIMIT_ENV}={override!r}: must be a positive number of bytes "
                "(e.g. 8000000000), or unset to measure the machine"
            )
        return int(digits)
    found = [
        v for v in (_meminfo_available(), _cgroup_headroom(), _address_headroom()) if v is not None
    ]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        with open(MEMINFO, encoding="ascii") as fh:
            kb = [line.split()[1] for line in fh if line.startswith("MemAvailable:")]
        return int(kb[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    try:
        limit, used = (Path(p).read_text(encoding="ascii").strip() for p in CGROUP_MEMORY)
        return None if limit == "max" else max(int(limit) - int(used), 0)
    except (OSError, ValueError):
        return None


def _address_headroom() -> int | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:  # pages of address space this process has mapped already
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(soft - mapped, 0)


def _check_memory(n_scenarios: int, model: LossModel, dtype: type, workers: int) -> None:
    """Refuse, before allocating anything, a set that would not fit in memory."""
    dims = (model.n_cells, model.n_factors, model.n_events, dtype, workers, model.n_products)
    need, available = simulation_bytes(n_scenarios, *dims), available_memory_bytes()
    if available is None or need <= available:
        return
    per_scenario = simulation_bytes(CHUNK_SCENARIOS + 1, *dims) - simulation_bytes(
        CHUNK_SCENARIOS, *dims
    )
    fits = (available - simulation_bytes(CHUNK_SCENARIOS, *dims)) // per_scenario
    fits = int(fits) + CHUNK_SCENARIOS if fits > 0 else 0
    name = np.dtype(dtype).name
    hint = f"use fewer scenarios (at most ~{_round_down(fits):,})" if fits else "free memory"
    if name == "float64":
        hint += " or --float32 (dtype float32: half the loss matrix)"
    raise SimulationError(
        f"{n_scenarios:,} scenarios x {model.n_cells:,} cells need about {need / 1e9:,.1f} GB "
        f"({name}); this machine has {available / 1e9:,.1f} GB available: {hint}"
    )


def _round_down(n: int) -> int:
    """``n`` rounded down to two significant digits (22,431,907 → 22,000,000)."""
    scale = 10 ** max(len(str(n)) - 2, 0)
    return n // scale * scale
