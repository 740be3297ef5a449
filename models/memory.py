"""How much memory a simulation needs, how much this machine has, and the check of the two.

:func:`simulation_bytes` estimates the peak of :func:`models.simulate` from the set's size and
the chunk buffers; :func:`available_memory_bytes` reads what this process may still allocate
(``/proc/meminfo``, the cgroup, ``RLIMIT_AS``, or ``PPCFIN_MEMORY_LIMIT_BYTES``), and
:func:`check_memory` refuses a set that would not fit before anything is allocated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.draws import CHUNK_SCENARIOS
from models.errors import SimulationOptionError
from models.loss_model import ROW_BLOCK, LossModel

__all__ = ["MEMORY_LIMIT_ENV", "available_memory_bytes", "check_memory", "simulation_bytes"]

MEMORY_LIMIT_ENV = "PPCFIN_MEMORY_LIMIT_BYTES"
"""Environment variable: bytes of memory to assume available instead of measuring (tests)."""
MEMINFO = "/proc/meminfo"
CGROUP_MEMORY = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")


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
            raise SimulationOptionError(
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


def check_memory(n_scenarios: int, model: LossModel, dtype: type, workers: int) -> None:
    """Refuse, before allocating anything, a set that would not fit in memory.

    Parameters
    ----------
    n_scenarios : int
    model : LossModel
        Its cells, factors, events and products size the set.
    dtype : numpy float type
        Of the loss matrix.
    workers : int
        Local workers holding chunks in flight (1 for a remote cluster).

    Raises
    ------
    SimulationError
        Saying how much the set needs, how much this machine has available, and what to do:
        fewer scenarios (at most how many would fit), float32, or free memory.
    """
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
    raise SimulationOptionError(
        f"{n_scenarios:,} scenarios x {model.n_cells:,} cells need about {need / 1e9:,.1f} GB "
        f"({name}); this machine has {available / 1e9:,.1f} GB available: {hint}"
    )


def _round_down(n: int) -> int:
    """``n`` rounded down to two significant digits (22,431,907 → 22,000,000)."""
    scale = 10 ** max(len(str(n)) - 2, 0)
    return n // scale * scale
