"""Frontiers: compiled once, monotone, and each point equal to an independent optimization."""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import modified, random_case, synthetic_scenarios

from optimizer import optimize
from optimizer.frontier import frontier
from optimizer.problem import build_problem


def _scaled_limits(case, scale):
    changes = {}
    for s in case.sources:
        if s.cvar_limit_usd is not None:
            changes[s.id] = {"cvar_limit_usd": s.cvar_limit_usd * scale}
        elif s.cvar_limit_share is not None:
            changes[s.id] = {"cvar_limit_share": min(1.0, s.cvar_limit_share * scale)}
    return modified(case, sources=changes)


@pytest.mark.parametrize("seed", [1, 2])
def test_cvar_frontier_is_monotone_and_matches_fresh_solves(seed):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 300, seed, importance=seed % 2 == 0)
    values = [0.25, 0.5, 1.0, 1.5]
    front = frontier(case, scen, "cvar_scale", values=values)
    table = front.table
    assert list(table["value"]) == values
    assert (table["status"] == "optimal").all()
    gaps = table["weighted_gap_usd"].to_numpy()
    assert np.all(np.diff(gaps) <= 1e-6 * gaps[:-1] + 1.0)  # never increases (US$1 slack)
    assert front.compiled_once
    for value, gap in zip(values, gaps, strict=True):
        shares = [s.cvar_limit_share for s in case.sources if s.cvar_limit_share is not None]
        if shares and max(shares) * value > 1.0:
            continue  # a share limit cannot be scaled past 100% in a case file
        fresh = optimize(_scaled_limits(case, value), scen, method="lp", gap_tolerance=0.0)
        assert fresh.objective_weighted_gap_usd == pytest.approx(gap, rel=1e-6, abs=1.0)


def test_amount_frontier_more_money_never_raises_the_gap():
    case = random_case(3)
    scen = synthetic_scenarios(case, 300, 3)
    source = case.sources[0].id
    front = frontier(case, scen, f"amount:{source}", values=[0.0, 0.5, 1.0, 2.0])
    gaps = front.table["weighted_gap_usd"].to_numpy()
    assert np.all(np.diff(gaps) <= 1.0)
    fresh = optimize(
        modified(case, sources={source: {"amount_usd": case.sources[0].amount_usd * 0.5}}),
        scen,
        method="lp",
        gap_tolerance=0.0,
    )
    assert fresh.objective_weighted_gap_usd == pytest.approx(gaps[1], rel=1e-6, abs=1.0)


def test_the_swept_problem_is_dpp():
    case = random_case(1)
    scen = synthetic_scenarios(case, 100, 1)
    assert build_problem(case, scen).problem.is_dpp()


@pytest.mark.parametrize(
    ("sweep", "values", "needle"),
    [
        ("risk", None, "sweep must be"),
        ("amount:NOPE", None, "unknown source"),
        ("cvar_scale", [-1.0], "multipliers >= 0"),
    ],
)
def test_bad_sweeps_are_refused(sweep, values, needle):
    case = random_case(1)
    scen = synthetic_scenarios(case, 50, 1)
    with pytest.raises(ValueError, match=needle):
        frontier(case, scen, sweep, values=values)
