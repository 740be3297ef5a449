"""The maths checked from outside: an independent linprog formulation, shadow prices against
finite differences, and monotonicity in risk limits and money."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from optimizer_cases import modified, one_cell_case, random_case, scenario_set, synthetic_scenarios
from optimizer_reference import reference_weighted_gap_usd

from models import load_case
from optimizer import optimize

CASES = [(seed, seed % 2 == 0) for seed in (1, 2, 3, 4, 5, 6)]


@pytest.mark.parametrize(("seed", "importance"), CASES)
def test_cvxpy_and_explicit_linprog_reach_the_same_optimum(seed, importance):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 300, seed, importance=importance)
    res = optimize(case, scen)
    ref = reference_weighted_gap_usd(case, scen)
    assert res.objective_weighted_gap_usd == pytest.approx(ref, rel=1e-6)


def test_one_cell_case_agrees_with_linprog_under_uneven_probabilities():
    rng = np.random.default_rng(5)
    case = one_cell_case(30e6, 20e6, cvar_alpha=0.9, cvar_limit_share=0.08)
    p = rng.dirichlet(np.full(500, 0.5))
    scen = scenario_set(case, rng.beta(2, 20, (500, 1)), p)
    res = optimize(case, scen)
    assert res.objective_weighted_gap_usd == pytest.approx(
        reference_weighted_gap_usd(case, scen), rel=1e-6
    )


def relaxed(case, family: str, source: str, delta: float):
    src = case.finance_source(source)
    if family == "budget":
        return modified(case, sources={source: {"amount_usd": src.amount_usd + delta}})
    return modified(case, sources={source: {"cvar_limit_usd": src.cvar_limit_usd + delta}})


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_shadow_prices_predict_the_gain_from_relaxing_a_limit(seed):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 300, seed, importance=seed % 2 == 0)
    base = optimize(case, scen, gap_tolerance=0.0)
    rows = base.binding[base.binding["family"].isin(["budget", "cvar_limit"])]
    rows = rows[rows["shadow_price"] > 1e-3]
    usd_limited = [s.id for s in case.sources if s.cvar_limit_usd is not None]
    rows = rows[(rows["family"] == "budget") | rows["subject"].isin(usd_limited)]
    assert {"budget", "cvar_limit"} <= set(rows["family"])
    for row in rows.itertuples():
        delta = 1e4 if row.family == "budget" else 1e3  # US$: small against the limits
        new = optimize(relaxed(case, row.family, row.subject, delta), scen, gap_tolerance=0.0)
        change = new.objective_weighted_gap_usd - base.objective_weighted_gap_usd
        assert change == pytest.approx(-row.shadow_price * delta, rel=0.02), row.label


def test_default_case_budget_price_predicts_the_gain():
    case = load_case()
    scen = synthetic_scenarios(case, 500, 3)
    base = optimize(case, scen, gap_tolerance=0.0)
    row = base.binding[base.binding["family"] == "budget"].iloc[0]
    assert row.shadow_price > 0.5
    new = optimize(relaxed(case, "budget", row.subject, 1e5), scen, gap_tolerance=0.0)
    change = new.objective_weighted_gap_usd - base.objective_weighted_gap_usd
    assert change == pytest.approx(-row.shadow_price * 1e5, rel=0.02)


def tightened(case, factor: float):
    changes = {}
    for s in case.sources:
        if s.cvar_limit_usd is not None:
            changes[s.id] = {"cvar_limit_usd": s.cvar_limit_usd * factor}
        elif s.cvar_limit_share is not None:
            changes[s.id] = {"cvar_limit_share": s.cvar_limit_share * factor}
    return modified(case, sources=changes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tighter_cvar_limits_never_lower_the_gap(seed):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 300, seed, importance=True)
    gaps = [
        optimize(tightened(case, f), scen).objective_weighted_gap_usd for f in (1.0, 0.7, 0.4, 0.1)
    ]
    assert all(b >= a * (1 - 1e-9) for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] > gaps[0]  # the limits do bite


@pytest.mark.parametrize("seed", [1, 4])
def test_more_money_never_raises_the_gap(seed):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 300, seed)
    base = optimize(case, scen).objective_weighted_gap_usd
    for src in case.sources:
        richer = modified(case, sources={src.id: {"amount_usd": src.amount_usd * 1.5}})
        assert optimize(richer, scen).objective_weighted_gap_usd <= base * (1 + 1e-9), src.id
