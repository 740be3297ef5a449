"""The commands that write reports: ``run`` (the whole job, then its report) and ``report``
(a saved run re-rendered); the one place the CLI imports the reports layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, RUN_REPLICATIONS
from optimizer.door.cli_app import (
    CaseArg,
    ConfidenceOpt,
    Float32Opt,
    ForceOpt,
    FormatOpt,
    JobsOpt,
    MethodOpt,
    MinGapClosedOpt,
    MinHouseholdsOpt,
    NoMarginalOpt,
    OutOpt,
    SamplingOpt,
    ScenariosOpt,
    SchedulerOpt,
    SeedOpt,
    console,
)
from optimizer.door.cli_steps import (
    print_written,
    recipe_of,
    report_formats,
    staged,
    start,
    with_targets,
)
from optimizer.door.cli_widgets import shown
from optimizer.door.outputs import MANIFEST_NAME


def run_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = DEFAULT_SCENARIOS,
    seed: SeedOpt = 7,
    out: OutOpt = Path("out"),
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    format: FormatOpt = "html,pdf,xlsx",
    method: MethodOpt = "auto",
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    float32: Float32Opt = False,
    no_marginal: NoMarginalOpt = False,
    confidence: ConfidenceOpt = None,
    min_gap_closed: MinGapClosedOpt = None,
    min_households: MinHouseholdsOpt = None,
    replications: Annotated[
        int,
        typer.Option(
            help="Independent scenario sets re-optimised for the gap closed's error bar "
            "(at least 2; 0 = off)."
        ),
    ] = RUN_REPLICATIONS,
) -> None:
    """The whole job: simulate, optimize, out-of-sample and stress checks, reports."""
    from optimizer.analysis.confidence import resolve_confidence
    from optimizer.door.cli_result_views import print_allocation
    from optimizer.door.run import run_case
    from optimizer.door.run_files import save_run

    formats = report_formats(format)
    given = start(case, out, "run", force, sampling)
    loaded = with_targets(given, min_gap_closed, min_households)
    resolve_confidence(loaded, confidence)  # a bad value is refused before any work
    recipe = recipe_of(scenarios, seed, sampling, jobs, scheduler, float32)
    with console.status("Starting…") as status:
        record = run_case(
            loaded,
            recipe,
            optimize_method=method,
            marginal=not no_marginal,
            confidence=confidence,
            replications=replications,
            on_step=lambda name: status.update(f"{name.capitalize()}…"),
        )
        status.update("Writing the report…")
        with staged(out, "run", force, given) as stage:
            save_run(record, stage)
            record.allocation.allocation.to_csv(stage / "allocation.csv", index=False)
            written = _render(record, stage, formats)
    print_allocation(console, loaded, record.allocation, record.out_of_sample)
    if record.replications is not None:
        from optimizer.door.cli_result_views import print_replications

        print_replications(console, record.replications)
    print_written(
        out,
        [
            "result.json",
            "allocation.csv",
            "run.json",
            "timings.json",
            "scenarios.npz",
            *written,
            MANIFEST_NAME,
        ],
    )


def report_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `ppcfin run`.")],
    format: FormatOpt = "html,pdf,xlsx",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite report files ppcfin did not write.")
    ] = False,
) -> None:
    """Re-render the report of a saved run, without re-solving; nothing else in DIR changes."""
    from optimizer.door.atomic import staged_files
    from optimizer.door.outputs import check_output_folder

    formats = report_formats(format)
    names = [f"report.{f}" for f in formats]
    check_output_folder(folder, command="report", force=force, replacing=names)
    from optimizer.door.run_files import load_run

    record = load_run(folder)
    with staged_files(folder, command="report", force=force) as stage:
        written = _render(record, stage, formats)
    console.print(f"Re-rendered {shown(folder)}/: {', '.join(written)}", highlight=False)


def _render(record, folder: Path, formats: list[str]) -> list[str]:
    """Write the report files of ``record`` into ``folder``; the names written, in order."""
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
