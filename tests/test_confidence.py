"""Limits that hold out of sample at a confidence level (optimizer.analysis.confidence).

The fast tests pin the mechanics on one small case (margins are z standard errors of the
returned allocation, the tables keep the case's own limits, the cost is the gap given up, the
margins survive result.json); the slow one measures what the option promises: over many seeds,
how often a binding limit's true value (a large independent scenario set) exceeds the limit.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from joblib import Parallel, delayed
from optimizer_cases import modified, one_cell_case, random_case, synthetic_scenarios
from pydantic import ValidationError

from models import load_case, simulate
from models.risk_measures import conditional_value_at_risk
from models.schema import Policy
from optimizer import optimize
from optimizer.analysis.confidence import (
    FREE_SOLVES,
    STABLE_SE,
    VALIDATION_SEED_OFFSET,
    ConfidenceInfeasible,
    held_case,
    hold_limits,
    optimize_with_confidence,
    resolve_confidence,
)
from optimizer.analysis.evaluate import evaluate
from optimizer.analysis.margins import depletion_level, limit_rows, margin_targets
from optimizer.errors import InfeasibleCase
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


def test_validation_identical_to_the_scenarios_gives_the_z_se_margins(solved):
    case, scen, _, res = solved
    same = hold_limits(case, scen, 0.95, validation=scen).allocation
    assert same.allocation.equals(res.allocation)
    assert same.objective_weighted_gap_usd == res.objective_weighted_gap_usd
    old, new = res.confidence.margins, same.confidence.margins
    cols = [c for c in old.columns if not c.startswith("validation_")]
    assert new[cols].equals(old[cols]) and old["validation_value_usd"].isna().all()
    assert (new["validation_value_usd"] == new["value_usd"]).all()
    assert (new["validation_std_error_usd"] == new["std_error_usd"]).all()
    assert same.confidence.validation_seed == scen.seed and res.confidence.validation_seed is None
    assert same.confidence.validation_n_scenarios == scen.n_scenarios


def _worse(scen, factor=1.1):
    """The same scenarios with every loss ``factor`` times larger: on one cell with no fund,
    every US$ risk figure and its SE scale by ``factor`` exactly."""
    return dataclasses.replace(scen, losses=scen.losses * factor, seed=scen.seed + 1)


def test_a_validation_that_measures_worse_widens_the_margin_by_the_difference():
    case = one_cell_case(10e6, 5e6, cvar_alpha=0.95, cvar_limit_usd=3e5)
    scen = synthetic_scenarios(case, 2_000, 3)
    worse = _worse(scen)
    plain = optimize(case, scen)
    ev = evaluate(case, plain, scen)
    (cvar,) = [r for r in limit_rows(ev).itertuples() if r.family == "cvar_limit"]
    want = Z95 * 1.1 * cvar.std_error + 0.1 * cvar.value  # z SE_v + (value_v - value)
    assert margin_targets(ev, Z95, evaluate(case, plain, worse))[
        ("cvar_limit", "S")
    ] == pytest.approx(want, rel=1e-9)
    assert margin_targets(ev, Z95)[("cvar_limit", "S")] == pytest.approx(Z95 * cvar.std_error)
    # the first margined solve holds that margin; validated margins only rise after it, so
    # the loop stops with the validation's upper bound within the limit (5.7 in-sample SEs
    # of margin here, the fixed point at the returned allocation 4.8, 1.7 without validation)
    held = hold_limits(case, scen, 0.95, validation=worse).allocation.confidence
    row = held.margins.set_index("family").loc["cvar_limit"]
    fixed = Z95 * row.validation_std_error_usd + row.validation_value_usd - row.value_usd
    assert held.converged and row.binding and row.holds
    assert row.margin_usd == pytest.approx(want, abs=STABLE_SE * row.std_error_usd)
    assert row.margin_usd >= fixed - STABLE_SE * row.std_error_usd
    assert row.upper_bound_usd <= row.limit_usd + STABLE_SE * row.std_error_usd
    plain_margin = hold_limits(case, scen, 0.95).allocation.confidence.margins.margin_usd[0]
    assert row.margin_usd > 2 * plain_margin


def test_a_validation_that_measures_better_takes_no_negative_margin():
    case = one_cell_case(10e6, 5e6, cvar_alpha=0.95, cvar_limit_usd=3e5)
    scen = synthetic_scenarios(case, 2_000, 3)
    better = _worse(scen, 0.5)  # half the losses: z SE_v is far inside the difference
    res = optimize_with_confidence(case, scen, 0.95, validation=better)
    assert res.confidence.solves == 0 and (res.confidence.margins["margin_usd"] == 0).all()
    assert res.allocation.equals(optimize(case, scen).allocation)


def test_a_validation_of_another_case_is_refused():
    case = one_cell_case(10e6, 5e6, cvar_alpha=0.95, cvar_limit_usd=3e5)
    other = random_case(5)
    with pytest.raises(ValueError, match="validation has 8 cells and scenarios 1"):
        hold_limits(case, synthetic_scenarios(case, 100, 1),
                    validation=synthetic_scenarios(other, 100, 1))  # fmt: skip


def test_validation_margins_survive_result_json_and_older_files_read_as_not_measured(solved):
    case, scen, _, _ = solved
    res = optimize_with_confidence(case, scen, 0.95, validation=_worse(scen, 1.05))
    back = Allocation.from_json(res.to_json())
    assert back == res and back.confidence.validation_seed == scen.seed + 1
    raw = json.loads(res.to_json())
    conf, table = raw["confidence"], raw["confidence"]["margins"]
    del conf["validation_seed"], conf["validation_n_scenarios"]
    keep = [i for i, c in enumerate(table["columns"]) if not c.startswith("validation_")]
    for key in ("columns", "dtypes"):
        table[key] = [table[key][i] for i in keep]
    table["data"] = [[row[i] for i in keep] for row in table["data"]]
    old = Allocation.from_json(json.dumps(raw)).confidence
    assert old.validation_seed is None and old.margins["validation_value_usd"].isna().all()
    assert list(old.margins.columns) == list(res.confidence.margins.columns)


SLOW_SEEDS = 60
"""Seeds of the breach-rate test: at 5 % a binomial(60, 0.05) count exceeds 6 with
probability 0.98 %, so at most 6 breaches is what a limit held at 95 % gives 99 % of the time."""


def _breaches_at_the_true_value(seeds: range) -> list[tuple[int, int, int]]:
    """For each seed, (binding limits, true breaches without margins, with validation margins).

    Breach: the allocation's figure on a 400,000-scenario independent set (its SE a tenth of
    the optimisation's) exceeds the limit; the limits counted are those the plain optimum sits
    on in sample.
    """
    case = modified(random_case(5), sources={"SEN": {"cvar_alpha": 0.95}})
    truth = synthetic_scenarios(case, 400_000, 4242)
    out = []
    for seed in seeds:
        scen = synthetic_scenarios(case, 4_000, seed)
        validation = synthetic_scenarios(case, 4_000, seed + VALIDATION_SEED_OFFSET)
        off = optimize_with_confidence(case, scen, 0)
        on = optimize_with_confidence(case, scen, 0.95, validation=validation)
        at_limit = {
            (r.family, r.owner)
            for r in limit_rows(evaluate(case, off, scen)).itertuples()
            if r.excess > -1e-6 * abs(r.limit) - 1
        }
        counts = [len(at_limit)]
        for res in (off, on):
            rows = limit_rows(evaluate(case, res, truth)).itertuples()
            counts.append(sum(bool(r.breached) for r in rows if (r.family, r.owner) in at_limit))
        out.append(tuple(counts))
    return out


@pytest.mark.slow
def test_binding_limits_breach_their_true_value_rarely_with_the_option_and_often_without():
    """Over 60 seeds, the binding limit of a small case against its true value.

    That set stands for the true risk, which is what a confidence statement is about; an
    independent set of the optimisation's own size would add its own noise (a breach there is a
    coin flip even for an allocation exactly on its true limit). SEN's CVaR is taken at 95 % so
    the tail holds 200 of the 4,000 scenarios. The margins are validated on an independent
    4,000-scenario set per seed (``seed + VALIDATION_SEED_OFFSET``). The seeds run in two
    processes (the counts do not depend on it): about 100 s on a quiet 2-core machine, 190 s
    on a loaded one.
    """
    halves = (range(0, SLOW_SEEDS // 2), range(SLOW_SEEDS // 2, SLOW_SEEDS))
    rows = [
        row
        for part in Parallel(n_jobs=2)(delayed(_breaches_at_the_true_value)(h) for h in halves)
        for row in part
    ]
    n, off_breaches, on_breaches = (sum(col) for col in zip(*rows, strict=True))
    assert n == SLOW_SEEDS  # one binding limit per seed: SEN's CVaR95
    # measured 46 of 60 without: the plain optimum sits on its limits, and the optimiser's
    # curse puts the true risk about 0.5 SE above the in-sample figure
    assert off_breaches / n >= 0.5
    # measured 3 of 60 with validation (5 %, the nominal level; 10 of 200 over seeds 0-199);
    # margins of z in-sample SEs alone (no validation) measure 9 of 60 here (29 of 200)
    assert on_breaches <= 6
