"""``evaluate``: a fixed allocation re-priced in-sample, out-of-sample, under stress.

In-sample, the evaluation must give back the allocation's own risk tables to the last bit;
on another seed it must differ by Monte Carlo noise only; under the roya-2013 stress coffee
losses must rise and CVaR limits be breached; scenario weights must be honoured.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from optimizer_cases import modified, one_cell_case, random_case, scenario_set, synthetic_scenarios

from models import DEFAULT_CASE, load_case, simulate
from models.schema import Case
from optimizer import ScenarioMismatch, optimize
from optimizer.analysis.evaluate import evaluate
from optimizer.analysis.limit_checks import SIGNIFICANT_SE

SOURCE_MEASURES = (
    "committed_usd",
    "lending_usd",
    "capital_usd",
    "expected_loss_usd",
    "expected_loss_se_usd",
    "var_usd",
    "cvar_usd",
    "cvar_se_usd",
    "cvar_limit_usd",
)
FUND_MEASURES = (
    "capital_usd",
    "guaranteed_usd",
    "expected_claims_usd",
    "claims_cvar_usd",
    "depletion_probability",
    "depletion_se",
)


@pytest.fixture(scope="module")
def small():
    """random_case(3) optimised on 2,000 importance-sampled (unequally weighted) scenarios."""
    case = random_case(3)
    scen = synthetic_scenarios(case, 2000, seed=1, importance=True)
    assert np.ptp(scen.probabilities) > 0  # the weights are really unequal
    return case, scen, optimize(case, scen)


@pytest.fixture(scope="module")
def peru():
    """The shipped default case optimised on 2,000 simulated scenarios."""
    case = load_case()
    scen = simulate(case, 2000, seed=11)
    return case, scen, optimize(case, scen)


def test_in_sample_reproduces_the_allocation_tables(small):
    case, scen, res = small
    ev = evaluate(case, res, scen)
    for col in SOURCE_MEASURES:
        np.testing.assert_allclose(
            ev.sources[col], res.sources[col], rtol=1e-9, atol=0, err_msg=col
        )
    for col in FUND_MEASURES:
        np.testing.assert_allclose(ev.funds[col], res.funds[col], rtol=1e-9, atol=1e-6, err_msg=col)
    assert ev.sources["cvar_usd"].gt(0).sum() >= 3  # not a vacuous comparison of zeros
    assert ev.breaches.empty, ev.breaches  # the optimum meets every limit it was optimised for
    assert (ev.n_scenarios, ev.seed, ev.method) == (2000, scen.seed, scen.method)
    assert ev.effective_sample_size == pytest.approx(scen.effective_sample_size)


def test_out_of_sample_differs_within_a_few_standard_errors(small):
    case, _, res = small
    fresh = synthetic_scenarios(case, 4000, seed=2)
    ev = evaluate(case, res, fresh)
    assert (ev.n_scenarios, ev.seed) == (4000, fresh.seed)
    cmp = ev.compare(res)
    cvar = cmp[(cmp["measure"] == "cvar_usd") & (cmp["reference"] > 0)]
    assert len(cvar) == 4
    assert (cvar["difference"].abs() > 0).all()  # another sample, other numbers
    assert (cvar["difference_in_se"].abs() < 4).all(), cvar
    rel = (cvar["difference"] / cvar["reference"]).abs()
    assert (rel < 0.25).all()
    # The combined error is the two sets' errors in quadrature.
    np.testing.assert_allclose(
        cvar["difference_se"], np.hypot(cvar["reference_se"], cvar["evaluated_se"])
    )


def test_scenario_probabilities_are_honoured(small):
    """Splitting every scenario into two copies of weight 0.3 p and 0.7 p is the same law:
    every estimate is unchanged, and the delta-method errors, which treat copies as
    independent draws, shrink by sqrt(0.3² + 0.7²)."""
    case, scen, res = small
    p = scen.probabilities
    split = scenario_set(
        case,
        np.repeat(scen.losses, 2, axis=0),
        np.column_stack([0.3 * p, 0.7 * p]).ravel(),
        np.repeat(scen.events, 2, axis=0),
    )
    base, twin = evaluate(case, res, scen), evaluate(case, res, split)
    for col in ("expected_loss_usd", "var_usd", "cvar_usd", "committed_usd"):
        np.testing.assert_allclose(twin.sources[col], base.sources[col], rtol=1e-12, err_msg=col)
    for col in ("expected_claims_usd", "claims_cvar_usd", "depletion_probability"):
        np.testing.assert_allclose(twin.funds[col], base.funds[col], rtol=1e-12, atol=1e-9)
    shrink = np.sqrt(0.3**2 + 0.7**2)
    for col in ("expected_loss_se_usd", "cvar_se_usd"):
        np.testing.assert_allclose(twin.sources[col], shrink * base.sources[col], rtol=1e-9)


def test_equal_weights_on_tilted_draws_are_not_the_weighted_answer(small):
    """Dropping the importance weights changes the answer: they are used, not ignored."""
    case, scen, res = small
    flat = scenario_set(case, scen.losses, None, scen.events)
    weighted, unweighted = evaluate(case, res, scen), evaluate(case, res, flat)
    # The draws were tilted toward defaults: read with equal weights they overstate losses.
    ratio = unweighted.sources["expected_loss_usd"] / weighted.sources["expected_loss_usd"]
    assert (ratio[weighted.sources["lending_usd"] > 0] > 1.3).all()


def test_roya_stress_raises_coffee_losses_and_breaches_cvar_limits(peru):
    case, scen, res = peru
    roya = load_case(DEFAULT_CASE.parent / "stress" / "roya_2013.yaml")
    assert roya.stress is not None and roya.stress.id == "roya_2013"
    stressed = simulate(roya, 2000, seed=12)
    base, ev = evaluate(case, res, scen), evaluate(roya, res, stressed)
    assert base.breaches.empty

    coffee_base = base.chains.set_index("value_chain").loc["coffee"]
    coffee = ev.chains.set_index("value_chain").loc["coffee"]
    assert coffee["lending_usd"] == pytest.approx(coffee_base["lending_usd"])
    assert coffee["lending_usd"] > 1e8
    assert coffee["el_rate"] > 2 * coffee_base["el_rate"]  # rust strikes with certainty
    el, el0 = ev.sources["expected_loss_usd"], base.sources["expected_loss_usd"]
    assert el.sum() > 1.3 * el0.sum()
    # No funder gains beyond noise (those without coffee lending may move either way).
    noise = np.hypot(ev.sources["expected_loss_se_usd"], base.sources["expected_loss_se_usd"])
    assert (el - el0 >= -3 * noise).all()

    cvar = ev.breaches[ev.breaches["what"].str.startswith("cvar")]
    assert len(cvar) >= 2
    for row in cvar.itertuples():
        limit = ev.sources.set_index("source").loc[row.owner, "cvar_limit_usd"]
        assert row.limit == limit and row.value > limit and row.excess == row.value - limit
    # Significance is the 2-standard-error rule, and the stress is well beyond noise.
    assert (
        ev.breaches["significant"]
        == (ev.breaches["excess"] > SIGNIFICANT_SE * ev.breaches["std_error"])
    ).all()
    assert cvar["significant"].any()
    assert ev.breaches["excess_in_se"].is_monotonic_decreasing


def test_a_cut_budget_is_a_deterministic_breach(small):
    """A stress that halves a funder's money (concessional shortfall) breaches its budget
    outright: no Monte Carlo error, so always significant."""
    case, scen, res = small
    committed = res.sources.set_index("source").loc["CLIM", "committed_usd"]
    assert committed > 1e6
    short = modified(case, sources={"CLIM": {"amount_usd": committed / 2}})
    ev = evaluate(short, res, scen)
    row = ev.breaches[(ev.breaches["owner"] == "CLIM") & (ev.breaches["what"] == "budget")]
    assert len(row) == 1
    assert row["excess"].iloc[0] == pytest.approx(committed / 2)
    assert row["std_error"].iloc[0] == 0 and row["significant"].iloc[0]


def test_guarantee_non_uptake_breaches_the_cover_assumed(small):
    """Lenders taking up 10 % of cover (the guarantee_non_uptake stress) cannot carry the
    cover the allocation assumed: the excess over 10 % of each covered loan is the breach."""
    case, scen, res = small
    raw = case.model_dump()
    for fund in raw["funds"]:
        fund["uptake_share"] = 0.1
    ev = evaluate(Case.model_validate(raw), res, scen)
    rows = ev.breaches[ev.breaches["what"] == "uptake"].set_index("owner")
    alloc = res.allocation
    for fund in ("GP", "GF"):
        cover = alloc[f"covered_usd_{fund}"]
        expected = (cover - np.minimum(cover, 0.1 * alloc["amount_usd"])).sum()
        assert rows.loc[fund, "excess"] == pytest.approx(expected, rel=1e-9)
        assert rows.loc[fund, "significant"]


def test_a_scenario_set_of_another_case_raises(small):
    case, _, res = small
    other = synthetic_scenarios(one_cell_case(1e6, 1e6), 100, seed=1)
    with pytest.raises(ScenarioMismatch, match="re-simulate"):
        evaluate(case, res, other)


def test_a_cell_missing_from_the_new_set_is_named(small):
    case, _, res = small
    lent = res.allocation.iloc[0]
    raw = case.model_dump()
    product = next(p for p in raw["products"] if p["id"] == lent["product"])
    product["excluded_segments"] = [lent["segment"]]
    narrower = Case.model_validate(raw)  # a stress that changed eligibility
    scen = synthetic_scenarios(narrower, 200, seed=3)
    label = f"{lent['product']}|{lent['segment']}"
    with pytest.raises(ScenarioMismatch, match=label.replace("|", r"\|")):
        evaluate(narrower, res, scen)


def test_an_allocation_of_other_sources_raises(small):
    case, scen, res = small
    table = res.allocation.replace({"source": {"SEN": "GHOST"}})
    ghost = dataclasses.replace(res, allocation=table)
    with pytest.raises(ValueError, match="GHOST"):
        evaluate(case, ghost, scen)
