"""The commands that read a case, draw its scenarios and solve: ``validate``, ``simulate`` and
``optimize`` (registered on the app by :mod:`optimizer.door.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS
from models.errors import OptionError
from models.workers import backend_for
from optimizer.door.cli_app import (
    CaseArg,
    ConfidenceOpt,
    Float32Opt,
    ForceOpt,
    JobsOpt,
    MethodOpt,
    MinGapClosedOpt,
    MinHouseholdsOpt,
    NoMarginalOpt,
    OutOpt,
    ReplicationsOpt,
    SamplingOpt,
    ScenariosOpt,
    SchedulerOpt,
    SeedOpt,
    console,
)
from optimizer.door.cli_steps import (
    check_sampling,
    dtype_of,
    load,
    print_written,
    recipe_of,
    staged,
    start,
    with_targets,
)
from optimizer.door.cli_widgets import shown
from optimizer.door.outputs import MANIFEST_NAME, OutputError


def validate(case: CaseArg = None) -> None:
    """Check a case and print its summary: segments, funders, funds, products."""
    from optimizer.door.cli_views import print_case_summary

    loaded = load(case)
    print_case_summary(console, loaded)


def simulate_command(
    case: CaseArg = None,
    scenarios: ScenariosOpt = 50_000,
    seed: SeedOpt = 7,
    sampling: Annotated[
        str,
        typer.Option(
            help="How scenarios are drawn: mc (the default here: the model's own draws), "
            "antithetic, sobol or importance."
        ),
    ] = "mc",
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    granular: Annotated[bool, typer.Option(help="Binomial defaults in finite pools.")] = False,
    float32: Annotated[bool, typer.Option(help="Store losses as float32 (half memory).")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the scenario set to FILE (.npz or .parquet).")
    ] = None,
) -> None:
    """Simulate credit losses; print loss rates per value chain and for the whole book."""
    from models import simulate
    from models.book import book_loss_table
    from optimizer.door.cli_views import print_book_losses
    from optimizer.door.cli_widgets import progress_bar

    loaded = load(case)
    check_sampling(sampling)
    if out is not None:
        from optimizer.door.outputs import check_output_file

        if out.suffix.lower() not in (".npz", ".parquet"):
            raise OptionError(f"--out {out}: the file must end in .npz or .parquet")
        check_output_file(out, _is_scenario_file)
    with progress_bar(console, "Simulating", scenarios) as advance:
        scen = simulate(
            loaded,
            scenarios,
            seed=seed,
            method=sampling,
            n_jobs=jobs,
            backend=backend_for(scheduler),
            scheduler=scheduler,
            granular=granular,
            dtype=dtype_of(float32),
            progress=advance,
        )
    print_book_losses(console, loaded, scen, book_loss_table(loaded, scen))
    if out is not None:
        _write_atomically(lambda: scen.save(out), out)
        console.print(f"Scenario set written to {shown(out)}", highlight=False)


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
    min_gap_closed: MinGapClosedOpt = None,
    min_households: MinHouseholdsOpt = None,
    replications: ReplicationsOpt = 0,
) -> None:
    """Simulate, optimize, check out of sample; write result.json and allocation.csv."""
    from optimizer.analysis.confidence import resolve_confidence
    from optimizer.analysis.replicate import check_replications
    from optimizer.door.cli_result_views import print_allocation, print_replications
    from optimizer.door.pipeline import check_out_of_sample, replications_of, solve_headline
    from optimizer.persist import to_plain

    given = start(case, out, "optimize", force, sampling)
    loaded = with_targets(given, min_gap_closed, min_households)
    level = resolve_confidence(loaded, confidence)  # a bad value is refused before simulating
    check_replications(replications)
    recipe = recipe_of(scenarios, seed, sampling, jobs, scheduler, float32)
    what = f"{method}, limits at {level:.0%} confidence" if level else method
    labels = {
        "simulate": "Simulating scenarios…",
        "simulate validation": "Simulating the validation scenarios…",
        "optimize": f"Optimizing ({what})…",
        "marginal values": "Re-solving each binding limit (marginal values)…",
        "simulate out of sample": "Checking out of sample…",
        "evaluate out of sample": "Checking out of sample…",
    }

    def step(name, work):
        with console.status(labels[name]):
            return work()

    head = solve_headline(loaded, recipe, level, method, not no_marginal, step)
    result = head.allocation
    oos = check_out_of_sample(loaded, recipe, result, step)
    reps = None
    if replications:
        from optimizer.door.cli_widgets import progress_bar

        with progress_bar(console, "Replications", replications) as advance:
            reps = replications_of(
                loaded, recipe, replications, level, method, result.warm_start, advance
            )
    written = ["result.json", "allocation.csv", "out_of_sample.json"]
    with staged(out, "optimize", force, given) as stage:
        (stage / "result.json").write_text(result.to_json(), encoding="utf-8")
        result.allocation.to_csv(stage / "allocation.csv", index=False)
        (stage / "out_of_sample.json").write_text(json.dumps(to_plain(oos)), encoding="utf-8")
        if reps is not None:
            reps.table.to_csv(stage / "replications.csv", index=False)
            (stage / "replications.json").write_text(json.dumps(to_plain(reps)), encoding="utf-8")
            written += ["replications.csv", "replications.json"]
    print_allocation(console, loaded, result, oos)
    if reps is not None:
        print_replications(console, reps)
    print_written(out, [*written, MANIFEST_NAME])


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

    The writer (:func:`models.atomic_file.write_atomically`) makes the folder and owns its
    temporary file, removed on any failure (a full disk, Ctrl-C); here an ``OSError`` becomes
    an :class:`OutputError` naming ``target`` and what to do.
    """
    from optimizer.door.atomic import describe_os_error

    try:
        write()
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {describe_os_error(exc)}") from None
