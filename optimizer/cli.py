"""``ppcfin``: the command line, a thin skin over the Python API.

Every command turns the tool's typed errors into one clear message and a non-zero exit code
(2 for a bad case or bad arguments), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from models import CaseError, load_case
from models.errors import ScenarioFileError, SimulationError
from optimizer.atomic import OutputError

app = typer.Typer(
    name="ppcfin",
    help="Blend public, private and climate finance to close the PPC smallholder credit gap "
    "within every funder's risk limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

MAX_PROBLEMS_SHOWN = 25

CaseArg = Annotated[
    Path | None,
    typer.Argument(help="Case YAML or stress overlay; omitted = the shipped Peruvian Amazon case."),
]


@app.callback()
def _root() -> None:
    """Blend public, private and climate finance to close the PPC smallholder credit gap."""


@app.command()
def validate(case: CaseArg = None) -> None:
    """Check a case and print its summary: segments, funders, funds, products."""
    from optimizer.cli_views import print_case_summary

    loaded = load_case(case)
    print_case_summary(console, loaded)


@app.command("simulate")
def simulate_command(
    case: CaseArg = None,
    scenarios: Annotated[
        int, typer.Option("--scenarios", "-n", help="Number of scenarios.")
    ] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same numbers).")] = 7,
    method: Annotated[str, typer.Option(help="mc, antithetic, sobol or importance.")] = "mc",
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Parallel workers; -1 = all cores.")
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="dask.distributed scheduler address, tcp://HOST:PORT.")
    ] = None,
    granular: Annotated[bool, typer.Option(help="Binomial defaults in finite pools.")] = False,
    float32: Annotated[bool, typer.Option(help="Store losses as float32 (half memory).")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the scenario set to FILE (.npz or .parquet).")
    ] = None,
) -> None:
    """Simulate credit losses; print loss rates per value chain and for the whole book."""
    import numpy as np

    from models import simulate
    from models.book import book_loss_table
    from optimizer.cli_views import print_book_losses, progress_bar

    loaded = load_case(case)
    if out is not None and out.suffix.lower() not in (".npz", ".parquet"):
        raise SimulationError(f"--out {out}: the file must end in .npz or .parquet")
    with progress_bar(console, "Simulating", scenarios) as advance:
        scen = simulate(
            loaded,
            scenarios,
            seed=seed,
            method=method,
            n_jobs=jobs,
            backend="dask" if scheduler else "loky",
            scheduler=scheduler,
            granular=granular,
            dtype=np.float32 if float32 else np.float64,
            progress=advance,
        )
    print_book_losses(console, loaded, scen, book_loss_table(loaded, scen))
    if out is not None:
        _write_atomically(lambda: scen.save(out), out)
        console.print(f"Scenario set written to {out}", highlight=False)


def _write_atomically(write, target: Path) -> None:
    """Run a writer that replaces ``target`` atomically; turn OS errors into one message."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def _print_case_error(exc: CaseError) -> None:
    problems = exc.problems
    err_console.print(f"[bold red]The case cannot be used: {len(problems)} problem(s).[/]")
    for p in problems[:MAX_PROBLEMS_SHOWN]:
        # every part is user input: escape it so rich never reads it as markup
        err_console.print(
            f"  [red]•[/] {escape(p.file)}\n      [bold]{escape(p.field)}[/] = "
            f"{escape(p.value)}: {escape(p.message)}",
            highlight=False,
            soft_wrap=True,
        )
    if len(problems) > MAX_PROBLEMS_SHOWN:
        err_console.print(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more.")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code instead of raising."""
    try:
        app(args=argv, standalone_mode=False)
    except CaseError as exc:
        _print_case_error(exc)
        return 2
    except (SimulationError, ScenarioFileError) as exc:
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except OutputError as exc:
        err_console.print(
            f"[bold red]Error:[/] {escape(str(exc))}; earlier outputs are left as they were.",
            highlight=False,
        )
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("Interrupted.")
        return 130
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return 130
    except Exception as exc:
        # usage errors: typer bundles its own click, so match by behaviour, not by class
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show(file=sys.stderr)
            return 2 if exc.exit_code == 1 else exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
