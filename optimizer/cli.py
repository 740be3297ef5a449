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
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines (grep-able)

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


ScenariosOpt = Annotated[int, typer.Option("--scenarios", "-n", help="Number of scenarios.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (same seed, same numbers).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers; -1 = all cores.")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="dask.distributed scheduler address, tcp://HOST:PORT.")
]
OutOpt = Annotated[Path, typer.Option(help="Output directory (replaced whole, atomically).")]
FORMATS = ("html", "pdf", "xlsx")


@app.command("optimize")
def optimize_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = 5_000,
    seed: SeedOpt = 7,
    method: Annotated[str, typer.Option(help="auto, lp or cutting_plane.")] = "auto",
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out"),
) -> None:
    """Simulate, optimize, check out of sample; write result.json and allocation.csv."""
    from models import simulate
    from optimizer.atomic import staged_directory
    from optimizer.cli_views import print_allocation
    from optimizer.diagnose import optimize_or_diagnose
    from optimizer.evaluate import evaluate
    from optimizer.persist import to_plain
    from optimizer.run import OUT_OF_SAMPLE_SEED_OFFSET

    loaded = load_case(case)
    backend = "dask" if scheduler else "loky"
    with console.status("Simulating scenarios…"):
        scen = simulate(loaded, scenarios, seed=seed, n_jobs=jobs, backend=backend,
                        scheduler=scheduler)  # fmt: skip
    with console.status(f"Optimizing ({method})…"):
        result = optimize_or_diagnose(loaded, scen, method=method)
    with console.status("Checking out of sample…"):
        oos_scen = simulate(loaded, scenarios, seed=seed + OUT_OF_SAMPLE_SEED_OFFSET,
                            n_jobs=jobs, backend=backend, scheduler=scheduler)  # fmt: skip
        oos = evaluate(loaded, result, oos_scen)
    with staged_directory(out) as stage:
        (stage / "result.json").write_text(result.to_json(), encoding="utf-8")
        result.allocation.to_csv(stage / "allocation.csv", index=False)
        import json

        (stage / "out_of_sample.json").write_text(json.dumps(to_plain(oos)), encoding="utf-8")
    print_allocation(console, loaded, result, oos)
    console.print(f"Written to {escape(str(out))}/: result.json, allocation.csv, "
                  "out_of_sample.json", highlight=False)  # fmt: skip


@app.command("frontier")
def frontier_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = 2_000,
    seed: SeedOpt = 7,
    sweep: Annotated[
        str, typer.Option(help="cvar_scale, or amount:SOURCE_ID (e.g. amount:CLIM_JDI).")
    ] = "cvar_scale",
    points: Annotated[int, typer.Option(help="Number of points.")] = 7,
    out: OutOpt = Path("out-frontier"),
) -> None:
    """The optimal gap against a swept risk appetite or amount; writes frontier.csv."""
    from rich.table import Table

    from models import simulate
    from optimizer.atomic import staged_directory
    from optimizer.frontier import frontier

    loaded = load_case(case)
    with console.status("Simulating scenarios…"):
        scen = simulate(loaded, scenarios, seed=seed)
    with console.status(f"Sweeping {sweep} over {points} points (one compiled problem)…"):
        front = frontier(loaded, scen, sweep, points=points)
    with staged_directory(out) as stage:
        front.table.to_csv(stage / "frontier.csv", index=False)
    table = Table(title=f"Frontier: {escape(front.label)}")
    for col in ("value", "weighted gap US$ m", "gap closed", "status"):
        table.add_column(col, justify="right")
    for r in front.table.itertuples():
        table.add_row(f"{r.value:.3g}x", f"{r.weighted_gap_usd / 1e6:,.1f}" if r.status == "optimal"
                      else "—", f"{r.gap_closed_share:.1%}" if r.status == "optimal" else "—",
                      escape(str(r.status)))  # fmt: skip
    console.print(table)
    console.print(f"Written to {escape(str(out))}/frontier.csv", highlight=False)


@app.command("run")
def run_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = 5_000,
    seed: SeedOpt = 7,
    out: OutOpt = Path("out"),
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    format: Annotated[str, typer.Option(help="Report formats, comma-separated.")] = "html,pdf,xlsx",
) -> None:
    """The whole job: simulate, optimize, out-of-sample and stress checks, reports."""
    from optimizer.atomic import staged_directory
    from optimizer.cli_views import print_allocation
    from optimizer.run import run_case, save_run

    formats = _formats(format)
    loaded = load_case(case)
    with console.status("Starting…") as status:
        record = run_case(loaded, scenarios, seed, n_jobs=jobs, scheduler=scheduler,
                          on_step=lambda name: status.update(f"{name.capitalize()}…"))  # fmt: skip
        status.update("Writing the report…")
        with staged_directory(out) as stage:
            save_run(record, stage)
            record.allocation.allocation.to_csv(stage / "allocation.csv", index=False)
            written = _render(record, stage, formats)
    print_allocation(console, loaded, record.allocation, record.out_of_sample)
    files = ["result.json", "allocation.csv", "run.json", "scenarios.npz", *written]
    console.print(f"Written to {escape(str(out))}/: {', '.join(files)}", highlight=False)


@app.command("report")
def report_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `ppcfin run`.")],
    format: Annotated[str, typer.Option(help="Report formats, comma-separated.")] = "html,pdf,xlsx",
) -> None:
    """Re-render the report of a saved run, without re-solving."""
    from optimizer.atomic import staged_directory
    from optimizer.run import load_run

    formats = _formats(format)
    record = load_run(folder)
    with staged_directory(folder, keep_existing=True) as stage:
        written = _render(record, stage, formats)
    console.print(f"Re-rendered {escape(str(folder))}/: {', '.join(written)}", highlight=False)


def _formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise SimulationError(f"--format {text!r}: choose from {', '.join(FORMATS)}")
    return chosen


def _render(record, folder: Path, formats: list[str]) -> list[str]:
    """Write the report files; the one place the CLI imports the reports layer."""
    from reports import render_html, report_tables, write_pdf, write_workbook
    from reports.from_run import report_context

    ctx = report_context(record)
    written = []
    html = render_html(ctx)
    if "html" in formats:
        (folder / "report.html").write_text(html, encoding="utf-8")
        written.append("report.html")
    if "pdf" in formats:
        write_pdf(html, folder / "report.pdf")
        written.append("report.pdf")
    if "xlsx" in formats:
        write_workbook(report_tables(ctx), folder / "report.xlsx")
        written.append("report.xlsx")
    return written


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


def _optimizer_errors() -> type[Exception]:
    from optimizer.errors import OptimizerError

    return OptimizerError


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code instead of raising."""
    try:
        app(args=argv, standalone_mode=False)
    except CaseError as exc:
        _print_case_error(exc)
        return 2
    except (SimulationError, ScenarioFileError, ValueError, _optimizer_errors()) as exc:
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        diagnosis = getattr(exc, "diagnosis", None)
        for message in getattr(diagnosis, "messages", ()):
            err_console.print(f"  • {escape(message)}", highlight=False)
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
