"""Warm starts of the cutting plane: the same optimum from a head start, never a foreign cut."""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import modified, random_case, synthetic_scenarios
from optimizer_reference import reference_weighted_gap_usd
from test_optimizer_limits import check_all_limits

from models import load_case, simulate
from optimizer import optimize
from optimizer.formulation.problem import build_problem
from optimizer.formulation.warm_start import apply


@pytest.mark.parametrize(("seed", "importance"), [(1, False), (2, True), (4, True)])
def test_a_changed_case_from_the_base_cuts_reaches_its_own_lp_optimum(seed, importance):
    case = random_case(seed)
    scen = synthetic_scenarios(case, 600, seed, importance=importance)
    base = optimize(case, scen, method="cutting_plane", gap_tolerance=0.0)
    # a tighter CVaR limit: the base's cuts are still valid lower bounds
    limit = case.finance_source("SEN").cvar_limit_usd
    changed = modified(case, sources={"SEN": {"cvar_limit_usd": 0.7 * limit}})
    warm = optimize(changed, scen, method="cutting_plane", gap_tolerance=0.0, start=base.warm_start)
    lp = optimize(changed, scen, method="lp", gap_tolerance=0.0)
    assert warm.timings_s["stage1_start_cuts"] > 0
    # the change moves the optimum (by 9 %, 35 %, 6 % on these seeds): not the base's again
    assert warm.objective_weighted_gap_usd > 1.05 * base.objective_weighted_gap_usd
    assert warm.objective_weighted_gap_usd == pytest.approx(lp.objective_weighted_gap_usd, rel=1e-6)
    assert warm.objective_weighted_gap_usd == pytest.approx(
        reference_weighted_gap_usd(changed, scen), rel=1e-6
    )
    check_all_limits(changed, scen, warm)


def test_on_other_scenarios_the_cuts_are_made_on_them_not_taken_from_the_start():
    case = random_case(3)
    first = synthetic_scenarios(case, 500, 1)
    other = synthetic_scenarios(case, 500, 2)
    assert first.fingerprint != other.fingerprint
    base = optimize(case, first, method="cutting_plane")
    prob = build_problem(case, other, "cuts")
    assert apply(prob, base.warm_start) == "point"
    # every loaded cut is a lower bound of the measure's tail excess on THESE scenarios: at
    # the start point its value equals the blocks' true excess there (a tangent), no more
    losses = prob.oracle.scenario_losses(base.warm_start.point)
    factor = np.array([m.factor() for m in prob.cut_master.measures])
    var, excess = prob.oracle.var_and_excess(losses, 1.0 - 1.0 / factor)
    made = {}
    for k, _block, coef, tail in prob.cut_master.cut_rows:
        cols = prob.cut_master.measures[k].row_cols
        made[k] = made.get(k, 0.0) + coef @ base.warm_start.point[cols] - tail * var[k]
    for k, value in made.items():
        assert value == pytest.approx(excess[k], rel=1e-9, abs=1e-12)
    warm = optimize(case, other, method="cutting_plane", start=base.warm_start)
    cold = optimize(case, other, method="cutting_plane")
    assert warm.objective_weighted_gap_usd == pytest.approx(
        cold.objective_weighted_gap_usd, rel=1e-6
    )
    check_all_limits(case, other, warm)


def test_the_same_scenarios_take_the_cuts_and_the_one_lp_formulation_takes_nothing():
    case = random_case(5)
    scen = synthetic_scenarios(case, 500, 3)
    base = optimize(case, scen, method="cutting_plane")
    assert apply(build_problem(case, scen, "cuts"), base.warm_start) == "cuts"
    assert apply(build_problem(case, scen, "lp"), base.warm_start) == ""
    assert apply(build_problem(case, scen, "cuts"), None) == ""
    lp = optimize(case, scen, method="lp", start=base.warm_start)
    assert lp.warm_start is None and "stage1_start_cuts" not in lp.timings_s
    # a saved result has no warm start: it is not part of the result or its file
    back = type(base).from_json(base.to_json())
    assert back == base and back.warm_start is None


def test_on_the_default_case_a_replication_starts_nearer_and_ends_at_the_same_optimum():
    case = load_case()
    headline = optimize(case, simulate(case, 20_000, seed=7))
    other = simulate(case, 20_000, seed=8)
    cold = optimize(case, other)
    warm = optimize(case, other, start=headline.warm_start)
    assert warm.objective_weighted_gap_usd == pytest.approx(
        cold.objective_weighted_gap_usd, rel=1e-6
    )
    # measured 17 -> 16 stage-1 iterations here, 23 -> 16 at 100,000 scenarios
    assert warm.timings_s["stage1_iterations"] <= cold.timings_s["stage1_iterations"]
    assert warm.timings_s["stage1_start_cuts"] > 0


def test_the_stage_2_cuts_wait_in_the_pool_and_spare_the_next_stage_2_its_passes():
    case = load_case()
    scen = simulate(case, 20_000, seed=7)
    base = optimize(case, scen)
    warm = base.warm_start
    assert warm.point2 is not None and warm.point2.shape == warm.point.shape
    # stage 2 moved the exposures, and the cuts binding there are in the pool, not the rows
    assert not np.allclose(warm.point2, warm.point)
    assert warm.pool.pool and not {id(r) for r in warm.pool.pool} & {id(r) for r in warm.pool.rows}
    again = optimize(case, scen, start=warm)
    without = optimize(case, scen, start=type(warm)(type(warm.pool)(warm.pool.rows, (), None),
                                                  warm.fingerprint, warm.point))  # fmt: skip
    for res in (again, without):
        assert res.objective_weighted_gap_usd == pytest.approx(
            base.objective_weighted_gap_usd, rel=1e-6
        )
        assert res.gap_closed_usd == pytest.approx(base.gap_closed_usd, rel=1e-4)
    # measured at 100,000 importance-sampled scenarios: 13 passes -> 3, the solve 4.0 -> 1.7 s
    assert again.timings_s["stage2_iterations"] < without.timings_s["stage2_iterations"]
    # on other scenarios the pool holds cuts made on them at the stage-2 optimum
    prob = build_problem(case, simulate(case, 20_000, seed=8), "cuts")
    assert apply(prob, warm) == "point" and prob.cut_master.pool
