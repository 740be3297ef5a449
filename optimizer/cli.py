"""``ppcfin``: the command line, a thin skin over the Python API.

Every command turns the tool's typed errors into one clear message and a non-zero exit code
(2 for a bad case or bad arguments), never a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, RUN_REPLICATIONS, Case, CaseError, load_case
from models.errors import ScenarioFileError, SimulationError
from models.workers import WorkersLost
from optimizer.outputs import MANIFEST_NAME, OutputError, OutputRefused

app = typer.Typer(
    name="ppcfin",
    help="Blend public, private and climate finance to close the PPC smallholder credit gap "
    "within every funder's risk limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji off: a name such as ":fire:" stays text; markup in user text is escaped where printed
console = Console(emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)  # whole lines (grep-able)

MAX_PROBLEMS_SHOWN = 25

CaseArg = Annotated[
    Path | None,
    typer.Argument(help="Case YAML or stress overlay; omitted = the shipped Peruvian Amazon case."),
]


def _print_version(value: bool) -> None:
    if value:
        from optimizer import __version__

        console.print(f"ppcfin {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Blend public, private and climate finance to close the PPC smallholder credit gap."""


@app.command()
def validate(case: CaseArg = None) -> None:
    """Check a case and print its summary: segments, funders, funds, products."""
    from optimizer.cli_views import print_case_summary

    loaded = _load(case)
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
    from optimizer.cli_views import print_book_losses
    from optimizer.cli_widgets import progress_bar

    loaded = _load(case)
    if out is not None:
        from optimizer.outputs import check_output_file

        if out.suffix.lower() not in (".npz", ".parquet"):
            raise SimulationError(f"--out {out}: the file must end in .npz or .parquet")
        check_output_file(out, _is_scenario_file)
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
        console.print(f"Scenario set written to {shown(out)}", highlight=False)


ScenariosOpt = Annotated[int, typer.Option("--scenarios", "-n", help="Number of scenarios.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (same seed, same numbers).")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers; -1 = all cores.")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="dask.distributed scheduler address, tcp://HOST:PORT.")
]
OutOpt = Annotated[
    Path,
    typer.Option(
        help="Output folder: created, or replaced whole (atomically) if empty or written by "
        "ppcfin; anything else there is refused."
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an --out folder ppcfin did not write, with everything in it (never a "
        "file, a link, the case's folder or the current folder).",
    ),
]
SamplingOpt = Annotated[
    str,
    typer.Option(
        help="How scenarios are drawn: importance (tilted toward the book's tail, weighted; "
        "the default: the optimum moves far less with the seed), mc, antithetic or sobol."
    ),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        help="auto, lp or cutting_plane (auto: the cutting plane above 5,000 scenarios or on "
        "importance-sampled ones)."
    ),
]
Float32Opt = Annotated[
    bool, typer.Option(help="Keep losses as float32: half the memory, ~1e-7 relative error.")
]
NoMarginalOpt = Annotated[
    bool,
    typer.Option(
        "--no-marginal",
        help="Skip the marginal values (each binding limit re-solved relaxed and tightened "
        "by US$1m); the binding lines then quote the LP duals.",
    ),
]
ConfidenceOpt = Annotated[
    float | None,
    typer.Option(
        help="Each risk limit holds out of sample at this confidence (margins of z standard "
        "errors, re-solved): 0 = off; omitted = the case's policy.confidence (0.95 by default)."
    ),
]
ReplicationsOpt = Annotated[
    int,
    typer.Option(
        help="Re-draw and re-optimise R independent scenario sets: gap closed ± its Monte "
        "Carlo error and the scenario count for 1 % precision; 0 = off."
    ),
]
FORMATS = ("html", "pdf", "xlsx")


@app.command("optimize")
def optimize_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    method: MethodOpt = "auto",
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out"),
    force: ForceOpt = False,
    float32: Float32Opt = False,
    no_marginal: NoMarginalOpt = False,
    confidence: ConfidenceOpt = None,
    replications: ReplicationsOpt = 0,
) -> None:
    """Simulate, optimize, check out of sample; write result.json and allocation.csv."""
    from models import simulate
    from optimizer.atomic import staged_directory
    from optimizer.cli_result_views import print_allocation, print_replications
    from optimizer.confidence import hold_limits, resolve_confidence
    from optimizer.diagnose import optimize_or_diagnose
    from optimizer.evaluate import evaluate
    from optimizer.persist import to_plain
    from optimizer.run import OUT_OF_SAMPLE_SEED_OFFSET

    loaded = _load(case)
    _check_out(out, "optimize", force, loaded)
    _check_sampling(sampling)
    level = resolve_confidence(loaded, confidence)  # a bad value is refused before simulating
    from optimizer.replicate import check_replications

    check_replications(replications)
    backend = "dask" if scheduler else "loky"
    with console.status("Simulating scenarios…"):
        dtype = "float32" if float32 else "float64"
        scen = simulate(loaded, scenarios, seed=seed, method=sampling, n_jobs=jobs,
                        backend=backend, scheduler=scheduler, dtype=dtype)  # fmt: skip
    what = f"{method}, limits at {level:.0%} confidence" if level else method
    with console.status(f"Optimizing ({what})…"):
        solved = hold_limits(loaded, scen, level, solve=optimize_or_diagnose, method=method)
        result = solved.allocation
    if not no_marginal:
        from optimizer.marginal import marginal_values

        with console.status("Re-solving each binding limit (marginal values)…"):
            # around the limits the allocation was held to (the case's, less the margins)
            result = marginal_values(solved.case, scen, result, n_jobs=jobs, backend=backend,
                                     scheduler=scheduler)  # fmt: skip
    with console.status("Checking out of sample…"):
        oos_scen = simulate(loaded, scenarios, seed=seed + OUT_OF_SAMPLE_SEED_OFFSET,
                            method=sampling, n_jobs=jobs, backend=backend, scheduler=scheduler,
                            dtype=dtype)  # fmt: skip
        oos = evaluate(loaded, result, oos_scen)
    reps = None
    if replications:
        from optimizer.cli_widgets import progress_bar
        from optimizer.replicate import replicate

        with progress_bar(console, "Replications", replications) as advance:
            reps = replicate(loaded, scenarios, seed, replications, n_jobs=jobs, backend=backend,
                             scheduler=scheduler, method=sampling, dtype=dtype,
                             optimize_method=method, confidence=level,
                             on_replication=advance)  # fmt: skip
    written = ["result.json", "allocation.csv", "out_of_sample.json"]
    with staged_directory(out, **_out_rule("optimize", force, loaded)) as stage:
        (stage / "result.json").write_text(result.to_json(), encoding="utf-8")
        result.allocation.to_csv(stage / "allocation.csv", index=False)
        import json

        (stage / "out_of_sample.json").write_text(json.dumps(to_plain(oos)), encoding="utf-8")
        if reps is not None:
            reps.table.to_csv(stage / "replications.csv", index=False)
            (stage / "replications.json").write_text(json.dumps(to_plain(reps)),
                                                     encoding="utf-8")  # fmt: skip
            written += ["replications.csv", "replications.json"]
    print_allocation(console, loaded, result, oos)
    if reps is not None:
        print_replications(console, reps)
    console.print(f"Written to {shown(out)}/: {', '.join(written)}, {MANIFEST_NAME}",
                  highlight=False)  # fmt: skip


@app.command("frontier")
def frontier_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    sweep: Annotated[
        str,
        typer.Option(
            help="What to sweep: cvar_scale (every funder's CVaR limit x value), "
            "cvar_scale:SOURCE (one funder's), amount:SOURCE or amount:public|private|climate "
            "(money x value, e.g. amount:CLIM_JDI), depletion:FUND (allowed depletion "
            "probability, in (0, 1)), mobilization (private US$ per concessional US$) or "
            "deforestation_priority."
        ),
    ] = "cvar_scale",
    points: Annotated[int, typer.Option(help="Number of points.")] = 7,
    method: Annotated[str, typer.Option(help="auto, lp or cutting_plane.")] = "auto",
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out-frontier"),
    force: ForceOpt = False,
    float32: Float32Opt = False,
) -> None:
    """The optimal gap against a swept limit, amount or ratio; writes frontier.csv and .json."""
    import json

    from rich.table import Table

    from models import simulate
    from optimizer.atomic import staged_directory
    from optimizer.cli_widgets import progress_bar
    from optimizer.frontier import MAX_FRONTIER_POINTS, METHODS, frontier
    from optimizer.frontier_sweep import FAILED_STATUSES, parse_sweep
    from optimizer.persist import to_plain

    loaded = _load(case)
    _check_out(out, "frontier", force, loaded)
    _check_sampling(sampling)
    spec = parse_sweep(loaded, None, sweep)  # a bad sweep is refused before simulating
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: choose from {', '.join(METHODS)}")
    if not 1 <= points <= MAX_FRONTIER_POINTS:  # refused before simulating, not after
        raise ValueError(f"--points must be in 1..{MAX_FRONTIER_POINTS:,}, got {points:,}")
    backend = "dask" if scheduler else "loky"
    with console.status("Simulating scenarios…"):
        scen = simulate(loaded, scenarios, seed=seed, method=sampling, n_jobs=jobs,
                        backend=backend, scheduler=scheduler,
                        dtype="float32" if float32 else "float64")  # fmt: skip
    with progress_bar(console, f"Sweeping {sweep}", points) as advance:
        front = frontier(loaded, scen, sweep, points=points, method=method, n_jobs=jobs,
                         backend=backend, scheduler=scheduler,
                         on_point=lambda i, _row: advance(i + 1))  # fmt: skip
    meta = {"case": loaded.name, "case_file": loaded.source_file, "n_scenarios": scenarios,
            "seed": seed, "scenario_method": scen.method, "frontier": to_plain(front)}  # fmt: skip
    with staged_directory(out, **_out_rule("frontier", force, loaded)) as stage:
        front.table.to_csv(stage / "frontier.csv", index=False)
        (stage / "frontier.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    unit = "x" if spec.multiplier else ""
    table = Table(title=f"Frontier: {escape(front.label)} ({front.method}, "
                  f"{front.workers} worker(s))")  # fmt: skip
    for col in ("value", "weighted gap US$ m", "gap closed", "status"):
        table.add_column(col, justify="right")
    for r in front.table.itertuples():
        ok = r.status not in FAILED_STATUSES
        table.add_row(f"{r.value:.3g}{unit}", f"{r.weighted_gap_usd / 1e6:,.1f}" if ok else "—",
                      f"{r.gap_closed_share:.1%}" if ok else "—", escape(str(r.status)))  # fmt: skip
    console.print(table)
    for r in front.table.itertuples():
        if r.status in FAILED_STATUSES:
            err_console.print(f"  point {r.value:.3g}{unit}: {shown(r.reason)}",
                              highlight=False)  # fmt: skip
    console.print(f"Written to {shown(out)}/: frontier.csv, frontier.json", highlight=False)


@app.command("run")
def run_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    out: OutOpt = Path("out"),
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    format: Annotated[str, typer.Option(help="Report formats, comma-separated.")] = "html,pdf,xlsx",
    method: MethodOpt = "auto",
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    float32: Float32Opt = False,
    no_marginal: NoMarginalOpt = False,
    confidence: ConfidenceOpt = None,
    replications: Annotated[
        int,
        typer.Option(
            help="Independent scenario sets re-optimised for the gap closed's error bar "
            "(at least 2; 0 = off)."
        ),
    ] = RUN_REPLICATIONS,
) -> None:
    """The whole job: simulate, optimize, out-of-sample and stress checks, reports."""
    from optimizer.atomic import staged_directory
    from optimizer.cli_result_views import print_allocation
    from optimizer.run import run_case, save_run

    formats = _formats(format)
    loaded = _load(case)
    _check_out(out, "run", force, loaded)
    _check_sampling(sampling)
    with console.status("Starting…") as status:
        record = run_case(loaded, scenarios, seed, method=sampling, n_jobs=jobs,
                          scheduler=scheduler,
                          dtype="float32" if float32 else "float64", optimize_method=method,
                          marginal=not no_marginal, confidence=confidence,
                          replications=replications,
                          on_step=lambda name: status.update(f"{name.capitalize()}…"))  # fmt: skip
        status.update("Writing the report…")
        with staged_directory(out, **_out_rule("run", force, loaded)) as stage:
            save_run(record, stage)
            record.allocation.allocation.to_csv(stage / "allocation.csv", index=False)
            written = _render(record, stage, formats)
    print_allocation(console, loaded, record.allocation, record.out_of_sample)
    if record.replications is not None:
        from optimizer.cli_result_views import print_replications

        print_replications(console, record.replications)
    files = ["result.json", "allocation.csv", "run.json", "timings.json", "scenarios.npz",
             *written, MANIFEST_NAME]  # fmt: skip
    console.print(f"Written to {shown(out)}/: {', '.join(files)}", highlight=False)


@app.command("report")
def report_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `ppcfin run`.")],
    format: Annotated[str, typer.Option(help="Report formats, comma-separated.")] = "html,pdf,xlsx",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite report files ppcfin did not write.")
    ] = False,
) -> None:
    """Re-render the report of a saved run, without re-solving; nothing else in DIR changes."""
    from optimizer.atomic import staged_files
    from optimizer.outputs import check_output_folder

    formats = _formats(format)
    names = [f"report.{f}" for f in formats]
    check_output_folder(folder, command="report", force=force, replacing=names)
    from optimizer.run import load_run

    record = load_run(folder)
    with staged_files(folder, command="report", force=force) as stage:
        written = _render(record, stage, formats)
    console.print(f"Re-rendered {shown(folder)}/: {', '.join(written)}", highlight=False)


@app.command("sensitivity")
def sensitivity_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    shock: Annotated[
        float, typer.Option(help="Relative perturbation, in (0, 1): 0.2 = ±20 %.")
    ] = 0.2,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--inputs",
            help="Inputs to perturb (repeat or comma-separate): pd, lgd, correlation, "
            "event_probability, amount_public, amount_private, amount_climate, cvar_limit; "
            "omitted = all that apply.",
        ),
    ] = None,
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out-sensitivity"),
    force: ForceOpt = False,
    float32: Float32Opt = False,
) -> None:
    """Each input ±shock in turn, re-optimised on common random numbers: the tornado."""
    import json

    from optimizer.atomic import staged_directory
    from optimizer.cli_analysis_views import print_sensitivity
    from optimizer.cli_widgets import progress_bar
    from optimizer.persist import to_plain
    from optimizer.sensitivity_analysis import sensitivity, sensitivity_points

    loaded = _load(case)
    _check_out(out, "sensitivity", force, loaded)
    _check_sampling(sampling)
    chosen = (
        None if inputs is None else [i.strip() for s in inputs for i in s.split(",") if i.strip()]
    )
    total = sensitivity_points(loaded, chosen)
    with progress_bar(console, "Sensitivity points", total) as advance:
        sens = sensitivity(loaded, scenarios, seed, inputs=chosen, shock=shock,
                           method=sampling, n_jobs=jobs,
                           scheduler=scheduler, on_point=advance,
                           dtype="float32" if float32 else "float64")  # fmt: skip
    with staged_directory(out, **_out_rule("sensitivity", force, loaded)) as stage:
        sens.table.to_csv(stage / "sensitivity.csv", index=False)
        sens.tornado.to_csv(stage / "tornado.csv", index=False)
        (stage / "sensitivity.json").write_text(json.dumps(to_plain(sens)), encoding="utf-8")
    print_sensitivity(console, sens)
    console.print(f"Written to {shown(out)}/: sensitivity.csv, tornado.csv, "
                  "sensitivity.json", highlight=False)  # fmt: skip


@app.command("stress")
def stress_command(
    case: CaseArg = None,
    allocation: Annotated[
        Path | None,
        typer.Option(help="result.json of `ppcfin optimize` or `run`; omitted = optimize first."),
    ] = None,
    stress_files: Annotated[
        list[Path] | None,
        typer.Option("--stress", help="Stress overlay (repeatable); omitted = the shipped five."),
    ] = None,
    reoptimize: Annotated[
        bool, typer.Option(help="Also re-optimise under each stress: what must give.")
    ] = False,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out-stress"),
    force: ForceOpt = False,
) -> None:
    """A fixed allocation under stress overlays: losses, limits held or breached, fund depletion."""
    import json

    from optimizer.atomic import staged_directory
    from optimizer.cli_analysis_views import print_stress
    from optimizer.cli_widgets import progress_bar
    from optimizer.persist import to_plain
    from optimizer.stress_testing import read_allocation, stress, stress_steps

    loaded = _load(case)
    _check_out(out, "stress", force, loaded)
    _check_sampling(sampling)
    if allocation is not None:
        fixed = read_allocation(allocation, case=loaded)
    else:
        from models import simulate
        from optimizer.diagnose import optimize_or_diagnose

        with console.status("No --allocation: simulating and optimizing first…"):
            backend = "dask" if scheduler else "loky"
            scen = simulate(loaded, scenarios, seed=seed, method=sampling, n_jobs=jobs,
                            backend=backend, scheduler=scheduler)  # fmt: skip
            fixed = optimize_or_diagnose(loaded, scen)
    n_stresses = len(stress_files) if stress_files else None
    with progress_bar(console, "Stress", stress_steps(loaded, n_stresses, reoptimize)) as advance:
        report = stress(loaded, fixed, stress_files, scenarios, seed, method=sampling,
                        reoptimize=reoptimize,
                        n_jobs=jobs, scheduler=scheduler, on_step=advance)  # fmt: skip
    written = ["stress_limits.csv", "stress_funders.csv", "stress_funds.csv", "stress.json"]
    with staged_directory(out, **_out_rule("stress", force, loaded)) as stage:
        report.limits.to_csv(stage / "stress_limits.csv", index=False)
        report.funders.to_csv(stage / "stress_funders.csv", index=False)
        report.funds.to_csv(stage / "stress_funds.csv", index=False)
        if report.reoptimized is not None:
            report.reoptimized.to_csv(stage / "stress_reoptimized.csv", index=False)
            written.insert(3, "stress_reoptimized.csv")
        (stage / "stress.json").write_text(json.dumps(to_plain(report)), encoding="utf-8")
    print_stress(console, report)
    console.print(f"Written to {shown(out)}/: {', '.join(written)}", highlight=False)


def _check_sampling(sampling: str) -> None:
    """Refuse an unknown ``--sampling`` before any work, naming the valid ones."""
    from models.simulate import Method

    choices = [m.value for m in Method]
    if sampling not in choices:
        raise ValueError(f"--sampling {sampling!r:.40}: choose from {', '.join(choices)}")


def shown(value: object) -> str:
    """User text (a path, a name) as the terminal may show it: control characters escaped,
    rich markup inert."""
    from models.text import printable

    return escape(printable(str(value)))


def _load(path: Path | None) -> Case:
    """Load the case and print its warnings (money that can never be placed) on stderr."""
    from models import case_warnings

    loaded = load_case(path)
    for warning in case_warnings(loaded):
        err_console.print(f"[yellow]Warning:[/] {shown(warning)}", highlight=False)
    return loaded


def _out_rule(command: str, force: bool, case: Case) -> dict:
    """The ``--out`` rule's arguments: a folder holding the case file is never replaced."""
    protect = (Path(case.source_file),) if case.source_file else ()
    return {"command": command, "force": force, "protect": protect}


def _check_out(out: Path, command: str, force: bool, case: Case) -> None:
    """Refuse an output folder ppcfin may not replace before any work starts."""
    from optimizer.outputs import check_output_folder

    check_output_folder(out, **_out_rule(command, force, case))


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


def _is_scenario_file(path: Path) -> bool:
    """A file ppcfin wrote with ``simulate --out``: it reads back as a scenario set."""
    from models import ScenarioSet
    from models.errors import ScenarioFileError

    try:
        ScenarioSet.load(path)
    except (ScenarioFileError, OSError, ValueError):
        return False
    return True


def _write_atomically(write, target: Path) -> None:
    """Run a writer that replaces ``target`` atomically; turn OS errors into one message.

    The writer owns its temporary file and removes it on any failure (a full disk, Ctrl-C);
    here an ``OSError`` becomes an :class:`OutputError` naming ``target`` and what to do.
    """
    from optimizer.atomic import describe_os_error

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None


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


def _optimizer_errors() -> type[Exception]:
    from optimizer.errors import OptimizerError

    return OptimizerError


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a command cleanly: exit code 128 + signal number (130, 143, 129); SIGHUP
is a closed terminal or a dropped SSH session."""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code instead of raising.

    While a command runs, SIGTERM is handled like Ctrl-C (SIGINT): the command stops where it
    is, its staging folders are removed (earlier outputs stay as they were), worker processes
    are stopped, and one line is printed; the exit code is 130 (SIGINT) or 143 (SIGTERM). A
    signal that arrives inside a solver call takes effect when the call returns.
    """
    with _interrupt_signals() as received:
        try:
            code = _dispatch(argv)
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
            return _interrupted(received[0] if received else signal.SIGINT)
    return code


def _dispatch(argv: list[str] | None) -> int:
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


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {shown(message)}", highlight=False)


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


@contextmanager
def _interrupt_signals() -> Iterator[list[int]]:
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


def _interrupted(signum: int) -> int:
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
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


if __name__ == "__main__":
    from optimizer.entry import entry

    entry()
