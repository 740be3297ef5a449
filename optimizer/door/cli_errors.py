"""The one place a command's errors become a message and an exit code, never a traceback.

Every error ppcfin raises on purpose is a :class:`~models.errors.PpcfinError` and carries its
exit code: 2 for what the user must change (a bad case, bad arguments, a saved file that
cannot be used, an output folder ppcfin may not replace: nothing was done); 1 for what the
machine or the solver could not do (a lost worker, a full disk, no usable answer); 130:
interrupted. Each message goes to stderr on one line, user text escaped. Anything else is a
bug: one line saying so (exit 1), its traceback in a log file under :func:`log_dir`.
"""

from __future__ import annotations

import datetime
import os
import signal
import stat
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

import typer

from models.errors import CaseError, PpcfinError
from optimizer.door.cli_app import err_console
from optimizer.door.cli_widgets import shown
from optimizer.door.outputs import OutputError, OutputRefused

MAX_PROBLEMS_SHOWN = 25
LOG_DIR_ENV = "PPCFIN_LOG_DIR"
"""Where the traceback of an internal error goes (default: ``ppcfin-errors`` in the temp folder)."""


def dispatch(app: typer.Typer, argv: list[str] | None, received: Sequence[int] = ()) -> int:
    """Run ``app`` on ``argv``; its exit code, or the code of the error it raised (printed).

    ``received``: the interrupting signals caught so far; an unexpected exception raised
    after one is the interruption's doing, not a bug, and goes up to the caller, which
    reports the interruption.
    """
    try:
        code = app(args=argv, standalone_mode=False)
    except CaseError as exc:
        _print_case_error(exc)
        return exc.exit_code
    except OutputRefused as exc:
        _print_error(f"{exc}. Nothing was written.")
        return exc.exit_code
    except OutputError as exc:
        _print_error(f"{exc}; earlier outputs are left as they were.")
        return exc.exit_code
    except PpcfinError as exc:
        _print_error(str(exc))
        diagnosis = getattr(exc, "diagnosis", None)
        for message in getattr(diagnosis, "messages", ()):
            err_console.print(f"  • {shown(message)}", highlight=False)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 128 + signal.SIGINT
    except Exception as exc:
        if _is_lost_worker(exc):
            first_line = str(exc).strip().split("\n", 1)[0]
            _print_error(
                f"a worker process died ({type(exc).__name__}: {first_line}); nothing was "
                "written. The operating system usually kills a worker that runs out of memory: "
                "use fewer --jobs or fewer scenarios."
            )
            return 1
        # usage errors: typer bundles its own click, so match by behaviour, not by class
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show(file=sys.stderr)
            return 2 if exc.exit_code == 1 else exc.exit_code
        if received:
            raise
        _print_internal_error(exc, sys.argv[1:] if argv is None else argv)
        return 1
    return code if isinstance(code, int) else 0


def log_dir() -> Path:
    """The folder internal errors are logged in: ``$PPCFIN_LOG_DIR``, else
    ``ppcfin-errors`` in the temp folder (never one of the user's folders)."""
    given = os.environ.get(LOG_DIR_ENV)
    return Path(given) if given else Path(tempfile.gettempdir()) / "ppcfin-errors"


def write_error_log(exc: BaseException, argv: Sequence[str]) -> Path:
    """Write the command and ``exc``'s traceback to a new file, readable by this user only,
    in :func:`log_dir` (or, when another user owns that folder, a new one beside it)."""
    folder = log_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        folder = Path(tempfile.mkdtemp(prefix="ppcfin-errors-"))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = folder / f"{stamp}-{os.getpid()}.log"
    # O_EXCL and O_NOFOLLOW: never write through a file or a link someone else put there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as log:
        log.write(f"ppcfin {' '.join(argv)}\n")
        log.write("".join(traceback.format_exception(exc)))
    return path


def _print_internal_error(exc: Exception, argv: Sequence[str]) -> None:
    """One line for a bug: what it was, and where its traceback is (not on the screen)."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = what.strip().split("\n", 1)[0]
    try:
        where = f"details in {write_error_log(exc, argv)}"
    except OSError as log_failure:
        where = f"its traceback could not be logged in {log_dir()}: {log_failure.strerror}"
    err_console.print(
        f"[bold red]internal error:[/] {shown(what)} (a bug; {shown(where)})",
        highlight=False,
        soft_wrap=True,
    )


def _print_case_error(exc: CaseError) -> None:
    problems = exc.problems
    err_console.print(f"[bold red]The case cannot be used: {len(problems)} problem(s).[/]")
    for p in problems[:MAX_PROBLEMS_SHOWN]:
        # every part is user input: control characters escaped, never read as markup
        err_console.print(
            f"  [red]•[/] {shown(p.file)}\n      [bold]{shown(p.field)}[/] = "
            f"{shown(p.value)}: {shown(p.message)}",
            highlight=False,
            soft_wrap=True,
        )
    if len(problems) > MAX_PROBLEMS_SHOWN:
        err_console.print(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more.")


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {shown(message)}", highlight=False)


def _is_lost_worker(exc: Exception) -> bool:
    """A dead loky/multiprocessing worker, or a task dask gave up on (``KilledWorker``)."""
    from concurrent.futures import BrokenExecutor

    distributed = sys.modules.get("distributed")  # not imported: cannot be its error
    killed = getattr(distributed, "KilledWorker", None) if distributed else None
    return isinstance(exc, BrokenExecutor) or (killed is not None and isinstance(exc, killed))
