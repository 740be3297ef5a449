"""The whole job of ``ppcfin run``: simulate, optimize, check out of sample, stress, keep it all.

:func:`run_case` returns a frozen :class:`RunRecord` that the report layer reads; it never
solves anything itself. Stress tests re-simulate each shipped overlay with the same seed
(common random numbers), so a stress differs from the base run only by what it changes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from models import (
    DEFAULT_SAMPLING,
    DEFAULT_SCENARIOS,
    RUN_REPLICATIONS,
    Case,
    ScenarioSet,
    load_case,
    simulate,
)
from models.cells import build_cells
from models.loader import DEFAULT_CASE
from optimizer.confidence import VALIDATION_SEED_OFFSET, hold_limits, resolve_confidence
from optimizer.errors import OptimizerError
from optimizer.evaluate import Evaluation, evaluate
from optimizer.frontier import Frontier, frontier
from optimizer.marginal import marginal_values
from optimizer.persist import SavedRunError, parse_saved, read_saved_text, to_plain
from optimizer.replicate import Replications, check_replications, replicate
from optimizer.result import Allocation
from optimizer.saved import (
    RUN_FORMAT_VERSION,
    TIMINGS_FORMAT_VERSION,
    RunFile,
    TimingsFile,
    check_ids,
    made_from,
)
from optimizer.sensitivity_analysis import Sensitivity, sensitivity, sensitivity_points
from optimizer.stress_testing import STRESS_DIR, StressOutcome, shipped_stresses, stress_outcomes

__all__ = [
    "ANALYSES",
    "FRONTIER_POINTS",
    "OUT_OF_SAMPLE_SEED_OFFSET",
    "STRESS_DIR",
    "TIMINGS_FILE",
    "Draw",
    "RunRecord",
    "SavedRunError",
    "StressOutcome",
    "load_run",
    "run_case",
    "save_run",
    "shipped_stresses",
    "stress_outcomes",
]

FRONTIER_POINTS = 7
"""x0.5 to x2 of every funder's CVaR limit in steps of 0.25: the case's own setting (x1) is a
point of the frontier, on the headline's scenarios, so it is the headline."""
OUT_OF_SAMPLE_SEED_OFFSET = 1_000_003
"""The out-of-sample set uses seed + this offset: independent of the in-sample draws."""


ANALYSES = ("headline", "out_of_sample", "frontier", "sensitivity", "stresses", "replications")

"""The analyses of a run, each with the scenario set it was computed on (:class:`Draw`)."""


@dataclass(frozen=True)
class Draw:
    """The scenario set an analysis of a run used: how many, which seed, method and precision.

    Every analysis but the out-of-sample check draws the headline's set (the frontier and the
    sensitivity base use it as it is; the sensitivity points and stresses re-draw it with the
    same seed, common random numbers, for the changed case); the out-of-sample check draws an
    independent set of the same size.
    """

    n_scenarios: int
    seed: int
    scenario_method: str
    dtype: str


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything one run produced, for the report and the files.

    ``sensitivity`` is None when the sweep was not run; ``sensitivity_error`` then says why
    when it was tried and its base case did not solve at the sweep's scenario count.
    """

    case: Case
    scenarios: ScenarioSet
    allocation: Allocation
    out_of_sample: Evaluation | None
    stresses: tuple[StressOutcome, ...]
    seed: int
    n_scenarios: int
    scenario_method: str
    timings_s: dict[str, float] = field(default_factory=dict)
    frontier: Frontier | None = None
    sensitivity: Sensitivity | None = None
    sensitivity_error: str = ""
    analyses: dict[str, Draw] = field(default_factory=dict)
    """Analysis name (:data:`ANALYSES`, those that ran) → the scenario set it used (for
    ``replications``, the seed their own seeds are spawned from)."""
    replications: Replications | None = None


def run_case(
    case: Case,
    n_scenarios: int = DEFAULT_SCENARIOS,
    seed: int = 7,
    method: str = DEFAULT_SAMPLING,
    n_jobs: int = 1,
    scheduler: str | None = None,
    stresses: list[Path] | None = None,
    out_of_sample: bool = True,
    with_sensitivity: bool = True,
    on_step: Callable[[str], None] | None = None,
    dtype: str = "float64",
    optimize_method: str = "auto",
    marginal: bool = True,
    confidence: float | None = None,
    replications: int = RUN_REPLICATIONS,
) -> RunRecord:
    """Simulate, optimize, evaluate out of sample and under stress.

    Parameters
    ----------
    case : Case
    n_scenarios, seed, method, n_jobs, scheduler
        Passed to :func:`models.simulate` (in-sample, out-of-sample and stress sets);
        ``method`` is the sampling method, default :data:`models.DEFAULT_SAMPLING`
        (importance sampling).
    stresses : list of Path, optional
        Overlays to apply; default the shipped ones when ``case`` is the default case, none
        otherwise (an overlay names its base case).
    with_sensitivity : bool
        Run the one-at-a-time sensitivity sweep (every input ±20 %) for the report's tornado:
        its base is the headline, its points re-drawn at the headline's count, seed and dtype.
    on_step : callable, optional
        Told the name of each step as it starts (progress display).
    dtype : {"float64", "float32"}
        Loss matrix precision of every scenario set of the run (float32: half the memory).
    optimize_method : {"auto", "lp", "cutting_plane"}
        Passed to :func:`optimizer.optimize` for the allocation.
    marginal : bool
        Re-solve each binding limit relaxed and tightened by its step on the headline's
        scenarios (:func:`optimizer.marginal.marginal_values`): the allocation's ``binding``
        table then carries the re-solved gains the report quotes.
    confidence : float, optional
        Each risk limit held out of sample at this confidence
        (:func:`optimizer.confidence.hold_limits`); default the case's
        ``policy.confidence``, 0 = off; the margins are measured on an independent
        validation set of the same size (seed + ``VALIDATION_SEED_OFFSET``). The marginal
        values, the frontier and the sensitivity sweep then work around the limits the
        allocation was held to (the case's, less their margins), so the frontier's x1 point
        and the tornado's base are the headline.
    replications : int
        Independent scenario sets of the headline's size re-optimised as the headline was
        (:func:`optimizer.replicate.replicate`): the gap closed's error bar; 0 = none.
    """
    level = resolve_confidence(case, confidence)  # bad values are refused before any work
    check_replications(replications)
    step = on_step or (lambda _: None)
    timings: dict[str, float] = {}
    backend = "dask" if scheduler else "loky"

    def draw(n: int, draw_seed: int) -> ScenarioSet:
        # every scenario set of the run shares method and workers; only size and seed differ
        return simulate(case, n, seed=draw_seed, method=method, n_jobs=n_jobs, dtype=dtype,
                        backend=backend, scheduler=scheduler)  # fmt: skip

    def timed(name: str, fn):
        step(name)
        start = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - start
        return value

    scen = timed("simulate", lambda: draw(n_scenarios, seed))
    # the margins are measured on an independent set, so the limits hold at the nominal level
    val = None
    if level:
        val = timed("simulate validation", lambda: draw(n_scenarios, seed + VALIDATION_SEED_OFFSET))
    solved = timed("optimize", lambda: hold_limits(
        case, scen, level, method=optimize_method, validation=val,
    ))  # fmt: skip
    allocation, held = solved.allocation, solved.case  # held: the case less its margins
    if marginal:
        allocation = timed("marginal values", lambda: marginal_values(
            held, scen, allocation, n_jobs=n_jobs, backend=backend, scheduler=scheduler,
        ))  # fmt: skip
    oos = None
    if out_of_sample:
        oos_scen = timed(
            "simulate out of sample", lambda: draw(n_scenarios, seed + OUT_OF_SAMPLE_SEED_OFFSET)
        )
        oos = timed("evaluate out of sample", lambda: evaluate(case, allocation, oos_scen))
    if stresses is None:
        is_default = (
            case.source_file is not None and Path(case.source_file).resolve() == DEFAULT_CASE
        )
        stresses = shipped_stresses() if is_default else []
    front = timed("frontier", lambda: frontier(
        held, scen, "cvar_scale", points=FRONTIER_POINTS, method=optimize_method,
        n_jobs=n_jobs, backend=backend, scheduler=scheduler, start=allocation.warm_start,
    ))  # fmt: skip
    sens, sens_error = None, ""
    if with_sensitivity:
        points = sensitivity_points(case)
        try:
            sens = timed("sensitivity", lambda: sensitivity(
                held, n_scenarios, seed, method=method, n_jobs=n_jobs, scheduler=scheduler,
                dtype=dtype, optimize_method=optimize_method, base=allocation, scenarios=scen,
                on_point=lambda done: step(f"sensitivity: {done} of {points} points solved"),
            ))  # fmt: skip
        except OptimizerError as exc:  # the base solved: only a sweep-wide failure lands here
            sens_error = f"the sensitivity sweep failed: {exc}"
    outcomes = timed("stress tests", lambda: stress_outcomes(
        case, allocation, stresses, n_scenarios, seed, method, n_jobs, scheduler, on_step,
        dtype=dtype,
    ))  # fmt: skip
    reps = None
    if replications:
        reps = timed("replications", lambda: replicate(
            case, n_scenarios, seed, replications, n_jobs=n_jobs, backend=backend,
            scheduler=scheduler, method=method, dtype=dtype, optimize_method=optimize_method,
            confidence=level, start=allocation.warm_start,
        ))  # fmt: skip
    # the method the headline was drawn with (plain Monte Carlo if importance sampling fell back)
    same = Draw(int(n_scenarios), int(seed), str(scen.method), str(dtype))
    analyses = {"headline": same, "frontier": same}
    if oos is not None:
        analyses["out_of_sample"] = dataclasses.replace(same, seed=seed + OUT_OF_SAMPLE_SEED_OFFSET)
    if sens is not None:
        analyses["sensitivity"] = same
    if outcomes:
        analyses["stresses"] = same
    if reps is not None:
        analyses["replications"] = same
    return RunRecord(
        case=case,
        scenarios=scen,
        allocation=allocation,
        out_of_sample=oos,
        stresses=outcomes,
        seed=seed,
        n_scenarios=n_scenarios,
        scenario_method=scen.method,
        timings_s=timings,
        frontier=front,
        sensitivity=sens,
        sensitivity_error=sens_error,
        analyses={name: analyses[name] for name in ANALYSES if name in analyses},
        replications=reps,
    )


RUN_FILE = "run.json"
RESULT_FILE = "result.json"
SCENARIO_FILE = "scenarios.npz"
TIMINGS_FILE = "timings.json"
"""Seconds per step, per solver stage and per frontier point: the one file of a run folder
that differs between runs of the same case and seed (optional on reading)."""
RERUN = "re-run `ppcfin run`"


def save_run(record: RunRecord, folder: Path) -> None:
    """Write what ``ppcfin report`` needs to re-render without solving (into ``folder``).

    result.json, run.json and scenarios.npz depend only on the case, the seed and the options
    (byte-identical for any ``--jobs``); timings go to timings.json. run.json names the case
    file by its absolute path, so the folder can be re-rendered from anywhere.
    """
    folder = Path(folder)
    (folder / RESULT_FILE).write_text(record.allocation.to_json(), encoding="utf-8")
    record.scenarios.save(folder / SCENARIO_FILE)
    front = record.frontier
    seconds = None
    if front is not None:
        seconds = front.table["seconds"].tolist() if "seconds" in front.table else None
        front = dataclasses.replace(
            front, table=front.table.drop(columns="seconds", errors="ignore")
        )
    source = record.case.source_file
    meta = {
        "format_version": RUN_FORMAT_VERSION,
        "case_file": None if source is None else str(Path(source).resolve()),
        "case_sha256": record.case.content_sha256,
        "seed": record.seed,
        "n_scenarios": record.n_scenarios,
        "scenario_method": record.scenario_method,
        "out_of_sample": None if record.out_of_sample is None else to_plain(record.out_of_sample),
        "frontier": None if front is None else _without_workers(to_plain(front)),
        "sensitivity": None if record.sensitivity is None else to_plain(record.sensitivity),
        "sensitivity_error": record.sensitivity_error,
        "stresses": [to_plain(o) for o in record.stresses],
        "replications": None if record.replications is None else to_plain(record.replications),
        "analyses": {name: dataclasses.asdict(d) for name, d in record.analyses.items()},
    }
    (folder / RUN_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False), encoding="utf-8")
    timings = {
        "format_version": TIMINGS_FORMAT_VERSION,
        "run_s": record.timings_s,
        "optimize_s": record.allocation.timings_s,
        "frontier_points_s": to_plain(seconds),
        "frontier_workers": None if front is None else front.workers,
        "frontier_compilations": None if front is None else front.compilations,
    }
    (folder / TIMINGS_FILE).write_text(json.dumps(timings, indent=1), encoding="utf-8")


def _without_workers(frontier: dict) -> dict:
    """A frontier as run.json keeps it: without what depends on ``--jobs`` (timings.json)."""
    return {k: v for k, v in frontier.items() if k not in ("workers", "compilations")}


def load_run(folder: Path) -> RunRecord:
    """Read a folder written by :func:`save_run`, checking every file before trusting it.

    Raises
    ------
    SavedRunError
        A file missing, not JSON, of another format version, with a missing or mistyped
        field, made from another case (result.json) or another run (scenarios.npz), or a
        case file gone or changed since the run. The message names file and field.
    ScenarioFileError
        scenarios.npz unreadable, truncated or with bad metadata.
    CaseError
        The case file no longer loads.
    """
    folder = Path(folder)
    missing = [n for n in (RUN_FILE, RESULT_FILE, SCENARIO_FILE) if not (folder / n).is_file()]
    if missing:
        raise SavedRunError(
            f"{folder}: not a ppcfin results folder (missing {', '.join(missing)}); "
            "run `ppcfin run --out DIR` first"
        )
    run_path, result_path = folder / RUN_FILE, folder / RESULT_FILE
    run = parse_saved(
        RunFile, read_saved_text(run_path, RERUN), str(run_path), RERUN, RUN_FORMAT_VERSION
    )
    case = _case_of(run, run_path)
    timings = _timings(folder / TIMINGS_FILE)
    allocation = Allocation.from_json(
        read_saved_text(result_path, RERUN), str(result_path), timings.optimize_s if timings else {}
    )
    made_from(allocation.case_name, allocation.case_sha256, case, str(result_path), RERUN)
    check_ids(allocation, case, str(result_path))
    if allocation.n_scenarios != run.n_scenarios:
        raise SavedRunError(
            f"{result_path}: n_scenarios {allocation.n_scenarios:,}, but run.json says "
            f"{run.n_scenarios:,}: the files come from different runs; {RERUN}"
        )
    scenarios = ScenarioSet.load(folder / SCENARIO_FILE)
    _check_scenarios(scenarios, run, case, folder / SCENARIO_FILE)
    frontier = None if run.frontier is None else run.frontier.build(Frontier)
    if frontier is not None:
        points = timings.frontier_points_s if timings else None
        if points is None or len(points) != len(frontier.table):
            points = [math.nan] * len(frontier.table)
        seconds = [math.nan if v is None else v for v in points]
        frontier = dataclasses.replace(
            frontier,
            table=frontier.table.assign(seconds=seconds),
            workers=(timings.frontier_workers if timings else None) or 1,
            compilations=(timings.frontier_compilations if timings else None) or 1,
        )
    return RunRecord(
        case=case,
        scenarios=scenarios,
        allocation=allocation,
        out_of_sample=None if run.out_of_sample is None else run.out_of_sample.build(Evaluation),
        stresses=tuple(
            StressOutcome(s.stress_id, s.name, s.description, s.evaluation.build(Evaluation))
            for s in run.stresses
        ),
        seed=run.seed,
        n_scenarios=run.n_scenarios,
        scenario_method=run.scenario_method,
        timings_s=dict(timings.run_s) if timings else {},
        frontier=frontier,
        sensitivity=None if run.sensitivity is None else run.sensitivity.build(Sensitivity),
        sensitivity_error=run.sensitivity_error,
        analyses={name: Draw(**d.model_dump()) for name, d in run.analyses.items()},
        replications=None if run.replications is None else run.replications.build(Replications),
    )


def _case_of(run: RunFile, run_path: Path) -> Case:
    """The run's case, from its absolute path, unchanged since the run."""
    if run.case_file is None:
        raise SavedRunError(
            f"{run_path}: case_file: null (the run's case was built in Python, not read from a "
            "file): `ppcfin report` needs the case file; run it from a case file"
        )
    path = Path(run.case_file)
    if not path.is_file():
        raise SavedRunError(
            f"{run_path}: case_file {path}: no such file (moved or deleted since the run): put "
            f"the case back there, or {RERUN} with the case where it is now"
        )
    case = load_case(path)
    if case.content_sha256 != run.case_sha256:
        then = run.case_sha256[:12] if run.case_sha256 else "none"
        raise SavedRunError(
            f"{run_path}: the case {path} changed since this run (hash {then} then, "
            f"{str(case.content_sha256)[:12]} now); {RERUN} to report on the case as it is"
        )
    return case


def _check_scenarios(scen: ScenarioSet, run: RunFile, case: Case, path: Path) -> None:
    """The scenario file is this run's: size, seed, method, case hash and cells agree."""
    if scen.metadata.get("case_sha256") != case.content_sha256:
        saved = str(scen.metadata.get("case_sha256"))[:12]
        raise SavedRunError(
            f"{path}: simulated for a case with hash {saved}, not this run's case "
            f"{run.case_file} (hash {str(case.content_sha256)[:12]}); {RERUN}"
        )
    facts = [
        ("n_scenarios", scen.n_scenarios, run.n_scenarios),
        ("seed", scen.seed, run.seed),
        ("method", scen.method, run.scenario_method),
    ]
    for name, got, expected in facts:
        if got != expected:
            raise SavedRunError(
                f"{path}: {name} {got!r}, but this run's is {expected!r}: the scenario file "
                f"comes from another run; {RERUN}"
            )
    try:
        same = scen.cells.equals(build_cells(case).astype(scen.cells.dtypes.to_dict()))
    except (ValueError, TypeError):  # a column of another type cannot hold the case's values
        same = False
    if not same:
        raise SavedRunError(
            f"{path}: the cells (columns of the loss matrix) are not those of case "
            f"{case.name!r} in {run.case_file}; {RERUN}"
        )


def _timings(path: Path) -> TimingsFile | None:
    """timings.json if the folder has one (older folders and copies may not)."""
    if not path.is_file():
        return None
    fix = f"delete {path.name} (timings are optional) or {RERUN}"
    return parse_saved(
        TimingsFile, read_saved_text(path, fix), str(path), fix, TIMINGS_FORMAT_VERSION
    )
