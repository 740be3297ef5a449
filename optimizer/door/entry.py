"""The ``ppcfin`` console script, kept apart from :mod:`optimizer.door.cli` so that a Ctrl-C while
the heavy modules (numpy, scipy, cvxpy) are still importing is one line, not a traceback."""

from __future__ import annotations

import os
import signal
import sys
import threading


def entry() -> None:
    """Run the command line; exit with its code.

    Once the command has returned, a further Ctrl-C is ignored: it would otherwise land in the
    interpreter's exit handlers (joblib's, loky's) and print "Exception ignored in atexit
    callback". Worker processes are already stopped by then.
    """
    try:
        from optimizer.door.cli import main
    except (KeyboardInterrupt, ImportError) as exc:
        if not _interrupted(exc):
            raise
        _quiet_exit()
        sys.stderr.write("Interrupted (SIGINT) while starting: nothing was done.\n")
        sys.stderr.flush()
        # Not sys.exit: an import cut short by the interrupt left the interpreter marked as
        # interrupted, and its shutdown then killed the process with SIGINT (exit -2, not
        # 130). Nothing was started (no worker, no file), so nothing needs shutting down.
        os._exit(128 + signal.SIGINT)
    code = main()
    _quiet_exit()
    sys.exit(code)


def _interrupted(exc: BaseException) -> bool:
    """Whether the import was cut short by Ctrl-C: a KeyboardInterrupt, or the ImportError
    ("initialization failed") a compiled extension raises from one that landed while it
    initialised (seen with scipy's HiGHS module)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _quiet_exit() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    entry()
