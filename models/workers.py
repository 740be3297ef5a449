"""Where parallel work runs, in order: in process, on loky processes or threads, or dask.

The one dispatcher of the tool: the simulator's chunks, a frontier's blocks of points and a
sensitivity's perturbed points all go through :func:`run_in_order`.

A task is a pure function of its arguments (a chunk draws from its own ``SeedSequence`` child; a
frontier block or a sensitivity point solves from a fixed starting state), so a task run twice
gives the same result. That makes a lost worker survivable:

- loky: when a worker process dies (the operating system killing it for memory, a segfault),
  the tasks not yet returned are run again once on fresh workers, with a ``RuntimeWarning``;
  a second loss raises :class:`WorkersLost`. loky kills the broken pool's other workers itself.
- dask: the scheduler already re-runs a task whose worker died, up to
  ``distributed.scheduler.allowed-failures`` times; when it gives up (``KilledWorker``) we raise
  :class:`WorkersLost`. The arguments shared by every task are scattered to every worker; when
  all of those die together dask forgets them and cancels the tasks: they are sent again and
  the unfinished tasks resubmitted once (``RuntimeWarning``), a second time raises
  :class:`WorkersLost`. Futures are submitted directly, a few per worker at a time, rather than
  through joblib's dask backend: joblib 1.6 waits forever on a task dask gave up on, and runs
  everything in the client process when the cluster has a single worker thread.

On any exception (Ctrl-C included) the tasks not yet finished are cancelled (dask) or their
workers killed (loky, by joblib), so nothing keeps computing for a run that has stopped. A loky
worker also watches the process that started it and exits within a second of its death
(SIGKILL gives the parent no chance to stop it; loky would keep it for minutes).
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from enum import StrEnum
from itertools import islice
from typing import Any

from joblib import Parallel, cpu_count, delayed

from models.errors import (
    ComputationError,
    SimulationError,
    SimulationOptionError,
)

WORKER_RETRIES = 1
"""Times the unfinished tasks are run again after a loky worker dies, or after a dask cluster
loses the inputs every task shares."""
TASKS_PER_DASK_WORKER = 2
"""Tasks in flight per dask worker thread: keeps workers busy without piling up results."""
DASK_WORKER_WAIT_S = 60.0
"""How long to wait for a dask worker to come back after every worker died."""

_ADVICE = (
    "the operating system usually kills a worker that runs out of memory: use fewer workers "
    "(--jobs / n_jobs), fewer scenarios or, to simulate, float32 losses (--float32)"
)


class Backend(StrEnum):
    """Where parallel work runs: local loky processes, threads of this process, or dask.

    ``dask`` means the cluster at the scheduler address or, without one, a local cluster of one
    single-threaded process per worker (:func:`run_in_order`).
    """

    loky = "loky"
    threading = "threading"
    dask = "dask"


def backend_for(scheduler: str | None) -> Backend:
    """Where parallel work runs: a dask.distributed scheduler address means that cluster,
    none means local loky processes."""
    return Backend.dask if scheduler else Backend.loky


class WorkersLost(SimulationError, ComputationError, RuntimeError):
    """Worker processes kept dying (simulation chunks, frontier blocks, sensitivity points),
    even after the unfinished tasks were run again.

    Not a bad argument (the CLI exits 1, not 2): the machine or the cluster could not run the
    work. Nothing is returned and nothing was written.
    """

    exit_code = 1


PARENT_POLL_S = 0.5
"""How often a loky worker checks that the process that started it is alive."""
_watching: list[int] = []  # in a worker: the parent being watched (one watcher per process)


def _watch_parent(parent_pid: int) -> None:
    """In a worker process: exit as soon as ``parent_pid`` is gone (started once per process)."""
    if os.getpid() == parent_pid or _watching:
        return
    _watching.append(parent_pid)
    first_ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # alive, but another user's: the pid was reused, or never ours
            if os.getppid() != first_ppid:  # re-parented: whoever started us has died
                os._exit(1)

    threading.Thread(target=watch, name="ppcfin-parent-watch", daemon=True).start()


class _ParentWatched:
    """``func`` run in a loky worker that dies with the process that submitted it."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func
        self.parent_pid = os.getpid()

    def __call__(self, *args: Any) -> Any:
        _watch_parent(self.parent_pid)
        return self.func(*args)


Tasks = Sequence[tuple[Any, ...]]
"""The per-call arguments of every task, in order."""


def local_workers(n_jobs: int) -> int:
    """Workers on this machine for ``n_jobs`` (joblib's convention: -1 all cores, -2 all but one).

    Examples
    --------
    >>> local_workers(3)
    3
    """
    return n_jobs if n_jobs > 0 else max(1, cpu_count() + 1 + n_jobs)


def run_in_order(
    func: Callable[..., Any],
    shared: tuple[Any, ...],
    varying: Tasks | Callable[[int], Tasks],
    backend: Backend,
    n_jobs: int,
    scheduler: str | None = None,
    describe: Callable[[int], str] = lambda i: f"task {i}",
) -> Iterator[Any]:
    """Yield ``func(*shared, *varying[i])`` for i = 0, 1, ... in order.

    Without a scheduler, a single task, or every task when ``n_jobs=1``, runs in this process;
    with a ``scheduler`` every task goes to that cluster. No more local workers are started than
    there are tasks.

    Parameters
    ----------
    func : callable
        A pure function of its arguments (re-running it gives the same result).
    shared : tuple
        Arguments common to every call (sent once per dask worker).
    varying : sequence of tuple, length n_tasks, or callable
        The per-call arguments; or ``varying(workers) -> sequence of tuple`` to split the work
        into one task per worker, ``workers`` being ``n_jobs`` (when > 0), else the worker
        threads of the cluster at ``scheduler``, else this machine's cores
        (:func:`local_workers`).
    backend, n_jobs, scheduler
        As for :func:`models.simulate`.
    describe : callable
        Names task i and those after it for error messages (e.g. "scenarios 16,384 to 33,767").

    Raises
    ------
    WorkersLost
        A worker died twice (loky), or dask gave up on a task whose workers kept dying.
    SimulationError
        dask.distributed is missing or the scheduler cannot be reached.
    """
    if backend is Backend.dask and scheduler is not None:
        yield from _on_dask(func, shared, varying, n_jobs, scheduler, describe)
        return
    tasks = varying(local_workers(n_jobs)) if callable(varying) else varying
    workers = min(local_workers(n_jobs), len(tasks))
    if workers <= 1:
        for args in tasks:
            yield func(*shared, *args)
        return
    if backend is Backend.dask:  # a local cluster of one single-threaded process per worker
        yield from _on_dask(func, shared, tasks, workers, None, describe)
        return
    done = 0
    task = _ParentWatched(func) if backend is Backend.loky else func
    for attempt in range(WORKER_RETRIES + 1):
        parallel = Parallel(n_jobs=workers, backend=backend.value, return_as="generator")
        try:
            for result in parallel(delayed(task)(*shared, *args) for args in tasks[done:]):
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
    varying: Tasks | Callable[[int], Tasks],
    n_jobs: int,
    scheduler: str | None,
    describe: Callable[[int], str],
) -> Iterator[Any]:
    try:
        from dask.distributed import Client, KilledWorker, LocalCluster
    except ImportError:
        raise SimulationOptionError(
            "backend 'dask' needs dask.distributed: pip install 'ppc-finance[dask]'"
        ) from None
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise SimulationOptionError(
                f"cannot reach the dask scheduler at {scheduler}: {exc}"
            ) from None
    else:
        cluster = LocalCluster(
            n_workers=n_jobs,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        )
        client = Client(cluster)
    pending: deque = deque()
    try:
        nthreads = client.nthreads()
        threads = sum(nthreads.values()) or max(n_jobs, 1)
        if callable(varying):  # one task per worker, or per thread of the cluster
            varying = varying(n_jobs if n_jobs > 0 else threads)
        index = 0
        for attempt in range(WORKER_RETRIES + 1):
            if attempt:
                _wait_for_workers(client, len(nthreads), describe(index))
            # hash=False: fresh keys, never those of inputs dask has just forgotten
            common = client.scatter(list(shared), broadcast=True, hash=False)
            futures = (client.submit(func, *common, *args, pure=False) for args in varying[index:])
            pending.extend(islice(futures, TASKS_PER_DASK_WORKER * threads))
            while pending:
                try:
                    result = pending[0].result()
                except KilledWorker:
                    raise _gave_up(describe(index)) from None
                except CancelledError as exc:
                    # scattered inputs cannot be recomputed: when every worker holding them
                    # dies, dask forgets them and cancels the tasks that need them. The task
                    # that killed the last worker, if dask gave up on it, was reported first.
                    for k, future in enumerate(pending):
                        if future.status == "error" and isinstance(
                            future.exception(), KilledWorker
                        ):
                            raise _gave_up(describe(index + k)) from None
                    reason = getattr(exc, "reason", "cancelled")
                    if attempt == WORKER_RETRIES:
                        raise WorkersLost(
                            f"dask dropped {describe(index)} ({reason}): every worker holding "
                            "its inputs died, again after they were sent afresh; "
                            f"{_ADVICE}, or check the workers' memory limit and logs"
                        ) from None
                    warnings.warn(
                        f"every dask worker holding the inputs died ({reason}); they are sent "
                        f"again and {describe(index)} computed afresh (same seeds, so the same "
                        "numbers)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    client.cancel(list(pending))
                    pending.clear()
                    break
                pending.popleft().release()
                pending.extend(islice(futures, 1))
                index += 1
                yield result
            else:
                return
    finally:
        if pending:
            client.cancel(list(pending))
        client.close()
        if cluster is not None:
            cluster.close()


def _gave_up(remaining: str) -> WorkersLost:
    return WorkersLost(
        f"dask gave up on {remaining}: each worker that ran it died (KilledWorker); {_ADVICE}, "
        "or check the workers' memory limit and logs"
    )


def _wait_for_workers(client: Any, wanted: int, remaining: str) -> None:
    """Wait for the cluster to replace its lost workers (a nanny restarts them in seconds).

    Inputs scattered to a full cluster survive a worker's death; with fewer workers back, the
    run goes on after ``DASK_WORKER_WAIT_S`` on those there are.
    """
    try:
        client.wait_for_workers(max(wanted, 1), timeout=DASK_WORKER_WAIT_S)
    except (TimeoutError, OSError) as exc:
        try:
            alive = client.nthreads()
        except OSError:  # the scheduler itself is gone
            alive = {}
        if not alive:
            raise WorkersLost(
                f"every dask worker died with {remaining} still to compute, and none came "
                f"back within {DASK_WORKER_WAIT_S:g} s ({type(exc).__name__}); {_ADVICE}"
            ) from None
