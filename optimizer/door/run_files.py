"""A run's folder: what ``ppcfin run`` writes and ``ppcfin report`` reads back without solving.

:func:`save_run` writes result.json, run.json, scenarios.npz (byte-identical for any
``--jobs``) and timings.json; :func:`load_run` reads them back into the :class:`RunRecord`
they came from, checking each file against the others and against the case they name.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from models import Case, ScenarioSet, load_case
from models.cells import build_cells
from optimizer.analysis.evaluate import Evaluation
from optimizer.analysis.frontier import Frontier
from optimizer.analysis.replicate import Replications
from optimizer.analysis.sensitivity_analysis import Sensitivity
from optimizer.analysis.stress_testing import StressOutcome
from optimizer.door.run import Draw, RunRecord
from optimizer.persist import SavedRunError, parse_saved, read_saved_text, to_plain
from optimizer.result import Allocation
from optimizer.saved import (
    RUN_FORMAT_VERSION,
    TIMINGS_FORMAT_VERSION,
    RunFile,
    TimingsFile,
    check_ids,
    made_from,
)

__all__ = ["RESULT_FILE", "RUN_FILE", "SCENARIO_FILE", "TIMINGS_FILE", "load_run", "save_run"]


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
