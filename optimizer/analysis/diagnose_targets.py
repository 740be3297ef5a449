"""Targets in a diagnosis: whether a gap target can be met, what the money requirements must give.

``diagnose(..., max_weighted_gap_usd=X)`` first checks that X can be met at all
(:func:`_check_target`: the segments no source may lend to leave their weighted gap open
whatever the relaxation). A diagnosis that relaxes rules other than the case's requirements in
money (:data:`TARGET_FAMILIES`) also says how much those requirements alone must give, every
other rule kept (:func:`_targets_alone`, the elastic problem again with every other family's
slack :data:`OTHER_RULES_WEIGHT` times dearer). The entry point is
:func:`optimizer.analysis.diagnose.diagnose`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from models.errors import OptionError
from optimizer.analysis.elastic import elastic_problem, solve_elastic
from optimizer.analysis.relaxations import relaxation_table
from optimizer.formulation.problem import AllocationProblem, segment_weights

TARGET_FAMILIES = ("min_deploy", "climate_earmark_usd", "min_gap_closed", "min_households")
"""Requirements in money: when one is relaxed less than the cheapest mix, the diagnosis also
says how much it alone must give (every other rule kept)."""
OTHER_RULES_WEIGHT = 1e4
"""The slack weight multiplier that keeps every other rule while the targets alone give."""


def _targets_alone(
    prob: AllocationProblem,
    wmap: Mapping[str, float],
    max_weighted_gap_usd: float | None,
    solver: str,
    time_limit_s: float | None,
) -> tuple[str, ...]:
    """How much the case's requirements in money must give if every other rule is kept: the
    elastic problem again with every other family's slack :data:`OTHER_RULES_WEIGHT` times
    dearer. Empty when the case has none, or they cannot make it feasible alone."""
    names = {f.name for f in prob.families}
    if not names & set(TARGET_FAMILIES):
        return ()
    weights = {
        n: w * (1.0 if n in TARGET_FAMILIES else OTHER_RULES_WEIGHT) for n, w in wmap.items()
    }
    elastic, slacks, _ = elastic_problem(prob, weights, max_weighted_gap_usd)
    solve_elastic(elastic, solver, time_limit_s)
    alone = relaxation_table(prob, slacks, weights, max_weighted_gap_usd is not None)
    if alone.empty or not alone["family"].isin(TARGET_FAMILIES).all():
        return ()
    return tuple(f"or, keeping every other rule: {m}" for m in alone["message"])


def _check_target(prob: AllocationProblem, target_usd: float) -> None:
    if not (isinstance(target_usd, int | float) and math.isfinite(target_usd) and target_usd >= 0):
        raise OptionError(f"max_weighted_gap_usd must be a finite number >= 0, got {target_usd!r}")
    case = prob.case
    lendable = set(prob.scenarios.cells["segment"].to_numpy()[prob.elig.x_cell])
    w = segment_weights(case)
    floor = sum(w[k] * seg.gap_usd for k, seg in enumerate(case.segments) if seg.id not in lendable)
    if target_usd < floor * (1 - 1e-12):
        shut = [seg.id for seg in case.segments if seg.id not in lendable and seg.gap_usd > 0]
        raise OptionError(
            f"max_weighted_gap_usd={target_usd:,.0f} can never be met: no source may lend to "
            f"segments {shut}, whose weighted gap alone is US${floor:,.0f}"
        )
