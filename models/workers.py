"""Where the simulator's chunks run, in order: in process, on loky processes or threads, or dask.

A chunk is a pure function of its arguments (its own ``SeedSequence`` child), so a chunk drawn
twice gives the same numbers. That makes a lost worker survivable:

- loky: when a worker process dies (the operating system killing it for memory, a segfault),
  the chunks not yet returned are drawn again once on fresh workers, with a ``RuntimeWarning``;
  a second loss raises :class:`WorkersLost`. loky kills the broken pool's other workers itself.
- dask: the scheduler already re-runs a task whose worker died, up to
  ``distributed.scheduler.allowed-failures`` times; when it gives up (``KilledWorker``) we raise
  :class:`WorkersLost`. Futures are submitted directly, a few per worker at a time, rather than
  through joblib's dask backend: joblib 1.6 waits forever on a task dask gave up on, and runs
  everything in the client process when the cluster has a single worker thread.

On any exception (Ctrl-C included) the tasks not yet finished are cancelled (dask) or their
workers killed (loky, by joblib), so nothing keeps computing for a run that has stopped.
"""

from __future__ import annotations

import re
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from enum import StrEnum
from typing import Any

from joblib import Parallel, delayed

from models.errors import SimulationError

WORKER_RETRIES = 1
"""Times the unfinished chunks are drawn again after a loky worker dies."""
TASKS_PER_DASK_WORKER = 2
"""Chunks in flight per dask worker thread: keeps workers busy without piling up results."""

_ADVICE = (
    "the operating system usually kills a worker that runs out of memory: use fewer workers "
    "(--jobs / n_jobs), float32 losses (--float32) or fewer scenarios"
)


class Backend(StrEnum):
    loky = "loky"
    threading = "threading"
    dask = "dask"


class WorkersLost(SimulationError, RuntimeError):
    """Worker processes died while simulating, even after the chunks were drawn again.

    Not a bad argument (the CLI exits 1, not 2): the machine or the cluster could not run the
    simulation. Nothing is returned and nothing was written.
    """


def run_in_order(
    func: Callable[..., Any],
    shared: tuple[Any, ...],
    varying: Sequence[tuple[Any, ...]],
    backend: Backend,
    n_jobs: int,
    scheduler: str | None = None,
    describe: Callable[[int], str] = lambda i: f"task {i}",
) -> Iterator[Any]:
    """Yield ``func(*shared, *varying[i])`` for i = 0, 1, ... in order.

    Parameters
    ----------
    func : callable
        A pure function of its arguments (re-running it gives the same result).
    shared : tuple
        Arguments common to every call (sent once per dask worker).
    varying : sequence of tuple, length n_tasks
        The per-call arguments.
    backend, n_jobs, scheduler
        As for :func:`models.simulate`.
    describe : callable
        Names task i for error messages (e.g. "scenarios 16,384 onward").

    Raises
    ------
    WorkersLost
        A worker died twice (loky), or dask gave up on a task whose workers kept dying.
    SimulationError
        dask.distributed is missing or the scheduler cannot be reached.
    """
    if len(varying) <= 1 or (n_jobs == 1 and backend is not Backend.dask):
        for args in varying:
            yield func(*shared, *args)
        return
    if backend is Backend.dask:
        yield from _on_dask(func, shared, varying, n_jobs, scheduler, describe)
        return
    done = 0
    for attempt in range(WORKER_RETRIES + 1):
        parallel = Parallel(n_jobs=n_jobs, backend=backend.value, return_as="generator")
        try:
            for result in parallel(delayed(func)(*shared, *args) for args in varying[done:]):
                done += 1
                yield result
            return
        except BrokenProcessPool as exc:
            codes = _exit_codes(exc)
            if attempt == WORKER_RETRIES:
                raise WorkersLost(
                    f"a worker process died ({codes}) with {describe(done)} still to compute, "
                    f"again after those were started afresh on new workers; {_ADVICE}"
                ) from None
            warnings.warn(
                f"a worker process died ({codes}); {describe(done)} are computed again on new "
                "workers (same seeds, so the same numbers)",
                RuntimeWarning,
                stacklevel=2,
            )


def _exit_codes(exc: BaseException) -> str:
    """loky's "exit codes of the workers are {SIGKILL(-9)}", shortened; else the message."""
    match = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
    if match:
        return f"exit {match.group(1)}"
    return str(exc).split("\n", 1)[0] or type(exc).__name__


def _on_dask(
    func: Callable[..., Any],
    shared: tuple[Any, ...],
    varying: Sequence[tuple[Any, ...]],
    n_jobs: int,
    scheduler: str | None,
    describe: Callable[[int], str],
) -> Iterator[Any]:
    try:
        from dask.distributed import Client, KilledWorker, LocalCluster
    except ImportError:
        raise SimulationError(
            "backend 'dask' needs dask.distributed: pip install 'ppc-finance[dask]'"
        ) from None
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise SimulationError(
                f"cannot reach the dask scheduler at {scheduler}: {exc}"
            ) from None
    else:
        cluster = LocalCluster(
            n_workers=n_jobs if n_jobs > 0 else None,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        )
        client = Client(cluster)
    pending: deque = deque()
    try:
        threads = sum(client.nthreads().values()) or max(n_jobs, 1)
        common = client.scatter(list(shared), broadcast=True)
        upcoming = iter(varying)

        def submit_next() -> None:
            args = next(upcoming, None)
            if args is not None:
                pending.append(client.submit(func, *common, *args, pure=False))

        for _ in range(TASKS_PER_DASK_WORKER * threads):
            submit_next()
        index = 0
        while pending:
            try:
                result = pending[0].result()
            except KilledWorker:
                raise WorkersLost(
                    f"dask gave up on {describe(index)}: each worker that ran it died "
                    f"(KilledWorker); {_ADVICE}, or check the workers' memory limit and logs"
                ) from None
            pending.popleft().release()
            submit_next()
            index += 1
            yield result
    finally:
        if pending:
            client.cancel(list(pending))
        client.close()
        if cluster is not None:
            cluster.close()
