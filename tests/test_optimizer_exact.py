"""Optimizer cases solvable by hand, the result file, and every failure path on purpose."""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import (
    modified,
    one_cell_case,
    random_case,
    scenario_set,
    synthetic_scenarios,
)

import optimizer.solve_stage as stage_module  # the solver call `_run` lives there
from models.risk_measures import conditional_value_at_risk
from optimizer import (
    Allocation,
    InfeasibleCase,
    ScenarioMismatch,
    SolverFailure,
    optimize,
)

W = 1.5  # objective weight of the one-cell case's segment: 1 + 1.0 x pressure 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def uneven(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.exponential(size=n)
    return p / p.sum()


def cvar_brute_force(losses: np.ndarray, alpha: float, p: np.ndarray) -> float:
    """min over t of t + Σ p (L − t)+ / (1 − α); the minimum sits at one of the losses."""
    t = losses[:, None]
    return float(np.min(t[:, 0] + (p @ np.maximum(losses[:, None] - t.T, 0.0)) / (1 - alpha)))


@pytest.mark.parametrize(("amount", "gap"), [(5e6, 8e6), (12e6, 8e6)])
def test_one_cell_without_limits_closes_min_of_gap_and_amount(amount, gap, rng):
    case = one_cell_case(amount, gap)
    scen = scenario_set(case, rng.beta(1, 20, (200, 1)), uneven(rng, 200))
    res = optimize(case, scen, gap_tolerance=0.0)
    closed = min(gap, amount)
    assert res.gap_closed_usd == pytest.approx(closed, rel=1e-8)
    assert res.objective_weighted_gap_usd == pytest.approx(W * (gap - closed), rel=1e-9, abs=1e-3)
    assert res.allocation["amount_usd"].sum() == pytest.approx(closed, rel=1e-8)
    # The binding row says what limits the answer: money when scarce, else the need itself.
    top = res.binding.iloc[0]
    if amount < gap:
        assert (top.family, top.subject) == ("budget", "S")
        assert top.shadow_price == pytest.approx(W, rel=1e-9)
    else:
        assert (top.family, top.subject) == ("segment_gap", "K")
        assert top.shadow_price == pytest.approx(W, rel=1e-9)


def test_one_cell_binding_cvar_limit_gives_limit_over_unit_cvar(rng):
    # L = ℓ x, so CVaR(L) = x CVaR(ℓ) and the most the lender can lend is limit / CVaR(ℓ).
    n, alpha, limit = 400, 0.95, 0.5e6
    losses = rng.beta(2, 30, n)
    p = uneven(rng, n)
    case = one_cell_case(100e6, 50e6, cvar_alpha=alpha, cvar_limit_usd=limit)
    res = optimize(case, scenario_set(case, losses[:, None], p), gap_tolerance=0.0)
    unit_cvar = cvar_brute_force(losses, alpha, p)
    assert unit_cvar == pytest.approx(conditional_value_at_risk(losses, alpha, p).value)
    lent = limit / unit_cvar
    assert lent < 50e6  # the limit, not the gap or the money, binds
    assert res.gap_closed_usd == pytest.approx(lent, rel=1e-7)
    src = res.sources.set_index("source").loc["S"]
    assert src["cvar_usd"] == pytest.approx(limit, rel=1e-7)
    assert src["cvar_headroom_usd"] == pytest.approx(0.0, abs=limit * 1e-7)
    # One more US$ of CVaR allowance lends 1/CVaR(ℓ) more US$, each worth W of weighted gap.
    row = res.binding.set_index("family").loc["cvar_limit"]
    assert row["shadow_price"] == pytest.approx(W / unit_cvar, rel=1e-7)
    euler = res.euler
    assert euler["contribution_usd"].sum() == pytest.approx(src["cvar_usd"], rel=1e-9)


@pytest.fixture(scope="module")
def small_result() -> Allocation:
    case = random_case(1)
    return optimize(case, synthetic_scenarios(case, 300, 1, importance=True), method="lp")


def test_json_round_trip_is_exact(small_result):
    text = small_result.to_json()
    back = Allocation.from_json(text)
    assert back == small_result
    assert back.to_json() == text
    assert back.allocation.dtypes.equals(small_result.allocation.dtypes)
    assert back.fallbacks == small_result.fallbacks
    assert back.format_version == 3 and back.method == "lp"


def test_json_of_another_version_is_refused(small_result):
    text = small_result.to_json().replace('"format_version": 3', '"format_version": 99')
    with pytest.raises(ValueError, match="format version 99"):
        Allocation.from_json(text)


def test_summary_names_case_gap_and_binding_limits(small_result):
    text = small_result.summary()
    assert "random 1" in text
    assert f"({small_result.gap_closed_share:.1%})" in text
    assert "binding:" in text


def test_negative_money_that_skipped_validation_is_infeasible():
    # With validated inputs lending nothing is always feasible; only a case that bypassed
    # validation (model_copy does not validate) can make the budget row impossible.
    case = random_case(2)
    bad_source = case.sources[0].model_copy(update={"amount_usd": -1e6})
    bad = case.model_copy(update={"sources": (bad_source, *case.sources[1:])})
    with pytest.raises(InfeasibleCase) as err:
        optimize(bad, synthetic_scenarios(case, 100, 2))
    assert err.value.stage == 1
    assert err.value.case_name == "random 2"
    assert err.value.diagnosis is None
    assert "infeasible at stage 1" in str(err.value)


def fake_run(outcomes: dict[str, tuple[str, str]]):
    """A solver call that returns canned statuses for some solvers and really solves else."""
    real = stage_module._run

    def run(prob, name, stage, time_limit_s):
        if name in outcomes:
            status, reason = outcomes[name]
            if status == "optimal_inaccurate":
                real(prob, name, stage, time_limit_s)  # a real point, reported inaccurate
            return status, reason, 0.0
        return real(prob, name, stage, time_limit_s)

    return run


def test_fallback_to_clarabel_is_recorded(monkeypatch):
    monkeypatch.setattr(stage_module, "_run", fake_run({"HIGHS": ("solver_error", ": boom")}))
    case = random_case(3)
    res = optimize(case, synthetic_scenarios(case, 100, 3), method="lp")
    assert res.solver == "CLARABEL"
    assert len(res.fallbacks) == 2  # one per stage
    assert all(
        "HIGHS returned solver_error: boom; retried with CLARABEL" in f for f in res.fallbacks
    )


def test_inaccurate_optimum_is_a_warning_not_a_silent_success(monkeypatch):
    monkeypatch.setattr(stage_module, "_run", fake_run({"HIGHS": ("optimal_inaccurate", "")}))
    case = random_case(3)
    res = optimize(case, synthetic_scenarios(case, 100, 3), method="lp")
    assert res.status == "optimal_inaccurate"
    assert len(res.warnings) == 2 and "inaccurate" in res.warnings[0]
    assert "WARNING" in res.summary()


@pytest.mark.parametrize(
    ("status", "match"),
    [
        ("unbounded", "CLARABEL returned status 'unbounded' at stage 1"),
        ("user_limit", "time limit of 5 s was reached"),
    ],
)
def test_unusable_statuses_raise_solver_failure(monkeypatch, status, match):
    monkeypatch.setattr(
        stage_module, "_run", fake_run({"HIGHS": (status, ""), "CLARABEL": (status, "")})
    )
    case = random_case(3)
    with pytest.raises(SolverFailure, match=match) as err:
        optimize(case, synthetic_scenarios(case, 50, 3), time_limit_s=5, method="lp")
    assert err.value.status == status and err.value.stage == 1


def test_scenarios_of_another_case_are_refused():
    case, other = random_case(1), one_cell_case(1e6, 1e6)
    with pytest.raises(ScenarioMismatch, match="re-simulate"):
        optimize(case, synthetic_scenarios(other, 50, 1))


def test_bad_arguments_name_the_value():
    case = random_case(1)
    scen = synthetic_scenarios(case, 20, 1)
    with pytest.raises(ValueError, match="GUROBI"):
        optimize(case, scen, solver="GUROBI")
    with pytest.raises(ValueError, match=r"gap_tolerance must be in \[0, 0.1\], got 0.5"):
        optimize(case, scen, gap_tolerance=0.5)
    with pytest.raises(ValueError, match="time_limit_s"):
        optimize(case, scen, time_limit_s=0)


def test_clarabel_as_primary_reaches_the_same_optimum():
    case = random_case(4)
    scen = synthetic_scenarios(case, 200, 4, importance=True)
    highs = optimize(case, scen, method="lp")
    clarabel = optimize(modified(case), scen, solver="clarabel", method="lp")
    assert clarabel.solver == "CLARABEL"
    assert clarabel.objective_weighted_gap_usd == pytest.approx(
        highs.objective_weighted_gap_usd, rel=1e-5
    )
