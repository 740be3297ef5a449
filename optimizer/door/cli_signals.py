"""Stopping a command cleanly on Ctrl-C, SIGTERM or SIGHUP: one line, no worker left behind."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from optimizer.door.cli_app import err_console

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a command cleanly: exit code 128 + signal number (130, 143, 129); SIGHUP
is a closed terminal or a dropped SSH session."""


@contextmanager
def interrupt_signals() -> Iterator[list[int]]:
    """Turn the first SIGINT, SIGTERM or SIGHUP into KeyboardInterrupt while a command runs.

    Later signals are only noted: the command is already stopping, and a second
    KeyboardInterrupt in the middle of stopping worker processes would leave their semaphores
    half cleaned up.

    A signal the process was told to ignore (``nohup``, a shell's background job) stays
    ignored; the previous handlers come back afterwards (tests call :func:`main` in-process).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt
        # A second Ctrl-C while the first is being handled must not cut the clean-up short:
        # raised between loky's sem_unlink and its unregister, it left the resource tracker to
        # warn of a missing semaphore on the terminal after the one line.

    previous = {}
    for sig in INTERRUPT_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def interrupted(signum: int) -> int:
    """Stop every worker process, print one line, return 128 + the signal number."""
    _stop_workers()
    name = signal.Signals(signum).name
    err_console.print(
        f"Interrupted ({name}): stopped, no partial output was written; earlier outputs are "
        "as they were.",
        highlight=False,
    )
    return 128 + signum


def _stop_workers() -> None:
    """Kill loky's reusable worker pool if this process has one.

    joblib already kills the pool it was using when interrupted; this also stops idle workers
    kept for reuse, so an interrupted command leaves no process behind. Only looked up when
    joblib's loky is already imported: looking it up otherwise would start a pool.
    """
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None) if module else None
    if executor is None:
        return
    try:
        executor.shutdown(wait=True, kill_workers=True)
    except RuntimeError:
        # The signal came between the pool creating its manager thread and starting it
        # ("cannot join thread before it is started"): no thread will stop the workers it
        # has already spawned, so stop them here.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.kill()
            process.join(timeout=5)
