"""Who bears the loss: every dollar of credit loss lands on a lender or a capital provider.

A fund pays its claims out of its capital, junior layer first (pro rata within a layer); what it
cannot pay stays with the covered lenders, pro rata to their claims. Checked by hand on three
scenarios, then as conservation laws and limits on optimised random cases and the shipped case.
"""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import random_case, synthetic_scenarios

from models import load_case, simulate
from models.errors import InputError
from models.schema import Case
from optimizer import optimize
from optimizer.analysis.evaluate import evaluate
from optimizer.analysis.fixed import scenario_exposures
from optimizer.formulation.attribution import attribute_losses
from optimizer.formulation.claims import FundClaims


def layered(seed: int, layers: bool = True, **fund_changes) -> Case:
    """``random_case(seed)`` with PUB also capitalising the first-loss fund GF, senior to CLIM."""
    raw = random_case(seed).model_dump()
    for src in raw["sources"]:
        if src["id"] == "PUB":
            src["funds"] = ["GP", "GE", "GF"]
        if src["id"] == "CLIM":
            src.update(cvar_alpha=0.95, cvar_limit_share=0.6)
    for fund in raw["funds"]:
        if fund["id"] == "GF":
            fund["capital_layers"] = [["CLIM"], ["PUB"]] if layers else []
        fund.update(fund_changes.get(fund["id"], {}))
    return Case.model_validate(raw)


def _hand_arrays(case: Case):
    """Two cells; PRIV lends 10 in cell 0 fully covered by GF, SEN 20 in cell 1 half covered;
    CLIM has 1 and PUB 2 of GF's capital."""
    src = {s.id: i for i, s in enumerate(case.sources)}
    fund = {f.id: g for g, f in enumerate(case.funds)}
    n_src, n_fund = len(case.sources), len(case.funds)
    claims = [FundClaims(f.id, np.zeros(2), None, None) for f in case.funds]
    claims[fund["GF"]] = FundClaims("GF", np.array([1.0, 0.5]), None, None)
    lending = np.zeros((2, n_src))
    lending[0, src["PRIV"]], lending[1, src["SEN"]] = 10.0, 20.0
    covered = np.zeros((n_fund, 2, n_src))
    covered[fund["GF"], 0, src["PRIV"]], covered[fund["GF"], 1, src["SEN"]] = 10.0, 20.0
    capital = np.zeros((n_src, n_fund))
    capital[src["CLIM"], fund["GF"]], capital[src["PUB"], fund["GF"]] = 1.0, 2.0
    losses = np.array([[0.05, 0.05], [0.2, 0.1], [0.5, 0.5]])
    return src, fund, claims, losses, lending, covered, capital


def test_layers_and_a_fund_that_runs_dry_by_hand():
    case = layered(1)
    src, fund, claims, losses, lending, covered, capital = _hand_arrays(case)
    att = attribute_losses(case, claims, losses, lending, covered, capital)
    g = fund["GF"]
    # claims: PRIV 0.5, 2, 5; SEN 0.5·ℓ·20 = 0.5, 1, 5; capital 3
    np.testing.assert_allclose(att.claims[:, g], [1.0, 3.0, 10.0])
    np.testing.assert_allclose(att.unpaid[:, g], [0.0, 0.0, 7.0])
    # CLIM (junior, 1) first, then PUB (senior, 2)
    np.testing.assert_allclose(att.capital[:, src["CLIM"]], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(att.capital[:, src["PUB"]], [0.0, 2.0, 2.0])
    # the 7 unpaid go back half and half (claims 5 and 5)
    np.testing.assert_allclose(att.lending[:, src["PRIV"]], [0.0, 0.0, 3.5])
    np.testing.assert_allclose(att.lending[:, src["SEN"]], [0.5, 1.0, 8.5])
    gross = losses @ lending.sum(axis=1)
    np.testing.assert_allclose(att.total.sum(axis=1), gross)
    rows, back = att.returned[g]
    assert rows.tolist() == [2]
    np.testing.assert_allclose(back[0, [src["PRIV"], src["SEN"]]], [3.5, 3.5])


def test_one_layer_is_pro_rata_to_capital():
    case = layered(1, layers=False)
    src, _, claims, losses, lending, covered, capital = _hand_arrays(case)
    att = attribute_losses(case, claims, losses, lending, covered, capital)
    np.testing.assert_allclose(att.capital[:, src["CLIM"]], [1 / 3, 1.0, 1.0])
    np.testing.assert_allclose(att.capital[:, src["PUB"]], [2 / 3, 2.0, 2.0])


@pytest.mark.parametrize(
    "layers, seed", [(True, 3), (False, 4), (True, 5)], ids=["layered", "pro-rata", "layered-5"]
)
def test_optimised_losses_are_conserved_and_every_limit_holds(layers, seed):
    case = layered(seed, layers)
    scen = synthetic_scenarios(case, 600, seed)
    alloc = optimize(case, scen, method="lp")
    sources = alloc.sources
    # conservation: the funders' expected losses are the book's gross expected credit loss
    book = alloc.allocation["expected_loss_usd"].sum()
    assert sources["expected_loss_usd"].sum() == pytest.approx(book, rel=1e-9)
    np.testing.assert_allclose(
        sources["expected_loss_lending_usd"] + sources["expected_loss_capital_usd"],
        sources["expected_loss_usd"],
        rtol=1e-9,
        atol=1e-6,
    )
    # scenario by scenario too
    fixed = scenario_exposures(case, alloc, scen)
    total = sum(fixed.source_losses.values())
    ev = evaluate(case, alloc, scen)
    assert ev.breaches.empty, ev.breaches.to_string()
    per_cell = np.asarray(scen.losses, dtype=np.float64)
    cells = scen.cells["cell"].tolist()
    lent = alloc.allocation.assign(
        cell=alloc.allocation["product"] + "|" + alloc.allocation["segment"]
    )
    amount = lent.groupby("cell")["amount_usd"].sum()
    x = np.array([amount.get(c, 0.0) for c in cells])
    np.testing.assert_allclose(total, per_cell @ x, rtol=1e-9, atol=1e-3)
    # the capital providers carry risk: CLIM's CVaR is on its first-loss capital
    clim = sources.set_index("source").loc["CLIM"]
    if clim["capital_usd"] > 0:
        assert clim["expected_loss_capital_usd"] > 0
        assert clim["cvar_usd"] <= clim["cvar_limit_usd"] * (1 + 1e-6) + 1.0


def test_the_two_formulations_agree_with_links():
    case = layered(3)
    scen = synthetic_scenarios(case, 800, 3)
    lp = optimize(case, scen, method="lp")
    cuts = optimize(case, scen, method="cutting_plane")
    assert cuts.weighted_gap_usd == pytest.approx(lp.weighted_gap_usd, rel=1e-6, abs=1.0)


def test_a_fund_allowed_to_run_dry_passes_its_excess_back():
    # GP may deplete in 40% of scenarios, so the optimum lets it: lenders keep the excess
    case = layered(
        6, GP={"max_depletion_probability": 0.4, "leverage_cap": 40.0, "uptake_share": 1.0}
    )
    scen = synthetic_scenarios(case, 600, 6)
    alloc = optimize(case, scen, method="lp")
    funds = alloc.funds.set_index("fund")
    assert funds.at["GP", "depletion_probability"] > 0.0
    assert funds.at["GP", "expected_unpaid_usd"] > 0.0
    fixed = scenario_exposures(case, alloc, scen)
    claims = fixed.fund_claims["GP"]
    capital = funds.at["GP", "capital_usd"]
    dry = claims > capital * (1 + 1e-9) + 1.0
    assert dry.any()
    # the providers of GP never lose more than its capital
    guar = alloc.guarantees
    providers = guar[guar["fund"] == "GP"]["source"].unique()
    on_capital = sum(fixed.capital_losses[s] for s in providers)
    assert on_capital.max() <= capital * (1 + 1e-9) + 1e-3
    ev = evaluate(case, alloc, scen)
    assert ev.breaches.empty, ev.breaches.to_string()


def test_shipped_case_capital_providers_bear_fund_losses():
    case = load_case("inputs/peru_amazon.yaml")
    scen = simulate(case, n_scenarios=800, seed=7)
    alloc = optimize(case, scen, method="lp")
    src = alloc.sources.set_index("source")
    book = alloc.allocation["expected_loss_usd"].sum()
    assert src["expected_loss_usd"].sum() == pytest.approx(book, rel=1e-9)
    funds = alloc.funds.set_index("fund")
    for provider, fund in [("PUB_GUAR", "G_PUB"), ("PUB_EMERG", "G_EMERG")]:
        # the sole provider of a fund that stays within its capital bears all its claims
        paid = funds.at[fund, "expected_claims_usd"] - funds.at[fund, "expected_unpaid_usd"]
        assert src.at[provider, "expected_loss_capital_usd"] == pytest.approx(paid, rel=1e-9)
        assert src.at[provider, "cvar_usd"] > 0
        assert src.at[provider, "cvar_usd"] <= src.at[provider, "cvar_limit_usd"] * (1 + 1e-6)
    # G_CLIM_FL's layers: FIP/GEF junior, JDI next, GCF senior
    fl = src.loc[["CLIM_FIP_GEF", "CLIM_JDI", "CLIM_GCF"], "expected_loss_capital_usd"]
    assert fl.iloc[0] > 0
    assert (fl.iloc[0] >= fl.iloc[1]) or src.at["CLIM_FIP_GEF", "capital_usd"] == 0
    assert evaluate(case, alloc, scen).breaches.empty


@pytest.mark.parametrize(
    "layers, match",
    [
        ([["CLIM"], ["NOPE"]], "not a source that may capitalise GF"),
        ([["CLIM"], ["CLIM", "PUB"]], "named in two layers"),
        ([["CLIM"]], "leaves out PUB"),
        ([["CLIM"], [], ["PUB"]], "an empty layer"),
    ],
)
def test_bad_layers_are_named(layers, match):
    raw = layered(1).model_dump()
    for fund in raw["funds"]:
        if fund["id"] == "GF":
            fund["capital_layers"] = layers
    with pytest.raises((InputError, ValueError), match=match):
        Case.model_validate(raw)
