"""Fault injection for ``test_faults.py``: a task wrapper that kills the worker running it, and
the processes a test leaves behind.

Kept to the standard library (plus psutil when installed): loky and dask workers import this
module to unpickle :class:`KillWorker`, and a light import keeps their start-up short.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any


class KillWorker:
    """Call ``func`` in a worker, but SIGKILL the worker process on a chosen call.

    Parameters
    ----------
    func : callable
        The task function (pickled by reference).
    marker : path
        A file created by the first kill; with ``always=False`` only the call that creates it
        dies, so the retried task succeeds. ``<marker>.pids`` lists the worker of every call.
    when : callable, optional
        ``when(args) -> bool`` picks the calls that may kill (default: every call).
    always : bool
        Kill on every picked call, retries included.
    """

    def __init__(self, func: Any, marker: Path, when: Any = None, always: bool = False):
        self.func, self.marker, self.when, self.always = func, str(marker), when, always
        self.parent_pid = os.getpid()  # never kill the test process itself

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with open(self.marker + ".pids", "a") as fh:
            fh.write(f"{os.getpid()} {start_time(os.getpid())!r}\n")
        picked = self.when is None or self.when(args)
        if picked and os.getpid() != self.parent_pid and (self.always or self._first()):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.func(*args, **kwargs)

    def _first(self) -> bool:
        try:  # O_EXCL: of two workers racing here, exactly one wins
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def workers(self) -> dict[int, float]:
        """Every worker process that ran a call: {pid: start time}, for :func:`still_running`."""
        path = Path(self.marker + ".pids")
        lines = path.read_text().splitlines() if path.exists() else []
        return {int(pid): float(start) for pid, start in (line.split() for line in lines)}


def chunk_starting_at(start: int) -> Any:
    """``when`` for ``models.draws._draw_chunk``: the chunk whose first scenario is ``start``."""
    return _ArgEquals(5, start)  # _draw_chunk(model, method, tilt, seed, child, start, ...)


class _ArgEquals:
    def __init__(self, index: int, value: Any):
        self.index, self.value = index, value

    def __call__(self, args: tuple) -> bool:
        return len(args) > self.index and args[self.index] == self.value


def descendants(pid: int) -> dict[int, float]:
    """Every process under ``pid``: {pid: start time}, so a reused pid is not mistaken."""
    try:
        import psutil
    except ImportError:
        return _proc_descendants(pid)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for child in children:
        with suppress(psutil.NoSuchProcess):  # gone meanwhile: nothing to wait for
            out[child.pid] = child.create_time()
    return out


def start_time(pid: int) -> float:
    """The process's start time, on the clock :func:`descendants` uses (nan if it is gone)."""
    try:
        import psutil
    except ImportError:
        stat = _proc_stat(pid)
        return float(stat[21]) if stat else float("nan")
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return float("nan")


def still_running(procs: dict[int, float], grace_s: float = 2.0) -> list[int]:
    """The processes of ``procs`` alive (not zombies) after up to ``grace_s`` seconds."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = [pid for pid, start in procs.items() if _alive(pid, start)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _alive(pid: int, start: float) -> bool:
    try:
        import psutil
    except ImportError:
        stat = _proc_stat(pid)
        return stat is not None and stat[2] != "Z" and float(stat[21]) == start
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == start and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    head, _, tail = text.rpartition(")")
    return [head.split(" (", 1)[0], head.split(" (", 1)[-1], *tail.split()]


def _proc_descendants(pid: int) -> dict[int, float]:
    parents: dict[int, list[tuple[int, float]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents.setdefault(int(stat[3]), []).append((int(entry.name), float(stat[21])))
    out, todo = {}, [pid]
    while todo:
        for child, start in parents.get(todo.pop(), []):
            out[child] = start
            todo.append(child)
    return out
