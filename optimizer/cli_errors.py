"""The one place a command's errors become a message and an exit code, never a traceback.

2: a bad case, bad arguments or an output folder ppcfin may not replace (nothing was done);
1: what the machine or the solver could not do (a lost worker, a full disk, no usable answer);
130: interrupted. Each message goes to stderr on one line, user text escaped.
"""

from __future__ import annotations

import signal
import sys

import typer

from models import CaseError
from models.errors import ScenarioFileError, SimulationError
from models.workers import WorkersLost
from optimizer.cli_app import err_console
from optimizer.cli_widgets import shown
from optimizer.outputs import OutputError, OutputRefused

MAX_PROBLEMS_SHOWN = 25


def dispatch(app: typer.Typer, argv: list[str] | None) -> int:
    """Run ``app`` on ``argv``; its exit code, or the code of the error it raised (printed)."""
    try:
        code = app(args=argv, standalone_mode=False)
    except CaseError as exc:
        _print_case_error(exc)
        return 2
    except WorkersLost as exc:  # the machine could not run it: not a bad argument
        _print_error(str(exc))
        return 1
    except (SimulationError, ScenarioFileError, ValueError, _optimizer_errors()) as exc:
        _print_error(str(exc))
        diagnosis = getattr(exc, "diagnosis", None)
        for message in getattr(diagnosis, "messages", ()):
            err_console.print(f"  • {shown(message)}", highlight=False)
        return 1 if _is_solver_failure(exc) else 2
    except OutputRefused as exc:
        _print_error(f"{exc}. Nothing was written.")
        return 2
    except OutputError as exc:
        _print_error(f"{exc}; earlier outputs are left as they were.")
        return 1
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
        raise
    return code if isinstance(code, int) else 0


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


def _optimizer_errors() -> type[Exception]:
    from optimizer.errors import OptimizerError

    return OptimizerError


def _is_solver_failure(exc: Exception) -> bool:
    """A solver that gave no usable answer is not bad input (exit 1, not 2)."""
    from optimizer.errors import SolverFailure

    return isinstance(exc, SolverFailure)


def _is_lost_worker(exc: Exception) -> bool:
    """A dead loky/multiprocessing worker, or a task dask gave up on (``KilledWorker``)."""
    from concurrent.futures import BrokenExecutor

    distributed = sys.modules.get("distributed")  # not imported: cannot be its error
    killed = getattr(distributed, "KilledWorker", None) if distributed else None
    return isinstance(exc, BrokenExecutor) or (killed is not None and isinstance(exc, killed))
