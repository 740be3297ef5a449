"""The whole job of ``ppcfin run``: simulate, optimize, check out of sample, stress, keep it all.

:func:`run_case` returns a frozen :class:`RunRecord` that the report layer reads; it never
solves anything itself. Stress tests re-simulate each shipped overlay with the same seed
(common random numbers), so a stress differs from the base run only by what it changes. The
headline's sequence is :mod:`optimizer.door.pipeline`'s (``optimize`` runs the same); the folder
a run writes and ``report`` reads is :mod:`optimizer.door.run_files`'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from models import RUN_REPLICATIONS, Case, Recipe, ScenarioSet
from models.loader import DEFAULT_CASE
from optimizer.analysis.confidence import resolve_confidence
from optimizer.analysis.evaluate import Evaluation
from optimizer.analysis.frontier import Frontier, frontier
from optimizer.analysis.replicate import Replications, check_replications
from optimizer.analysis.sensitivity_analysis import Sensitivity, sensitivity, sensitivity_points
from optimizer.analysis.stress_testing import (
    STRESS_DIR,
    StressOutcome,
    shipped_stresses,
    stress_outcomes,
)
from optimizer.door.pipeline import (
    OUT_OF_SAMPLE_SEED_OFFSET,
    check_out_of_sample,
    replications_of,
    solve_headline,
)
from optimizer.errors import OptimizerError
from optimizer.result import Allocation

__all__ = [
    "ANALYSES",
    "FRONTIER_POINTS",
    "OUT_OF_SAMPLE_SEED_OFFSET",
    "STRESS_DIR",
    "Draw",
    "RunRecord",
    "StressOutcome",
    "run_case",
    "shipped_stresses",
    "stress_outcomes",
]

FRONTIER_POINTS = 7
"""x0.5 to x2 of every funder's CVaR limit in steps of 0.25: the case's own setting (x1) is a
point of the frontier, on the headline's scenarios, so it is the headline."""


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
    recipe: Recipe | None = None,
    *,
    stresses: list[Path] | None = None,
    out_of_sample: bool = True,
    with_sensitivity: bool = True,
    on_step: Callable[[str], None] | None = None,
    optimize_method: str = "auto",
    marginal: bool = True,
    confidence: float | None = None,
    replications: int = RUN_REPLICATIONS,
) -> RunRecord:
    """Simulate, optimize, evaluate out of sample and under stress.

    Parameters
    ----------
    case : Case
    recipe : Recipe, optional
        How every scenario set of the run is drawn (count, seed, sampling method, dtype,
        workers); default ``Recipe()``: :data:`models.DEFAULT_SCENARIOS` importance-sampled
        scenarios of seed 7 in float64, one worker.
    stresses : list of Path, optional
        Overlays to apply; default the shipped ones when ``case`` is the default case, none
        otherwise (an overlay names its base case).
    with_sensitivity : bool
        Run the one-at-a-time sensitivity sweep (every input ±20 %) for the report's tornado:
        its base is the headline, its points re-drawn at the headline's count, seed and dtype.
    on_step : callable, optional
        Told the name of each step as it starts (progress display).
    optimize_method : {"auto", "lp", "cutting_plane"}
        Passed to :func:`optimizer.optimize` for the allocation.
    marginal : bool
        Re-solve each binding limit relaxed and tightened by its step on the headline's
        scenarios (:func:`optimizer.analysis.marginal.marginal_values`): the allocation's
        ``binding`` table then carries the re-solved gains the report quotes.
    confidence : float, optional
        Each risk limit held out of sample at this confidence
        (:func:`optimizer.analysis.confidence.hold_limits`); default the case's
        ``policy.confidence``, 0 = off; the margins are measured on an independent
        validation set of the same size (seed + ``VALIDATION_SEED_OFFSET``). The marginal
        values, the frontier and the sensitivity sweep then work around the limits the
        allocation was held to (the case's, less their margins), so the frontier's x1 point
        and the tornado's base are the headline.
    replications : int
        Independent scenario sets of the headline's size re-optimised as the headline was
        (:func:`optimizer.analysis.replicate.replicate`): the gap closed's error bar; 0 = none.

    Raises
    ------
    InfeasibleCase
        The case has no allocation; ``exc.diagnosis`` says what must give.
    """
    recipe = Recipe() if recipe is None else recipe
    level = resolve_confidence(case, confidence)  # bad values are refused before any work
    check_replications(replications)
    timings: dict[str, float] = {}

    def timed(name: str, work):
        if on_step:
            on_step(name)
        start = time.perf_counter()
        value = work()
        timings[name] = time.perf_counter() - start
        return value

    head = solve_headline(case, recipe, level, optimize_method, marginal, timed)
    scen, allocation, held = head.scenarios, head.allocation, head.held
    oos = check_out_of_sample(case, recipe, allocation, timed) if out_of_sample else None
    if stresses is None:
        is_default = (
            case.source_file is not None and Path(case.source_file).resolve() == DEFAULT_CASE
        )
        stresses = shipped_stresses() if is_default else []
    workers = {"n_jobs": recipe.n_jobs, "scheduler": recipe.scheduler}
    front = timed(
        "frontier",
        lambda: frontier(
            held,
            scen,
            "cvar_scale",
            points=FRONTIER_POINTS,
            method=optimize_method,
            backend=recipe.backend,
            start=allocation.warm_start,
            **workers,
        ),
    )
    sens, sens_error = None, ""
    if with_sensitivity:
        points = sensitivity_points(case)

        def on_point(done: int) -> None:
            if on_step:
                on_step(f"sensitivity: {done} of {points} points solved")

        try:
            sens = timed(
                "sensitivity",
                lambda: sensitivity(
                    held,
                    recipe.n_scenarios,
                    recipe.seed,
                    method=recipe.sampling,
                    dtype=recipe.dtype,
                    optimize_method=optimize_method,
                    base=allocation,
                    scenarios=scen,
                    on_point=on_point,
                    **workers,
                ),
            )
        except OptimizerError as exc:  # the base solved: only a sweep-wide failure lands here
            sens_error = f"the sensitivity sweep failed: {exc}"
    outcomes = timed(
        "stress tests",
        lambda: stress_outcomes(allocation, stresses, recipe, on_step),
    )
    reps = None
    if replications:
        reps = timed(
            "replications",
            lambda: replications_of(
                case, recipe, replications, level, optimize_method, allocation.warm_start
            ),
        )
    seed, n_scenarios = recipe.seed, recipe.n_scenarios
    # the method the headline was drawn with (plain Monte Carlo if importance sampling fell back)
    same = Draw(int(n_scenarios), int(seed), str(scen.method), recipe.dtype)
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
