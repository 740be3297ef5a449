"""The whole job of ``ppcfin run``: simulate, optimize, check out of sample, stress, keep it all.

:func:`run_case` returns a frozen :class:`RunRecord` that the report layer reads; it never
solves anything itself. Stress tests re-simulate each shipped overlay with the same seed
(common random numbers), so a stress differs from the base run only by what it changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from models import Case, ScenarioSet, load_case, simulate
from models.loader import DEFAULT_CASE
from optimizer.errors import OptimizerError
from optimizer.evaluate import Evaluation, evaluate
from optimizer.frontier import Frontier, frontier
from optimizer.persist import from_plain, to_plain
from optimizer.result import Allocation
from optimizer.sensitivity_analysis import Sensitivity, sensitivity, sensitivity_points
from optimizer.solve import optimize
from optimizer.stress_testing import STRESS_DIR, StressOutcome, shipped_stresses, stress_outcomes

__all__ = [
    "FRONTIER_POINTS",
    "FRONTIER_SCENARIOS",
    "OUT_OF_SAMPLE_SEED_OFFSET",
    "SENSITIVITY_SCENARIOS",
    "STRESS_DIR",
    "RunRecord",
    "SavedRunError",
    "StressOutcome",
    "load_run",
    "run_case",
    "save_run",
    "shipped_stresses",
    "stress_outcomes",
]

FRONTIER_SCENARIOS = 1_500
"""The frontier is swept on a smaller set of the same seed, so a run stays within minutes."""
FRONTIER_POINTS = 6
SENSITIVITY_SCENARIOS = 500
"""The sensitivity sweep re-optimises 17 times (base + 8 inputs x low/high) on a smaller set of
the same seed: about 30 s on 2 idle cores (CRN keeps the changes meaningful at this size)."""
OUT_OF_SAMPLE_SEED_OFFSET = 1_000_003
"""The out-of-sample set uses seed + this offset: independent of the in-sample draws."""


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


def run_case(
    case: Case,
    n_scenarios: int = 5_000,
    seed: int = 7,
    method: str = "mc",
    n_jobs: int = 1,
    scheduler: str | None = None,
    stresses: list[Path] | None = None,
    out_of_sample: bool = True,
    with_sensitivity: bool = True,
    on_step: Callable[[str], None] | None = None,
    dtype: str = "float64",
    optimize_method: str = "auto",
) -> RunRecord:
    """Simulate, optimize, evaluate out of sample and under stress.

    Parameters
    ----------
    case : Case
    n_scenarios, seed, method, n_jobs, scheduler
        Passed to :func:`models.simulate` (in-sample, out-of-sample and stress sets).
    stresses : list of Path, optional
        Overlays to apply; default the shipped ones when ``case`` is the default case, none
        otherwise (an overlay names its base case).
    with_sensitivity : bool
        Run the one-at-a-time sensitivity sweep (every input ±20 %) on
        ``SENSITIVITY_SCENARIOS`` scenarios of the same seed, for the report's tornado.
    on_step : callable, optional
        Told the name of each step as it starts (progress display).
    dtype : {"float64", "float32"}
        Loss matrix precision of every scenario set of the run (float32: half the memory).
    optimize_method : {"auto", "lp", "cutting_plane"}
        Passed to :func:`optimizer.optimize` for the allocation.
    """
    step = on_step or (lambda _: None)
    timings: dict[str, float] = {}

    def draw(n: int, draw_seed: int) -> ScenarioSet:
        # every scenario set of the run shares method and workers; only size and seed differ
        return simulate(case, n, seed=draw_seed, method=method, n_jobs=n_jobs, dtype=dtype,
                        backend="dask" if scheduler else "loky", scheduler=scheduler)  # fmt: skip

    def timed(name: str, fn):
        step(name)
        start = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - start
        return value

    scen = timed("simulate", lambda: draw(n_scenarios, seed))
    allocation = timed("optimize", lambda: optimize(case, scen, method=optimize_method))
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
        case, draw(min(FRONTIER_SCENARIOS, n_scenarios), seed),
        "cvar_scale", points=FRONTIER_POINTS,
    ))  # fmt: skip
    sens, sens_error = None, ""
    if with_sensitivity:
        points = sensitivity_points(case)
        try:
            sens = timed("sensitivity", lambda: sensitivity(
                case, min(SENSITIVITY_SCENARIOS, n_scenarios), seed, method=method,
                n_jobs=n_jobs, scheduler=scheduler,
                on_point=lambda done: step(f"sensitivity: {done} of {points} points solved"),
            ))  # fmt: skip
        except OptimizerError as exc:
            # the sweep's smaller set can fail where the run's did not: say so, keep the run
            sens_error = f"the sensitivity sweep's base case did not solve: {exc}"
    outcomes = timed("stress tests", lambda: stress_outcomes(
        case, allocation, stresses, n_scenarios, seed, method, n_jobs, scheduler, on_step,
    ))  # fmt: skip
    return RunRecord(
        case=case,
        scenarios=scen,
        allocation=allocation,
        out_of_sample=oos,
        stresses=outcomes,
        seed=seed,
        n_scenarios=n_scenarios,
        scenario_method=method,
        timings_s=timings,
        frontier=front,
        sensitivity=sens,
        sensitivity_error=sens_error,
    )


RUN_FILE = "run.json"
RESULT_FILE = "result.json"
SCENARIO_FILE = "scenarios.npz"
RUN_FORMAT_VERSION = 1


def save_run(record: RunRecord, folder: Path) -> None:
    """Write what ``ppcfin report`` needs to re-render without solving (into ``folder``)."""
    folder = Path(folder)
    (folder / RESULT_FILE).write_text(record.allocation.to_json(), encoding="utf-8")
    record.scenarios.save(folder / SCENARIO_FILE)
    meta = {
        "format_version": RUN_FORMAT_VERSION,
        "case_file": record.case.source_file,
        "case_sha256": record.case.content_sha256,
        "seed": record.seed,
        "n_scenarios": record.n_scenarios,
        "scenario_method": record.scenario_method,
        "timings_s": record.timings_s,
        "out_of_sample": None if record.out_of_sample is None else to_plain(record.out_of_sample),
        "frontier": None if record.frontier is None else to_plain(record.frontier),
        "sensitivity": None if record.sensitivity is None else to_plain(record.sensitivity),
        "sensitivity_error": record.sensitivity_error,
        "stresses": [
            {
                "stress_id": o.stress_id,
                "name": o.name,
                "description": o.description,
                "evaluation": to_plain(o.evaluation),
            }
            for o in record.stresses
        ],
    }
    (folder / RUN_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


class SavedRunError(ValueError):
    """A results folder that cannot be re-rendered (missing files, changed case...)."""


def load_run(folder: Path) -> RunRecord:
    """Read a folder written by :func:`save_run`; the case file must be unchanged."""
    folder = Path(folder)
    missing = [n for n in (RUN_FILE, RESULT_FILE, SCENARIO_FILE) if not (folder / n).is_file()]
    if missing:
        raise SavedRunError(
            f"{folder}: not a ppcfin results folder (missing {', '.join(missing)}); "
            "run `ppcfin run --out DIR` first"
        )
    try:
        meta = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SavedRunError(f"{folder / RUN_FILE}: unreadable ({exc})") from None
    if meta.get("format_version") != RUN_FORMAT_VERSION:
        raise SavedRunError(
            f"{folder / RUN_FILE}: format version {meta.get('format_version')}, this ppcfin "
            f"reads {RUN_FORMAT_VERSION}; re-run `ppcfin run`"
        )
    case = load_case(meta["case_file"])
    if case.content_sha256 != meta["case_sha256"]:
        raise SavedRunError(
            f"the case {meta['case_file']} changed since this run (hash "
            f"{meta['case_sha256'][:12]} then, {case.content_sha256[:12]} now); re-run instead"
        )
    allocation = Allocation.from_json((folder / RESULT_FILE).read_text(encoding="utf-8"))
    oos = meta.get("out_of_sample")
    return RunRecord(
        case=case,
        scenarios=ScenarioSet.load(folder / SCENARIO_FILE),
        allocation=allocation,
        out_of_sample=None if oos is None else from_plain(Evaluation, oos),
        stresses=tuple(
            StressOutcome(
                s["stress_id"], s["name"], s["description"], from_plain(Evaluation, s["evaluation"])
            )
            for s in meta["stresses"]
        ),
        seed=int(meta["seed"]),
        n_scenarios=int(meta["n_scenarios"]),
        scenario_method=str(meta["scenario_method"]),
        timings_s=dict(meta["timings_s"]),
        frontier=None if meta.get("frontier") is None else from_plain(Frontier, meta["frontier"]),
        sensitivity=(
            None
            if meta.get("sensitivity") is None
            else from_plain(Sensitivity, meta["sensitivity"])
        ),
        sensitivity_error=str(meta.get("sensitivity_error", "")),
    )
