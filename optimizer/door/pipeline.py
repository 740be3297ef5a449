"""The one sequence ``ppcfin optimize`` and ``ppcfin run`` share: the headline and its checks.

Both commands draw the headline's scenarios (and, with limits held at a confidence, an
independent validation set of the same size), solve with the margins (an infeasible case
comes back with its diagnosis), re-solve each binding limit for its marginal value, check the
allocation on an independent out-of-sample set and, when asked, replicate the whole estimate
on fresh sets for its error bar. ``run`` then adds its analyses on the same scenarios. Every
draw comes from the one :class:`models.Recipe` the door built, and every step goes through
``step(name, work)``: ``run`` times it, ``optimize`` shows it as a status line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from models import Case, Recipe, ScenarioSet
from optimizer.analysis.confidence import VALIDATION_SEED_OFFSET, hold_limits
from optimizer.analysis.diagnose import optimize_or_diagnose
from optimizer.analysis.evaluate import Evaluation, evaluate
from optimizer.analysis.replicate import Replications, replicate
from optimizer.formulation.warm_start import WarmStart
from optimizer.result import Allocation

T = TypeVar("T")
Step = Callable[[str, Callable[[], T]], T]
"""How a caller runs a named step: ``step("optimize", work)`` returns ``work()``."""

OUT_OF_SAMPLE_SEED_OFFSET = 1_000_003
"""The out-of-sample set uses seed + this offset: independent of the in-sample draws."""

__all__ = [
    "OUT_OF_SAMPLE_SEED_OFFSET",
    "Headline",
    "Step",
    "check_out_of_sample",
    "replications_of",
    "solve_headline",
    "untimed",
]


def untimed(name: str, work: Callable[[], T]) -> T:
    """A :data:`Step` that just runs the work."""
    return work()


@dataclass(frozen=True, eq=False)
class Headline:
    """The headline of a run: its scenarios, the allocation, the case it was held to.

    Attributes
    ----------
    scenarios : ScenarioSet
        The headline's set, shape (n_scenarios, n_cells): every analysis of a run uses it.
    allocation : Allocation
        Held at the confidence, with the marginal values when they were asked for.
    held : Case
        The case less its confidence margins (the case itself at confidence 0): the limits
        the allocation meets on ``scenarios``, around which the analyses re-solve.
    """

    scenarios: ScenarioSet
    allocation: Allocation
    held: Case


def solve_headline(
    case: Case,
    recipe: Recipe,
    confidence: float,
    optimize_method: str = "auto",
    marginal: bool = True,
    step: Step = untimed,
) -> Headline:
    """Draw, solve with margins at ``confidence`` (0: none), re-solve each binding limit.

    Steps: ``simulate``, ``simulate validation`` (with a confidence), ``optimize``,
    ``marginal values`` (when ``marginal``).

    Raises
    ------
    InfeasibleCase
        With ``exc.diagnosis`` set: what must give (:func:`optimize_or_diagnose`).
    """
    scen = step("simulate", lambda: recipe.draw(case))
    # the margins are measured on an independent set, so the limits hold at the nominal level
    val = None
    if confidence:
        val = step("simulate validation", lambda: recipe.draw(case, VALIDATION_SEED_OFFSET))
    solved = step(
        "optimize",
        lambda: hold_limits(
            case,
            scen,
            confidence,
            solve=optimize_or_diagnose,
            method=optimize_method,
            validation=val,
        ),
    )
    val = None  # the validation set is not needed past the margins: free it
    allocation = solved.allocation
    if marginal:
        from optimizer.analysis.marginal import marginal_values

        # around the limits the allocation was held to (the case's, less the margins)
        allocation = step(
            "marginal values",
            lambda: marginal_values(
                solved.case,
                scen,
                allocation,
                n_jobs=recipe.n_jobs,
                backend=recipe.backend,
                scheduler=recipe.scheduler,
            ),
        )
    return Headline(scen, allocation, solved.case)


def check_out_of_sample(
    case: Case, recipe: Recipe, allocation: Allocation, step: Step = untimed
) -> Evaluation:
    """The allocation on an independent set of the recipe's size (seed +
    :data:`OUT_OF_SAMPLE_SEED_OFFSET`), against the case's own limits.

    Steps: ``simulate out of sample``, ``evaluate out of sample``.
    """
    seed_offset = OUT_OF_SAMPLE_SEED_OFFSET
    oos = step("simulate out of sample", lambda: recipe.draw(case, seed_offset))
    return step("evaluate out of sample", lambda: evaluate(case, allocation, oos))


def replications_of(
    case: Case,
    recipe: Recipe,
    replications: int,
    confidence: float,
    optimize_method: str = "auto",
    start: WarmStart | None = None,
    on_replication: Callable[[int], None] | None = None,
) -> Replications:
    """The headline estimated again on ``replications`` fresh sets of the recipe
    (:func:`optimizer.analysis.replicate.replicate`), each from the headline's warm start."""
    return replicate(
        case,
        recipe.n_scenarios,
        recipe.seed,
        replications,
        n_jobs=recipe.n_jobs,
        backend=recipe.backend,
        scheduler=recipe.scheduler,
        method=recipe.sampling,
        dtype=recipe.dtype,
        optimize_method=optimize_method,
        confidence=confidence,
        on_replication=on_replication,
        start=start,
    )
