"""Stresses in money: what a stressed case can still fund, and the reverse stress.

The fundable rule (:func:`optimizer.analysis.holdings.fundable`) is checked against its own
statement on random cases (money scaled pro rata, cover within uptake and leverage, must-cover
lending fully covered); the reverse stress's answers are re-checked by independent evaluations
(a re-drawn case at the multiplier found breaks the limit, one a resolution step below holds;
the re-weighted event probability 1 agrees with a set drawn with the event certain).
"""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import random_case

from models import Recipe, load_case
from models.case_edit import with_changes
from optimizer import optimize
from optimizer.analysis.evaluate import evaluate
from optimizer.analysis.holdings import fundable, holdings_of
from optimizer.analysis.reverse_stress import (
    REVERSE_COLUMNS,
    _losses,
    _pd_times,
    _reweighted,
    reverse_stress,
)
from optimizer.analysis.stress_testing import shipped_stresses, stress


@pytest.fixture(scope="module")
def solved():
    case = random_case(3)
    recipe = Recipe(600, 11, "mc")
    scen = recipe.draw(case)
    return case, recipe, scen, optimize(case, scen)


def test_an_unchanged_case_funds_every_holding_exactly(solved):
    case, _, scen, alloc = solved
    h = holdings_of(case, alloc, scen.cells)
    kept = fundable(case, h, scen.cells)
    for name in ("lending", "covered", "capital", "ta"):
        np.testing.assert_array_equal(getattr(kept.holdings, name), getattr(h, name))
    assert kept.totals() == {
        "money_withdrawn_usd": 0.0,
        "cover_withdrawn_usd": 0.0,
        "lending_withdrawn_usd": 0.0,
    }
    ev = evaluate(case, alloc, scen, fund=True)
    assert ev.gap_closed_usd == pytest.approx(alloc.gap_closed_usd, rel=1e-12)
    assert ev.weighted_gap_usd == pytest.approx(alloc.weighted_gap_usd, rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_less_money_and_uptake_keep_what_the_rule_says(seed):
    case = random_case(seed)
    scen = Recipe(300, seed, "mc").draw(case)
    alloc = optimize(case, scen)
    h = holdings_of(case, alloc, scen.cells)
    used = h.lending.sum(axis=0) + h.capital.sum(axis=1) + h.ta
    changes = {f"sources[{s.id}].amount_usd": max(used[i] * 0.4, 1.0) for i, s in
               enumerate(case.sources) if used[i] > 0}  # fmt: skip
    changes |= {f"funds[{f.id}].uptake_share": 0.3 for f in case.funds}
    stressed = with_changes(case, changes)
    kept = fundable(stressed, h, scen.cells)
    k = kept.holdings
    # 1. money: every use of a source scaled by one share, and within its new amount
    now = k.lending.sum(axis=0) + k.capital.sum(axis=1) + k.ta
    amounts = np.array([s.amount_usd for s in stressed.sources])
    assert (now <= amounts * (1 + 1e-9) + 1e-6).all()
    for s in np.flatnonzero(used > 0):
        share = min(1.0, amounts[s] / used[s])
        np.testing.assert_allclose(k.capital[s], h.capital[s] * share, rtol=1e-9)
        assert k.ta[s] == pytest.approx(h.ta[s] * share)
    # 3–4. cover within leverage and uptake, never more than lending
    uptake = np.array([f.uptake_share for f in stressed.funds])
    assert (k.covered <= uptake[:, None, None] * k.lending[None] * (1 + 1e-9) + 1e-6).all()
    assert (k.covered.sum(axis=0) <= k.lending * (1 + 1e-9) + 1e-6).all()
    lev = np.array([f.leverage_cap for f in stressed.funds])
    assert (k.covered.sum(axis=(1, 2)) <= lev * k.capital.sum(axis=0) * (1 + 1e-9) + 1e-6).all()
    # 5. must-cover lending stays fully covered
    pd_ = scen.cells["pd"].to_numpy()
    for s, src in enumerate(stressed.sources):
        if src.max_pd_unguaranteed is not None:
            must = pd_ > src.max_pd_unguaranteed
            cov = k.covered[:, must, s].sum(axis=0)
            np.testing.assert_allclose(cov, k.lending[must, s], rtol=1e-9, atol=1e-6)
    # the withdrawn totals are what went, and the evaluation's budgets then hold
    assert kept.totals()["money_withdrawn_usd"] == pytest.approx(
        float(np.maximum(used - amounts, 0).sum()), rel=1e-9
    )
    assert kept.lending_withdrawn_usd == pytest.approx(h.lending.sum() - k.lending.sum())
    ev = evaluate(stressed, alloc, Recipe(300, seed, "mc").draw(stressed), fund=True)
    checks = ev.checks.set_index(["owner", "what"])
    for src in stressed.sources:
        assert not checks.at[(src.id, "budget"), "breached"]
    assert not ev.checks.loc[ev.checks["what"] == "uptake", "breached"].any()
    assert ev.lending_usd == pytest.approx(k.lending.sum())


def test_the_shipped_money_stresses_differ_from_the_base_and_give_up_gap():
    case = load_case()
    recipe = Recipe(2_000, 7, "importance")
    alloc = optimize(case, recipe.draw(case))
    shipped = {p.stem: p for p in shipped_stresses()}
    picks = [shipped[k] for k in ("concessional_shortfall", "guarantee_non_uptake", "roya_el_nino")]
    report = stress(case, alloc, picks, n_scenarios=2_000, seed=7)
    summary = report.summary.set_index("stress_id")
    base = summary.loc["base"]
    assert base.money_withdrawn_usd == base.cover_withdrawn_usd == 0.0
    for sid in ("concessional_shortfall", "guarantee_non_uptake"):
        row = summary.loc[sid]
        assert row.gap_given_up_usd > 1e6, sid  # at least US$1m more weighted gap left
        assert row.gap_closed_usd < base.gap_closed_usd
        assert row.cover_withdrawn_usd > 0
    # half the climate money: exactly what the allocation used beyond the new amounts goes
    used = alloc.sources.set_index("source")["committed_usd"]
    halves = {"CLIM_JDI": 20e6, "CLIM_GCF": 23e6, "CLIM_FIP_GEF": 7.5e6}
    expected = sum(max(used[s] - a, 0.0) for s, a in halves.items())
    assert summary.at["concessional_shortfall", "money_withdrawn_usd"] == pytest.approx(expected)
    # the combined stress moves losses, not money: more breaches than the base, same gap
    combined = summary.loc["roya_el_nino"]
    assert combined.gap_given_up_usd == 0.0
    assert combined.breaches > base.breaches and combined.largest_breach_usd > 0
    funders = report.funders.set_index(["stress_id", "source"])["expected_loss_usd"]
    assert funders.loc["roya_el_nino"].sum() > funders.loc["base"].sum()


def test_reverse_stress_answers_hold_up_to_an_independent_evaluation(solved):
    case, recipe, scen, alloc = solved
    table = reverse_stress(case, alloc, recipe, scen)
    assert list(table.columns) == list(REVERSE_COLUMNS)
    assert len(table) > 0
    pd_rows = table[(table.driver == "pd_multiplier") & (table.status == "breaks")]
    assert len(pd_rows)
    for r in pd_rows.head(3).itertuples():
        for m, broken in ((r.breaks_at, True), (r.breaks_at - r.resolution, False)):
            edited = _pd_times(case, m)
            ev = evaluate(edited, alloc, recipe.draw(edited))
            row = ev.checks.set_index(["owner", "what"]).loc[(r.owner, r.what)]
            assert bool(row.breached) is broken, (r.owner, r.what, m)
            if broken:  # the figure the table reports is the evaluation's, recomputed
                assert r.value_at_break == pytest.approx(row.value, rel=1e-9)
    # an event: probability q0 is the base evaluation itself, probability 1 agrees with a set
    # drawn with the event certain (same law, other draws: within Monte Carlo error)
    ev_rows = table[table.driver == "event_probability"]
    base = evaluate(case, alloc, scen).checks.set_index(["owner", "what"])
    for r in ev_rows.itertuples():
        assert r.value == pytest.approx(base.at[(r.owner, r.what), "value"], rel=1e-12), r
    event = case.risk_model.events[0]
    certain = with_changes(case, {f"risk_model.events[{event.id}].probability": 1.0})
    sure = evaluate(certain, alloc, Recipe(20_000, 3, "mc").draw(certain)).sources
    h = holdings_of(case, alloc, scen.cells)
    big = Recipe(20_000, 4, "mc").draw(case)
    losses = _losses(case, h, big)
    hit = np.asarray(big.events[:, big.event_ids.index(event.id)], dtype=bool)
    assert 0 < hit.sum() < hit.size
    w = _reweighted(losses.p, hit, 1.0, event.probability)
    assert w.sum() == pytest.approx(1.0) and (w[~hit] == 0).all()
    compared = 0
    for s, row in enumerate(sure.itertuples()):
        if row.expected_loss_usd > 0:
            el = float(w @ losses.total[:, s])
            assert abs(el - row.expected_loss_usd) < 5 * row.expected_loss_se_usd + 1.0, row.source
            compared += 1
    assert compared >= 2
