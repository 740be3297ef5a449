"""``ppcfin``: the command line, a thin skin over the Python API.

Every command turns the tool's typed errors into one clear message and a non-zero exit code (2 for a
bad case or bad arguments), never a traceback (:mod:`optimizer.door.cli_errors`). The app and the
options its commands share are in :mod:`optimizer.door.cli_app`; the commands in
:mod:`optimizer.door.cli_solve`, :mod:`optimizer.door.cli_analysis` and
:mod:`optimizer.door.cli_report`, registered here in the order ``ppcfin --help`` lists them.
"""

from __future__ import annotations

import signal

from optimizer.door.cli_analysis import frontier_command, sensitivity_command, stress_command
from optimizer.door.cli_app import app
from optimizer.door.cli_errors import dispatch
from optimizer.door.cli_report import report_command, run_command
from optimizer.door.cli_signals import interrupt_signals, interrupted
from optimizer.door.cli_solve import optimize_command, simulate_command, validate

__all__ = ["app", "main"]

COMMANDS = {
    "validate": validate,
    "simulate": simulate_command,
    "optimize": optimize_command,
    "frontier": frontier_command,
    "run": run_command,
    "report": report_command,
    "sensitivity": sensitivity_command,
    "stress": stress_command,
}
"""Each command's name and function, in the order ``ppcfin --help`` lists them."""

if not app.registered_commands:  # once: ``python -m optimizer.door.cli`` imports this module twice
    for name, command in COMMANDS.items():
        app.command(name)(command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code instead of raising.

    While a command runs, SIGTERM is handled like Ctrl-C (SIGINT): the command stops where it
    is, its staging folders are removed (earlier outputs stay as they were), worker processes
    are stopped, and one line is printed; the exit code is 130 (SIGINT) or 143 (SIGTERM). A
    signal that arrives inside a solver call takes effect when the call returns.
    """
    with interrupt_signals() as received:
        try:
            code = dispatch(app, argv, received)
        except KeyboardInterrupt:  # outside typer's own handling (e.g. while printing)
            code = 128 + signal.SIGINT
        except Exception:
            if not received:
                raise
            # raised by the interruption itself: a signal that lands while loky starts its
            # manager thread comes back from joblib as a RuntimeError
            code = 128 + signal.SIGINT
        if received or code == 128 + signal.SIGINT:
            # typer turns KeyboardInterrupt into exit code 130 and drops it: the handler
            # recorded which signal it was
            return interrupted(received[0] if received else signal.SIGINT)
    return code


if __name__ == "__main__":
    from optimizer.door.entry import entry

    entry()
