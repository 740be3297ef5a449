"""The plain minimum-CVaR portfolio: four formulations agree, the CVaR is recomputed, bad
arguments are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from models.risk_measures import conditional_value_at_risk
from optimizer.formulation.portfolio import METHODS, min_cvar_portfolio

SOLVING = ("column_generation", "dual", "cutting_plane", "lp")
# (scenarios, assets, alpha, max_weight, floor quantile or None, weighted scenarios)
CASES = [
    (300, 5, 0.90, 1.0, None, False),
    (1000, 10, 0.95, 0.3, 0.7, True),
    (3000, 5, 0.95, 0.4, 0.6, False),  # column generation over two sample levels
    (2000, 20, 0.90, 0.1, None, True),  # one sample level, weighted
    (3000, 50, 0.80, 0.05, 0.7, False),  # one sample level, caps and floor both bind
    (500, 50, 0.95, 0.1, 0.5, True),
]


def make_returns(n_scenarios: int, n_assets: int, seed: int) -> np.ndarray:
    """Correlated fat-tailed daily-sized returns (the benchmark's model, smaller)."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(5e-4, 3e-4, n_assets)
    mixing = rng.normal(0.0, 0.01, (n_assets, n_assets)) / np.sqrt(n_assets)
    return drift + rng.standard_t(4, (n_scenarios, n_assets)) @ mixing


def case_inputs(case, seed: int):
    n_scen, n, alpha, cap, quantile, weighted = case
    returns = make_returns(n_scen, n, seed)
    rng = np.random.default_rng(seed + 1)
    p = rng.uniform(0.2, 1.0, n_scen) if weighted else np.ones(n_scen)
    p /= p.sum()
    floor = None if quantile is None else float(np.quantile(p @ returns, quantile))
    return returns, p, dict(alpha=alpha, max_weight=cap, min_return=floor)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_formulations_agree_and_meet_constraints(index):
    returns, p, kw = case_inputs(CASES[index], seed=100 + index)
    sols = {m: min_cvar_portfolio(returns, probabilities=p, method=m, **kw) for m in SOLVING}
    reference = sols["dual"].cvar
    mu = p @ returns
    for method, sol in sols.items():
        assert sol.method == method
        assert sol.cvar == pytest.approx(reference, rel=1e-6), method
        # the cutting plane stops once its estimate is within its tolerance (1e-6 relative
        # plus f x HiGHS's 1e-7 row tolerance): its own optimum is a lower bound that close
        loose = method == "cutting_plane"
        assert sol.objective == pytest.approx(sol.cvar, rel=1e-5 if loose else 1e-8), method
        w = sol.weights
        assert w.sum() == pytest.approx(1.0, abs=1e-7), method
        assert w.min() >= 0.0 and w.max() <= kw["max_weight"] + 1e-7, method
        if kw["min_return"] is not None:
            assert mu @ w >= kw["min_return"] - 1e-7 * abs(kw["min_return"]), method
        # the CVaR is the risk measure's own, recomputed from the weights
        cvar = conditional_value_at_risk(-(returns @ w), kw["alpha"], p).value
        assert sol.cvar == pytest.approx(float(cvar), rel=1e-12), method
        assert sol.expected_return == pytest.approx(float(mu @ w), rel=1e-12)


def test_column_generation_holds_fewer_scenarios_than_the_whole_dual():
    returns, p, kw = case_inputs(CASES[2], seed=102)
    sol = min_cvar_portfolio(returns, probabilities=p, method="column_generation", **kw)
    whole = min_cvar_portfolio(returns, probabilities=p, method="dual", **kw)
    assert whole.scenario_columns == 3000
    # the tail is 150 scenarios: the generated model holds those near the VaR as columns (the
    # deepest sit at their bound, outside the matrix), not all 3000
    assert 0 < sol.scenario_columns < 1000
    assert sol.cvar == pytest.approx(whole.cvar, rel=1e-9)


def test_auto_picks_the_whole_dual_when_small_and_columns_when_large():
    small = min_cvar_portfolio(make_returns(200, 5, 1), 0.9)  # first sample would be 120
    large = min_cvar_portfolio(make_returns(5000, 5, 1), 0.9)
    assert (small.method, large.method) == ("dual", "column_generation")


def test_zero_probability_scenarios_are_ignored():
    returns = make_returns(2000, 8, 3)
    p = np.full(2000, 1.0)
    p[::7] = 0.0  # those scenarios made catastrophic: they must not matter
    returns[::7] = -0.5
    p /= p.sum()
    kept = p > 0
    expected = min_cvar_portfolio(returns[kept], 0.9, probabilities=p[kept], method="dual")
    for method in ("dual", "column_generation"):
        sol = min_cvar_portfolio(returns, 0.9, probabilities=p, method=method)
        assert sol.cvar == pytest.approx(expected.cvar, rel=1e-9), method


def test_float32_returns_reach_the_float64_optimum():
    returns = make_returns(4000, 10, 4)
    double = min_cvar_portfolio(returns, 0.95, max_weight=0.3, method="dual")
    single = min_cvar_portfolio(returns.astype(np.float32), 0.95, max_weight=0.3)
    assert single.method == "column_generation"
    assert single.cvar == pytest.approx(double.cvar, rel=1e-5)


@pytest.mark.parametrize("method", SOLVING)
def test_unreachable_return_floor_is_a_value_error_naming_it(method):
    returns = make_returns(400, 5, 5)
    best_capped = np.sort(returns.mean(axis=0))[-2:].mean()  # two assets at cap 0.5
    with pytest.raises(ValueError, match="min_return"):
        min_cvar_portfolio(
            returns, 0.9, max_weight=0.5, min_return=best_capped * 1.01 + 1e-6, method=method
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(returns=np.zeros(10)), "returns"),
        (dict(returns=np.full((10, 3), np.nan)), "returns"),
        (dict(returns=np.zeros((10, 3), dtype=int)), "returns"),
        (dict(alpha=1.0), "alpha"),
        (dict(alpha=0.0), "alpha"),
        (dict(max_weight=0.0), "max_weight"),
        (dict(max_weight=0.2), "max_weight"),  # 3 assets cannot sum to 1 under 0.2
        (dict(min_return=np.nan), "min_return"),
        (dict(probabilities=np.ones(5) / 5), "probabilities"),
        (dict(probabilities=np.r_[-0.1, np.full(9, 1.1 / 9)]), "probabilities"),
        (dict(probabilities=np.full(10, 0.2)), "probabilities"),
        (dict(method="simplex"), "method"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, name):
    args = dict(returns=make_returns(10, 3, 6), alpha=0.9) | kwargs
    returns = args.pop("returns")
    with pytest.raises(ValueError, match=name):
        min_cvar_portfolio(returns, **args)


def test_methods_constant_lists_every_choice():
    assert set(METHODS) == {"auto", *SOLVING}


@pytest.mark.slow
def test_column_generation_matches_the_whole_dual_at_100k_by_50():
    returns = make_returns(100_000, 50, 7)
    floor = float(np.quantile(returns.mean(axis=0), 0.75))
    kw = dict(max_weight=0.1, min_return=floor)
    generated = min_cvar_portfolio(returns, 0.95, method="column_generation", **kw)
    whole = min_cvar_portfolio(returns, 0.95, method="dual", **kw)
    assert generated.cvar == pytest.approx(whole.cvar, rel=1e-9)
    assert generated.scenario_columns < 20_000
