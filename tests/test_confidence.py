"""Limits that hold out of sample at a confidence level (optimizer.confidence).

The fast tests pin the mechanics on one small case (margins are z standard errors of the
returned allocation, the tables keep the case's own limits, the cost is the gap given up, the
margins survive result.json); the slow one measures what the option promises: over many seeds,
how often a binding limit's true value (a large independent scenario set) exceeds the limit.
"""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import modified, one_cell_case, random_case, synthetic_scenarios
from pydantic import ValidationError

from models import load_case, simulate
from models.risk_measures import conditional_value_at_risk
from models.schema import Policy
from optimizer import optimize
from optimizer.confidence import (
    FREE_SOLVES,
    STABLE_SE,
    ConfidenceInfeasible,
    held_case,
    hold_limits,
    optimize_with_confidence,
    resolve_confidence,
)
from optimizer.errors import InfeasibleCase
from optimizer.evaluate import evaluate
from optimizer.margins import depletion_level, limit_rows
from optimizer.result import Allocation

Z95 = 1.6448536269514722


@pytest.fixture(scope="module")
def solved():
    """random_case(5), whose SEN CVaR99 limit binds, on 800 synthetic scenarios."""
    case = random_case(5)
    scen = synthetic_scenarios(case, 800, 1)
    return case, scen, optimize(case, scen), optimize_with_confidence(case, scen, 0.95)


def test_binding_limits_carry_z_standard_errors_and_hold_at_the_bound(solved):
    case, scen, _, res = solved
    conf = res.confidence
    assert conf.confidence == 0.95 and conf.z == pytest.approx(Z95)
    assert conf.converged and 1 <= conf.solves <= 3
    binding = conf.margins[conf.margins["binding"]]
    assert "SEN" in set(binding["owner"])  # the CVaR99 limit the plain optimum sits on
    # stable margins: within STABLE_SE standard errors of z SE at the returned allocation
    assert conf.solves <= FREE_SOLVES
    assert np.allclose(binding["margin_in_se"], Z95, atol=STABLE_SE)
    # recomputed independently: every random limit's 95 % upper bound is within the limit
    for r in limit_rows(evaluate(case, res, scen)).itertuples():
        sign = 1.0 if r.bound == "max" else -1.0
        bound = r.value + sign * Z95 * r.std_error
        assert sign * (bound - r.limit) <= STABLE_SE * r.std_error + 1e-6 * abs(r.limit) + 1
    assert conf.margins["holds"].all()


def test_the_tables_keep_the_case_own_limits_and_hash(solved):
    case, _, _, res = solved
    sen = res.sources.set_index("source").loc["SEN"]
    assert sen.cvar_limit_usd == case.finance_source("SEN").cvar_limit_usd
    # the margin shows as headroom against the real limit: about z SE of room
    assert sen.cvar_headroom_usd == pytest.approx(Z95 * sen.cvar_se_usd, rel=0.1)
    assert (res.funds["max_depletion_probability"] == [f.max_depletion_probability
                                                        for f in case.funds]).all()  # fmt: skip
    assert res.case_sha256 == case.content_sha256 and res.case_name == case.name


def test_the_cost_is_the_gap_given_up_against_the_plain_optimum(solved):
    _, _, plain, res = solved
    conf = res.confidence
    assert conf.unmargined_weighted_gap_usd == plain.objective_weighted_gap_usd
    assert conf.cost_weighted_gap_usd == pytest.approx(
        res.objective_weighted_gap_usd - plain.objective_weighted_gap_usd
    )
    assert conf.cost_gap_closed_usd == pytest.approx(plain.gap_closed_usd - res.gap_closed_usd)
    # tighter limits never close more gap; here the binding CVaR limit costs real money
    assert conf.cost_weighted_gap_usd > 1e5


def test_the_held_case_re_solves_to_the_margined_optimum(solved):
    case, scen, plain, res = solved
    held = held_case(case, scen, res)
    sen = held.finance_source("SEN").cvar_limit_usd
    assert sen < case.finance_source("SEN").cvar_limit_usd  # the margin written back
    again = optimize(held, scen)
    assert again.objective_weighted_gap_usd == pytest.approx(
        res.objective_weighted_gap_usd, rel=1e-6, abs=1.0
    )
    assert held_case(case, scen, plain) is case  # no margins: the case itself


def test_hold_limits_returns_the_case_its_optimum_solves_exactly():
    # the default case at 1,200 scenarios: the case rebuilt from the margins (held_case) is
    # 4 % off the headline there; the case the last solve held is the headline's
    case = load_case()
    scen = simulate(case, 1_200, seed=5)
    held = hold_limits(case, scen)
    assert held.allocation == optimize_with_confidence(case, scen)
    again = optimize(held.case, scen)
    assert again.objective_weighted_gap_usd == pytest.approx(
        held.allocation.objective_weighted_gap_usd, rel=1e-9
    )
    assert held.case != case  # margins were taken: the limits solved are tighter
    off = hold_limits(case, scen, 0)
    assert off.case is case and off.allocation.confidence is None


def test_confidence_zero_is_the_plain_optimum(solved):
    case, scen, plain, _ = solved
    off = optimize_with_confidence(case, scen, 0)
    assert off.confidence is None and off == plain


def test_limits_with_room_to_spare_are_not_re_solved():
    case = one_cell_case(10e6, 5e6, cvar_alpha=0.95, cvar_limit_usd=9e6)
    scen = synthetic_scenarios(case, 400, 2)
    res = optimize_with_confidence(case, scen, 0.95)
    assert res.confidence.solves == 0 and res.confidence.converged
    assert res.confidence.cost_weighted_gap_usd == 0.0
    assert (res.confidence.margins["margin_usd"] == 0).all() and res.confidence.margins[
        "holds"
    ].all()
    assert res.allocation.equals(optimize(case, scen).allocation)


def test_the_case_confidence_is_the_default():
    case = random_case(5)
    assert case.policy.confidence == 0.95 and resolve_confidence(case, None) == 0.95
    assert resolve_confidence(case.model_copy(update={"policy": Policy(confidence=0)}), None) == 0
    assert (
        resolve_confidence(case.model_copy(update={"policy": Policy(confidence=None)}), None) == 0
    )
    assert resolve_confidence(case, 0.9) == 0.9
    with pytest.raises(ValueError, match=r"confidence must be 0 \(off\) or between 0.5"):
        resolve_confidence(case, 1.5)


@pytest.mark.parametrize("bad", [1.0, 0.3, -0.1, 0.99999])
def test_a_bad_policy_confidence_is_refused_with_what_is_valid(bad):
    with pytest.raises(ValidationError, match="confidence must be 0 or null \\(off\\)"):
        Policy(confidence=bad)


def test_margins_survive_result_json(solved):
    res = solved[3]
    assert "limits held at 95% confidence: 1 binding" in res.summary()
    back = Allocation.from_json(res.to_json())
    assert back == res and back.confidence.margins.equals(res.confidence.margins)
    assert Allocation.from_json(solved[2].to_json()).confidence is None


def test_a_margined_case_that_does_not_solve_says_to_lower_the_confidence(solved):
    case, scen, plain, _ = solved

    def solve(c, s, **_):
        if c.finance_source("SEN").cvar_limit_usd != case.finance_source("SEN").cvar_limit_usd:
            raise InfeasibleCase(c.name, 1, "HIGHS")
        return plain

    with pytest.raises(ConfidenceInfeasible, match=r"lower policy\.confidence") as info:
        optimize_with_confidence(case, scen, 0.95, solve=solve)
    assert "SEN cvar99" in str(info.value) and isinstance(info.value, InfeasibleCase)


def test_a_depletion_margin_moves_epsilon_to_the_level_with_that_much_more_cvar():
    rng = np.random.default_rng(3)
    claims = rng.gamma(2.0, 1e5, size=4_000)
    p = np.full(claims.size, 1 / claims.size)
    base = conditional_value_at_risk(claims, 0.95, p).value
    eps = depletion_level(claims, 0.05, 50_000.0, p)
    assert eps < 0.05
    assert conditional_value_at_risk(claims, 1 - eps, p).value == pytest.approx(
        base + 5e4, rel=1e-6
    )
    # beyond the worst scenario: as tight as the scenarios can hold it
    assert depletion_level(claims, 0.05, 1e12, p) == pytest.approx(1 / claims.size)


@pytest.mark.slow
def test_binding_limits_breach_their_true_value_rarely_with_the_option_and_often_without():
    """Over 40 seeds, the binding limit of a small case against its true value.

    Breach: the allocation's figure on a 400,000-scenario independent set (its SE a tenth of
    the optimisation's) exceeds the limit. That set stands for the true risk, which is what a
    confidence statement is about; an independent set of the optimisation's own size would add
    its own noise (a breach there is a coin flip even for an allocation exactly on its true
    limit). SEN's CVaR is taken at 95 % so the tail holds 200 of the 4,000 scenarios. About
    80 s on a quiet 2-core machine.
    """
    case = modified(random_case(5), sources={"SEN": {"cvar_alpha": 0.95}})
    truth = synthetic_scenarios(case, 400_000, 4242)
    counts = {"off": [0, 0], "on": [0, 0]}
    for seed in range(40):
        scen = synthetic_scenarios(case, 4_000, seed)
        off = optimize_with_confidence(case, scen, 0)
        on = optimize_with_confidence(case, scen, 0.95)
        at_limit = {
            (r.family, r.owner)
            for r in limit_rows(evaluate(case, off, scen)).itertuples()
            if r.excess > -1e-6 * abs(r.limit) - 1
        }
        for name, res in (("off", off), ("on", on)):
            for r in limit_rows(evaluate(case, res, truth)).itertuples():
                if (r.family, r.owner) in at_limit:
                    counts[name][0] += 1
                    counts[name][1] += bool(r.breached)
    n, off_breaches = counts["off"]
    on_breaches = counts["on"][1]
    assert n >= 40 and counts["on"][0] == n
    # measured 30 of 40 without: the plain optimum sits on its limits, and the optimiser's
    # curse puts the true risk about 0.65 SE above the in-sample figure
    assert off_breaches / n >= 0.5
    # measured 6 of 40 with: the nominal 5 % plus that bias (z - 0.65 SE of margin left)
    assert on_breaches / n <= 0.2 and on_breaches <= off_breaches / 3
