"""The cutting-plane CVaR engine against the one-LP formulation: same optimum, same prices."""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import random_case, synthetic_scenarios
from optimizer_reference import reference_weighted_gap_usd
from test_optimizer_limits import check_all_limits

from models import load_case, simulate
from models.risk_measures import conditional_value_at_risk
from optimizer import optimize
from optimizer.formulation import cutting_plane
from optimizer.formulation.problem import build_problem
from optimizer.formulation.scenario_rows import solve_one_lp
from optimizer.formulation.tail_oracle import TailOracle
from optimizer.solve import solve_stage


@pytest.mark.parametrize(("seed", "importance"), [(1, False), (2, True), (3, False), (4, True)])
def test_cutting_plane_reaches_the_lp_optimum_on_random_cases(seed, importance):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 400, seed, importance=importance)
    lp = optimize(case, scen, method="lp", gap_tolerance=0.0)
    cuts = optimize(case, scen, method="cutting_plane", gap_tolerance=0.0)
    assert cuts.method == "cutting_plane" and lp.method == "lp"
    assert cuts.objective_weighted_gap_usd == pytest.approx(lp.objective_weighted_gap_usd, rel=1e-6)
    assert cuts.objective_weighted_gap_usd == pytest.approx(
        reference_weighted_gap_usd(case, scen), rel=1e-6
    )
    check_all_limits(case, scen, cuts)


@pytest.fixture(scope="module")
def default_pair():
    case = load_case()
    scen = simulate(case, 1_000, seed=21)
    return (
        case,
        scen,
        optimize(case, scen, method="lp"),
        optimize(case, scen, method="cutting_plane"),
    )


def test_default_case_same_gap_and_limits_hold(default_pair):
    case, scen, lp, cuts = default_pair
    assert cuts.objective_weighted_gap_usd == pytest.approx(lp.objective_weighted_gap_usd, rel=1e-6)
    check_all_limits(case, scen, cuts)
    assert cuts.timings_s["stage1_iterations"] >= 2


def _gap_with_budget(case, scen, source_id: str, delta_usd: float) -> float:
    sources = [
        s.model_copy(update={"amount_usd": s.amount_usd + delta_usd}) if s.id == source_id else s
        for s in case.sources
    ]
    changed = case.model_copy(update={"sources": sources})
    return optimize(changed, scen, method="lp").objective_weighted_gap_usd


def test_default_case_shadow_prices_agree_within_2_percent(default_pair):
    """Equal within 2%, or where the value function has a kink (the budget binds at a vertex
    where more money is worth less than the last dollar was), both prices lie between its
    one-sided derivatives, measured by re-solving with US$10,000 less and more."""
    case, scen, lp, cuts = default_pair
    key = ["family", "subject"]
    # Programme-level limits; per-cell rows (uptake, cover) have degenerate, non-unique duals.
    families = ["budget", "cvar_limit", "fund_depletion", "fund_capital_cap", "return_hurdle"]
    a = lp.binding[lp.binding["family"].isin(families)].set_index(key)["shadow_price"]
    b = cuts.binding.set_index(key)["shadow_price"]
    big = a[a > 1e-3]
    assert len(big) >= 3
    kinks = 0
    for idx, price in big.items():
        mine = b.get(idx, 0.0)
        if mine == pytest.approx(price, rel=0.02):
            continue
        family, source = idx
        assert family == "budget", (idx, price, mine)
        base, step = lp.objective_weighted_gap_usd, 1e4
        left = (_gap_with_budget(case, scen, source, -step) - base) / step
        right = (base - _gap_with_budget(case, scen, source, step)) / step
        assert right < left - 1e-3, (idx, "no kink", left, right)
        for p in (price, mine):
            assert right - 1e-3 <= p <= left + 1e-3, (idx, p, left, right)
        kinks += 1
    assert kinks <= len(big) // 3  # most prices are unique and agree


def test_oracle_cut_value_equals_the_exact_tail_excess():
    """The cut at a point equals Σπ(L−t)+ there, and CVaR from it matches risk_measures."""
    case = load_case()
    scen = simulate(case, 3_000, seed=5, method="importance")
    prob = build_problem(case, scen, "cuts")
    oracle: TailOracle = prob.oracle
    rng = np.random.default_rng(0)
    expo = rng.uniform(0, 5, prob.expo.shape[0])
    losses = oracle.scenario_losses(expo)
    alphas = np.array([m.alpha for m in prob.cut_measures])
    for k, alpha in enumerate(alphas):
        exact = conditional_value_at_risk(losses[:, k], alpha, scen.probabilities).value
        var = np.quantile(losses[:, k], alpha)  # any t gives an upper bound; VaR gives CVaR
        t = np.full(len(alphas), var)
        cuts, _ = oracle.cuts(expo, t)
        cut = cuts[k]
        cols = prob.cut_measures[k].row_cols
        assert cut.coef @ expo[cols] - cut.tail_probability * var == pytest.approx(
            cut.excess, rel=1e-9, abs=1e-12
        )
        assert var + cut.excess / (1 - alpha) >= exact - 1e-9
    # at the weighted VaR, the bound is tight
    from models.risk_measures import value_at_risk

    k = 0
    var_k = value_at_risk(losses[:, k], alphas[k], scen.probabilities).value
    cuts, _ = oracle.cuts(expo, np.full(len(alphas), var_k))
    exact = conditional_value_at_risk(losses[:, k], alphas[k], scen.probabilities).value
    assert var_k + cuts[k].excess / (1 - alphas[k]) == pytest.approx(exact, rel=1e-9)


def test_unknown_method_is_refused():
    case = random_case(1)
    scen = synthetic_scenarios(case, 50, 1)
    with pytest.raises(ValueError, match="method must be"):
        optimize(case, scen, method="simplex")


def test_float32_losses_reach_the_float64_optimum_within_their_precision():
    """The oracle runs its pass in float32 when the matrix is float32 (half the bytes); the
    optimum moves by no more than float32 rounding of the losses (~1e-7) allows."""
    case = load_case()
    wide = simulate(case, 2_000, seed=11)
    narrow = simulate(case, 2_000, seed=11, dtype="float32")
    assert narrow.losses.dtype == np.float32
    a = optimize(case, wide, method="cutting_plane")
    b = optimize(case, narrow, method="cutting_plane")
    assert b.method == "cutting_plane" and not b.fallbacks
    assert b.objective_weighted_gap_usd == pytest.approx(a.objective_weighted_gap_usd, rel=1e-5)


def test_stage_two_starts_from_the_cuts_of_stage_one(default_pair):
    """Cuts are valid whatever the objective: stage 2 keeps stage 1's and needs few more."""
    _, _, _, cuts = default_pair
    t = cuts.timings_s
    assert t["stage2_cuts"] >= t["stage1_cuts"] > 0
    assert t["stage2_iterations"] < t["stage1_iterations"]


def _oracle_at_a_point(method: str):
    """The default case's tail oracle on 3,001 scenarios (seed 5) at a random exposure point:
    (scenarios, problem, oracle, point, scenario losses there, every measure's index)."""
    case = load_case()
    scen = simulate(case, 3_001, seed=5, method=method)
    prob = build_problem(case, scen, "cuts")
    oracle: TailOracle = prob.oracle
    expo = np.random.default_rng(3).uniform(0, 5, prob.expo.shape[0])
    losses = oracle.scenario_losses(expo)
    return scen, prob, oracle, expo, losses, np.arange(losses.shape[1])


def test_block_cuts_add_up_to_the_aggregated_cut():
    """Split over 7 scenario blocks, the cuts of a threshold sum to its aggregated cut, and
    each block's cut is its block's exact tail excess at the point (weighted scenarios)."""
    from optimizer.formulation.cuts import group_bounds

    scen, prob, oracle, expo, losses, k_all = _oracle_at_a_point("importance")
    thresholds = np.quantile(losses, 0.9, axis=0)
    whole, _ = oracle.cuts(expo, thresholds, k_all, losses)
    split, _ = oracle.cuts(expo, thresholds, k_all, losses, groups=7)
    bounds = group_bounds(scen.n_scenarios, 7)
    assert {c.group for c in split} <= set(range(7)) and len(split) > len(whole)
    for k, agg in zip(k_all, whole, strict=True):
        mine = [c for c in split if c.measure == k]
        np.testing.assert_allclose(sum(c.coef for c in mine), agg.coef, rtol=1e-9, atol=1e-15)
        assert sum(c.tail_probability for c in mine) == pytest.approx(agg.tail_probability)
        assert sum(c.excess for c in mine) == pytest.approx(agg.excess, rel=1e-9)
        for c in mine:
            rows = slice(bounds[c.group], bounds[c.group + 1])
            exact = scen.probabilities[rows] @ np.maximum(losses[rows, k] - thresholds[k], 0)
            assert c.excess == pytest.approx(exact, rel=1e-9)
            cols = prob.cut_measures[k].row_cols
            value = c.coef @ expo[cols] - c.tail_probability * thresholds[k]
            assert value == pytest.approx(exact, rel=1e-9)


def test_a_shortfall_below_the_blocks_tolerance_gets_one_summed_row():
    """Under ``G·tol`` of η no block row bites, so the measure gets its block tangents summed
    into one row on η itself (value: the whole tail excess at the point); a block's second
    (Kelley) cut is not summed twice, and a measure short by more gets none."""
    from optimizer.formulation.cutting_plane import FEASIBILITY_TOL, _summed_cuts

    _, _, oracle, expo, losses, k_all = _oracle_at_a_point("mc")
    var = np.quantile(losses, 0.99, axis=0)
    whole, _ = oracle.cuts(expo, var, k_all, losses)
    tangents, _ = oracle.cuts(expo, var, k_all, losses, groups=8)
    kelley, _ = oracle.cuts(expo, var[:1] * 0.5, k_all[:1], losses, groups=8)
    shortfall = np.full(k_all.size, 100 * FEASIBILITY_TOL)
    shortfall[0] = shortfall[2] = 0.5 * 8 * FEASIBILITY_TOL
    summed = _summed_cuts(tangents + kelley, k_all[:3], shortfall, groups=8)
    assert [c.measure for c in summed] == [0, 2] and {c.group for c in summed} == {-1}
    for cut in summed:
        agg = whole[cut.measure]
        np.testing.assert_allclose(cut.coef, agg.coef, rtol=1e-9, atol=1e-15)
        assert cut.tail_probability == pytest.approx(agg.tail_probability)
        assert cut.excess == pytest.approx(agg.excess, rel=1e-9)
    assert _summed_cuts(tangents, k_all, shortfall, groups=1) == []


@pytest.mark.slow
def test_a_limit_met_within_the_blocks_tolerance_converges():
    """The default run's private-money x1.2 tornado point (held limits, 10^5 scenarios, seed
    7) once ran 400 iterations with a limit met to US$0.32 too much; it converges now, and every
    CVaR, recomputed from its scenario losses, is within its limit."""
    from optimizer.analysis.confidence import hold_limits
    from optimizer.analysis.sensitivity_analysis import perturbed_case
    from optimizer.formulation.blas_threads import one_blas_thread

    case = load_case()
    scen = simulate(case, 100_000, seed=7, dtype="float32")
    with one_blas_thread():
        held = hold_limits(case, scen)
        moved, _ = perturbed_case(held.case, "amount_private", 1.2)
        moved_scen = simulate(moved, 100_000, seed=7, dtype="float32")
        res = optimize(moved, moved_scen)
    assert res.method == "cutting_plane"
    assert res.timings_s["stage2_iterations"] < 100
    limited = res.sources[res.sources["cvar_limit_usd"].notna()]
    assert len(limited) >= 4
    for row in limited.itertuples():
        assert row.cvar_usd <= row.cvar_limit_usd * (1 + 1e-6) + 1.0, row.source  # US$1


def test_block_cuts_reach_the_same_optimum_in_fewer_iterations(monkeypatch):
    """One aggregated cut per measure (Kelley) and 16 blocks per measure end at the same
    optimum; the blocks need far fewer passes over the scenarios."""
    import optimizer.formulation.problem_cvar as cvar_module  # where the cut mode reads its block count

    case = load_case()
    scen = simulate(case, 10_000, seed=7, dtype="float32")
    runs = {}
    for groups in (1, 16):
        monkeypatch.setattr(cvar_module, "cut_groups", lambda n, g=groups: g)
        runs[groups] = optimize(case, scen, method="cutting_plane")
    one, many = runs[1], runs[16]
    assert many.objective_weighted_gap_usd == pytest.approx(
        one.objective_weighted_gap_usd, rel=1e-6
    )
    assert many.timings_s["stage1_iterations"] * 3 < one.timings_s["stage1_iterations"]
    check_all_limits(case, scen, many)


def test_block_count_grows_with_the_scenarios_within_its_bounds():
    from optimizer.formulation.cutting_plane import MAX_GROUPS, cut_groups

    assert [cut_groups(n) for n in (1, 7, 300, 10_000, 100_000, 1_000_000)] == [
        1, 7, 16, 16, 32, 64,
    ]  # fmt: skip
    assert cut_groups(50_000_000) == MAX_GROUPS


class _WarmStartFails:
    """A HiGHS model whose runs numbered in ``failing`` end without an answer (as a warm
    start that stalls does); every other call goes to the real model."""

    def __init__(self, highs, failing: set[int]):
        self._highs, self._failing, self.runs = highs, failing, 0

    def run(self):
        import highspy

        self.runs += 1
        if self.runs in self._failing:
            return highspy.HighsStatus.kError
        return self._highs.run()

    def __getattr__(self, name):
        return getattr(self._highs, name)


def _fail_runs(monkeypatch, failing: set[int]) -> None:
    """Every cut master loaded from now on fails the HiGHS runs numbered in ``failing``."""
    original = cutting_plane.CutMaster._load

    def load(self, *args):
        original(self, *args)
        self.highs = _WarmStartFails(self.highs, failing)

    monkeypatch.setattr(cutting_plane.CutMaster, "_load", load)


def test_a_master_solve_without_answer_is_rerun_cold_once(default_pair, monkeypatch):
    """The third and sixth HiGHS runs fail from their warm start; each is re-run from scratch
    (runs 4 and 7), counted once, and the loop goes on to the same optimum with every limit
    held."""
    case, scen, _, plain = default_pair
    _fail_runs(monkeypatch, {3, 6})
    res = optimize(case, scen, method="cutting_plane")
    assert res.method == "cutting_plane" and not res.fallbacks
    t = res.timings_s
    assert t["stage1_cold_restarts"] + t["stage2_cold_restarts"] == 2
    assert res.objective_weighted_gap_usd == pytest.approx(
        plain.objective_weighted_gap_usd, rel=1e-6
    )
    check_all_limits(case, scen, res)


def test_a_master_that_fails_cold_too_is_solved_scaled(monkeypatch):
    """A run that fails again from scratch gets one more run with HiGHS's own scaling, which
    answers: the same optimum, no fallback."""
    case = random_case(1)
    scen = synthetic_scenarios(case, 300, 1)
    plain = optimize(case, scen, method="cutting_plane")
    _fail_runs(monkeypatch, {1, 2})
    res = optimize(case, scen, method="cutting_plane")
    assert res.method == "cutting_plane" and not res.fallbacks
    assert res.objective_weighted_gap_usd == pytest.approx(
        plain.objective_weighted_gap_usd, rel=1e-6
    )
    check_all_limits(case, scen, res)


def test_a_master_that_fails_scaled_too_is_reported(monkeypatch):
    """A run that fails cold and scaled is not retried again: the master reports a solver
    error (and ``optimize`` falls back to the one-LP formulation, saying so)."""
    case = random_case(1)
    scen = synthetic_scenarios(case, 300, 1)
    _fail_runs(monkeypatch, {1, 2, 3})
    res = optimize(case, scen, method="cutting_plane")
    assert res.method == "lp"
    assert any("solver_error" in f for f in res.fallbacks)


def test_a_stage_2_the_master_cannot_solve_keeps_stage_1s_exact_optimum(monkeypatch):
    """Stage 2 only breaks ties among allocations of the optimal gap: when its master has no
    answer, the allocation is stage 1's optimum (every limit held, the same weighted gap),
    with a warning, not a one-LP re-solve of both stages."""
    import optimizer.solve as solve_module
    from optimizer.errors import SolverFailure

    case = random_case(2)
    scen = synthetic_scenarios(case, 300, 2)
    plain = optimize(case, scen, method="cutting_plane")
    original = solve_module.solve_stage

    def failing(prob, stage, *args, **kwargs):
        if stage == 2:
            raise SolverFailure("HIGHS", "solver_error", 2, "the master has no usable answer")
        return original(prob, stage, *args, **kwargs)

    monkeypatch.setattr(solve_module, "solve_stage", failing)
    res = optimize(case, scen, method="cutting_plane")
    assert res.method == "cutting_plane" and not res.fallbacks
    assert any(w.startswith("stage 2 (least loss and cost") for w in res.warnings)
    assert res.objective_weighted_gap_usd == plain.objective_weighted_gap_usd
    # stage 2 may give up the gap tolerance for less loss; stage 1's point does not
    assert res.weighted_gap_usd <= plain.weighted_gap_usd + 1.0
    assert res.weighted_gap_usd == pytest.approx(res.objective_weighted_gap_usd, rel=1e-6)
    check_all_limits(case, scen, res)
    # the one LP has no such shortcut: its own fallback is the other solver
    with pytest.raises(SolverFailure):
        optimize(case, scen, method="lp")


@pytest.mark.parametrize(("seed", "importance"), [(1, False), (2, True)])
def test_one_lp_built_in_highs_equals_cvxpys_one_lp_and_the_cutting_plane(seed, importance):
    """The benchmark's reference (the scenario rows appended to the cut master) is the same
    LP as ``method="lp"``'s cvxpy model: same stage-1 optimum, and so the cutting plane's."""
    case = random_case(seed)
    scen = synthetic_scenarios(case, 400, seed, importance=importance)
    direct = build_problem(case, scen, "cuts")
    status, _ = solve_one_lp(direct)
    assert status == "optimal"
    n_rows = direct.cut_master.highs.getNumRow()
    assert n_rows > len(direct.cut_master.measures) * 400  # a row per scenario and measure
    cvx = build_problem(case, scen, "lp")
    solve_stage(cvx, 1, "HIGHS", None)
    cuts = build_problem(case, scen, "cuts")
    solve_stage(cuts, 1, "HIGHS", None)
    assert direct.problem.value == pytest.approx(cvx.problem.value, rel=1e-7)
    assert cuts.problem.value == pytest.approx(direct.problem.value, rel=1e-6)


def test_one_lp_needs_a_fresh_cut_problem():
    case = random_case(1)
    scen = synthetic_scenarios(case, 50, 1)
    with pytest.raises(ValueError, match="cvar_method='cuts'"):
        solve_one_lp(build_problem(case, scen, "lp"))
