"""The commands that analyse a case around its optimum: ``frontier``, ``sensitivity`` and
``stress`` (registered on the app by :mod:`optimizer.door.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS
from models.errors import OptionError
from optimizer.door.cli_app import (
    CaseArg,
    Float32Opt,
    ForceOpt,
    JobsOpt,
    MethodOpt,
    OutOpt,
    SamplingOpt,
    ScenariosOpt,
    SchedulerOpt,
    SeedOpt,
    console,
    err_console,
)
from optimizer.door.cli_steps import dtype_of, print_written, recipe_of, staged, start


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
    method: MethodOpt = "auto",
    sampling: SamplingOpt = DEFAULT_SAMPLING,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    out: OutOpt = Path("out-frontier"),
    force: ForceOpt = False,
    float32: Float32Opt = False,
) -> None:
    """The optimal gap against a swept limit, amount or ratio; writes frontier.csv and .json."""
    from models.options import check_choice
    from optimizer.analysis.frontier import MAX_FRONTIER_POINTS, frontier
    from optimizer.analysis.frontier_spec import parse_sweep
    from optimizer.choices import CvarMethod
    from optimizer.door.cli_analysis_views import print_frontier
    from optimizer.door.cli_widgets import progress_bar
    from optimizer.persist import to_plain

    loaded = start(case, out, "frontier", force, sampling)
    spec = parse_sweep(loaded, None, sweep)  # a bad sweep is refused before simulating
    check_choice(method, CvarMethod, "--cvar-method")
    if not 1 <= points <= MAX_FRONTIER_POINTS:  # refused before simulating, not after
        raise OptionError(f"--points must be in 1..{MAX_FRONTIER_POINTS:,}, got {points:,}")
    recipe = recipe_of(scenarios, seed, sampling, jobs, scheduler, float32)
    with console.status("Simulating scenarios…"):
        scen = recipe.draw(loaded)
    with progress_bar(console, f"Sweeping {sweep}", points) as advance:
        front = frontier(
            loaded,
            scen,
            sweep,
            points=points,
            method=method,
            n_jobs=jobs,
            backend=recipe.backend,
            scheduler=scheduler,
            on_point=lambda i, _row: advance(i + 1),
        )
    meta = {
        "case": loaded.name,
        "case_file": loaded.source_file,
        "n_scenarios": scenarios,
        "seed": seed,
        "scenario_method": scen.method,
        "frontier": to_plain(front),
    }
    with staged(out, "frontier", force, loaded) as stage:
        front.table.to_csv(stage / "frontier.csv", index=False)
        (stage / "frontier.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    print_frontier(console, err_console, front, spec.multiplier)
    print_written(out, ["frontier.csv", "frontier.json"])


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
    from optimizer.analysis.sensitivity_analysis import sensitivity, sensitivity_points
    from optimizer.door.cli_analysis_views import print_sensitivity
    from optimizer.door.cli_widgets import progress_bar
    from optimizer.persist import to_plain

    loaded = start(case, out, "sensitivity", force, sampling)
    chosen = (
        None if inputs is None else [i.strip() for s in inputs for i in s.split(",") if i.strip()]
    )
    total = sensitivity_points(loaded, chosen)
    with progress_bar(console, "Sensitivity points", total) as advance:
        sens = sensitivity(
            loaded,
            scenarios,
            seed,
            inputs=chosen,
            shock=shock,
            method=sampling,
            n_jobs=jobs,
            scheduler=scheduler,
            on_point=advance,
            dtype=dtype_of(float32),
        )
    with staged(out, "sensitivity", force, loaded) as stage:
        sens.table.to_csv(stage / "sensitivity.csv", index=False)
        sens.tornado.to_csv(stage / "tornado.csv", index=False)
        (stage / "sensitivity.json").write_text(json.dumps(to_plain(sens)), encoding="utf-8")
    print_sensitivity(console, sens)
    print_written(out, ["sensitivity.csv", "tornado.csv", "sensitivity.json"])


def stress_command(
    case: CaseArg = None,
    allocation: Annotated[
        Path | None,
        typer.Option(help="result.json of `ppcfin optimize` or `run`; omitted = optimize first."),
    ] = None,
    stress_files: Annotated[
        list[Path] | None,
        typer.Option("--stress", help="Stress overlay (repeatable); omitted = the shipped six."),
    ] = None,
    reoptimize: Annotated[
        bool, typer.Option(help="Also re-optimise under each stress: what must give.")
    ] = False,
    reverse: Annotated[
        bool,
        typer.Option(
            help="Also the reverse stress: per binding risk limit, the smallest PD multiplier "
            "and event probabilities that break it."
        ),
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
    from optimizer.analysis.stress_testing import read_allocation, stress, stress_steps
    from optimizer.door.cli_analysis_views import print_stress
    from optimizer.door.cli_widgets import progress_bar
    from optimizer.persist import to_plain

    loaded = start(case, out, "stress", force, sampling)
    if allocation is not None:
        fixed = read_allocation(allocation, case=loaded)
    else:
        from optimizer.analysis.diagnose import optimize_or_diagnose

        recipe = recipe_of(scenarios, seed, sampling, jobs, scheduler, float32=False)
        with console.status("No --allocation: simulating and optimizing first…"):
            fixed = optimize_or_diagnose(loaded, recipe.draw(loaded))
    n_stresses = len(stress_files) if stress_files else None
    with progress_bar(
        console, "Stress", stress_steps(loaded, n_stresses, reoptimize, reverse)
    ) as advance:
        report = stress(
            loaded,
            fixed,
            stress_files,
            scenarios,
            seed,
            method=sampling,
            reoptimize=reoptimize,
            n_jobs=jobs,
            scheduler=scheduler,
            on_step=advance,
            reverse=reverse,
        )
    written = ["stress_summary.csv", "stress_limits.csv", "stress_funders.csv"]
    written += ["stress_funds.csv", "stress.json"]
    with staged(out, "stress", force, loaded) as stage:
        report.summary.to_csv(stage / "stress_summary.csv", index=False)
        report.limits.to_csv(stage / "stress_limits.csv", index=False)
        report.funders.to_csv(stage / "stress_funders.csv", index=False)
        report.funds.to_csv(stage / "stress_funds.csv", index=False)
        if report.reoptimized is not None:
            report.reoptimized.to_csv(stage / "stress_reoptimized.csv", index=False)
            written.insert(4, "stress_reoptimized.csv")
        if report.reverse is not None:
            report.reverse.to_csv(stage / "stress_reverse.csv", index=False)
            written.insert(-1, "stress_reverse.csv")
        (stage / "stress.json").write_text(json.dumps(to_plain(report)), encoding="utf-8")
    print_stress(console, report)
    print_written(out, written)
