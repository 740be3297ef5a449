"""Random valid cases through the whole pipeline: YAML → load → simulate → optimise → check.

For every seed a random valid case (:mod:`random_cases`) is written to YAML, loaded with
``load_case``, simulated (300 scenarios) and optimised with ``optimize_or_diagnose``. The only
acceptable outcomes are

* an allocation whose every limit, recomputed from the scenario losses, holds: the in-sample
  :func:`optimizer.analysis.evaluate.evaluate` breaches nothing, and an independent recomputation here
  (each funder's and fund's scenario losses rebuilt from the allocation table and the fund
  terms, CVaR by sorting) checks CVaR and expected-loss limits, budgets, claims CVaR within
  capital and depletion probabilities, plus the programme rules ``evaluate`` does not cover
  (gaps, concentration, mobilisation, senior caps, earmark, cover rules, eligibility);
* :class:`InfeasibleCase` carrying a diagnosis whose relaxed case then solves and passes the
  same checks.

A validated case is never infeasible (lending nothing meets every rule), so the second outcome
is reached through :func:`random_cases.broken_case` (a figure pushed past its bound without
validation) and through gap targets (``diagnose(..., max_weighted_gap_usd=...)``). Every
solvable case is also solved with ``method="lp"`` and ``method="cutting_plane"``, which must
reach the same optimal weighted gap.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from attribution_check import bear_fund_losses
from conftest import MINIMAL_CASE
from random_cases import broken_case, random_case, random_case_dict

from models import load_case, simulate
from models.scenarios import ScenarioSet
from models.schema import Case, GuaranteeFund, SourceKind
from optimizer import Allocation, InfeasibleCase, optimize
from optimizer.analysis.diagnose import RelaxationNotMappable, diagnose, optimize_or_diagnose
from optimizer.analysis.evaluate import evaluate

N_SCENARIOS = 300
DEFAULT_SEEDS = list(range(20))
SLOW_SEEDS = list(range(20, 220))
RTOL, ATOL_USD = 1e-6, 1.0
"""A money figure holds its limit within US$1 + 1e-6 of the limit (the optimiser's tolerance)."""
GAP_RTOL, GAP_ATOL_USD = 1e-6, 10.0
"""LP and cutting plane: same optimal weighted gap within 1e-6 relative, at least US$10."""
PROBABILITY_ATOL = 1e-12


KNOWN_BUGS: dict[int, pytest.MarkDecorator] = {}
"""Seeds that hit a known bug (none open: the cut master's empty exposures and its convergence
allowance were fixed; keep the hook for the next one)."""


def _seeds(seeds: list[int]) -> list:
    return [pytest.param(s, marks=KNOWN_BUGS[s]) if s in KNOWN_BUGS else s for s in seeds]


# --- the pipeline ---------------------------------------------------------------------------
def load_random(seed: int, folder: Path) -> Case:
    """Write the seed's case to YAML and load it back, as a user's file would be."""
    path = folder / f"random_{seed}.yaml"
    path.write_text(yaml.safe_dump(random_case_dict(seed), sort_keys=False), encoding="utf-8")
    return load_case(path)


def solve_or_relax(case: Case, scen: ScenarioSet, **kwargs) -> tuple[Case, Allocation]:
    """``optimize_or_diagnose``; on InfeasibleCase, its relaxed case must solve."""
    try:
        return case, optimize_or_diagnose(case, scen, **kwargs)
    except InfeasibleCase as exc:
        diagnosis = exc.diagnosis
        assert diagnosis is not None, f"InfeasibleCase without a diagnosis: {exc}"
        assert not diagnosis.feasible, f"infeasible, yet nothing to relax: {exc}"
        relaxed = diagnosis.relaxed_case(case)
        return relaxed, optimize(relaxed, scen, **kwargs)


@pytest.mark.parametrize("seed", _seeds(DEFAULT_SEEDS))
def test_a_random_case_solves_within_every_limit_by_both_methods(seed, tmp_path):
    case = load_random(seed, tmp_path)
    scen = simulate(case, N_SCENARIOS, seed=seed)
    case, lp = solve_or_relax(case, scen, method="lp")
    assert_limits_hold(case, scen, lp)
    cuts = optimize(case, scen, method="cutting_plane")
    assert lp.method == "lp"
    assert cuts.method == "cutting_plane", cuts.fallbacks
    assert_limits_hold(case, scen, cuts)
    assert_same_optimum(lp, cuts)


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(SLOW_SEEDS))
def test_many_random_cases_solve_within_every_limit_by_both_methods(seed, tmp_path):
    test_a_random_case_solves_within_every_limit_by_both_methods(seed, tmp_path)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS[:4])
def test_a_broken_random_case_is_diagnosed_and_its_relaxation_solves(seed):
    case = random_case(seed)
    scen = simulate(case, N_SCENARIOS, seed=seed)
    bad, changed = broken_case(case, seed)
    with pytest.raises(InfeasibleCase) as info:
        optimize_or_diagnose(bad, scen, method="lp")
    diagnosis = info.value.diagnosis
    assert diagnosis is not None and not diagnosis.feasible
    fields = set(diagnosis.relaxations["field"])
    # a negative gap is carried by the segment's need, every other figure by itself
    assert changed.replace("supply_usd", "need_usd") in fields, (changed, fields)
    relaxed = diagnosis.relaxed_case(bad)
    res = optimize(relaxed, scen, method="lp")
    assert_limits_hold(relaxed, scen, res)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS[:6])
def test_a_gap_target_relaxation_reaches_the_target(seed):
    """What would it take to close 10 % more of the weighted gap? The relaxed case must."""
    case = random_case(seed)
    scen = simulate(case, N_SCENARIOS, seed=seed)
    best = optimize(case, scen, method="lp").objective_weighted_gap_usd
    if best <= 0:
        return  # nothing left to close
    target = 0.9 * best
    try:
        diagnosis = diagnose(case, scen, max_weighted_gap_usd=target)
    except ValueError as exc:  # the segments no source may reach hold more than the target
        assert "can never be met" in str(exc)
        return
    assert not diagnosis.feasible
    try:
        relaxed = diagnosis.relaxed_case(case)
    except RelaxationNotMappable as exc:
        unmapped = diagnosis.relaxations[~diagnosis.relaxations["mappable"].astype(bool)]
        assert not unmapped.empty and all(f in str(exc) for f in unmapped["family"])
        return
    res = optimize(relaxed, scen, method="lp")
    assert res.objective_weighted_gap_usd <= target * (1 + GAP_RTOL) + GAP_ATOL_USD
    assert_limits_hold(relaxed, scen, res)


@pytest.mark.slow
@pytest.mark.parametrize("seed", DEFAULT_SEEDS[4:] + SLOW_SEEDS[:60])
def test_more_broken_random_cases_are_diagnosed_and_relaxed(seed):
    test_a_broken_random_case_is_diagnosed_and_its_relaxation_solves(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS[:60])
def test_more_gap_target_relaxations_reach_their_targets(seed):
    test_a_gap_target_relaxation_reaches_the_target(seed)


def test_relaxing_a_budget_below_its_cvar_limit_gives_a_valid_case():
    """Regression (issue #8, broken seed 5): a budget relaxed to US$10k + US$1 under a CVaR
    limit of US$2m failed validation (cvar_limit_usd <= amount_usd) inside relaxed_case; the
    limit is now clipped to the relaxed money, which changes nothing (loss <= lending)."""
    raw = copy.deepcopy(MINIMAL_CASE)
    priv = raw["sources"][1]
    del priv["cvar_limit_share"]
    priv["cvar_limit_usd"] = 2e6
    case = Case.model_validate(raw)
    bad = case.model_copy(
        update={
            "sources": tuple(
                s.model_copy(update={"amount_usd": -1e6}) if s.id == "PRIV" else s
                for s in case.sources
            )
        }
    )
    scen = simulate(case, 100, seed=5)
    with pytest.raises(InfeasibleCase) as info:
        optimize_or_diagnose(bad, scen, method="lp")
    relaxed = info.value.diagnosis.relaxed_case(bad)
    fixed = relaxed.finance_source("PRIV")
    assert fixed.amount_usd == pytest.approx(-1e6 + 1e6 * 1.01 + 1, rel=1e-6)  # US$10,001
    assert fixed.cvar_limit_usd == fixed.amount_usd
    assert relaxed.field_sources["sources[PRIV].cvar_limit_usd"].startswith("[D] clipped")
    assert_limits_hold(relaxed, scen, optimize(relaxed, scen, method="lp"))


def test_the_generator_is_seeded_and_varied():
    assert random_case_dict(7) == random_case_dict(7)
    cases = [random_case(s) for s in DEFAULT_SEEDS]
    assert len({c.model_dump_json() for c in cases}) == len(cases)
    assert any("tight" in c.name for c in cases) and not all("tight" in c.name for c in cases)
    assert any(c.funds for c in cases) and any(not c.funds for c in cases)
    assert any(k.gap_usd == 0 for c in cases for k in c.segments)


# --- the checks -----------------------------------------------------------------------------
def assert_same_optimum(a: Allocation, b: Allocation) -> None:
    x, y = a.objective_weighted_gap_usd, b.objective_weighted_gap_usd
    assert x == pytest.approx(y, rel=GAP_RTOL, abs=GAP_ATOL_USD), (a.method, x, b.method, y)


def _holds(value: float, limit: float, what: str) -> None:
    assert value <= limit + RTOL * abs(limit) + ATOL_USD, f"{what}: {value:,.4f} > {limit:,.4f}"


def cvar_by_sorting(loss: np.ndarray, alpha: float, p: np.ndarray) -> float:
    """Mean of the worst ``1 − α`` probability mass, the boundary scenario split."""
    order = np.argsort(loss)[::-1]
    mass = 1.0 - alpha
    taken = np.minimum(
        p[order], np.maximum(mass - np.concatenate([[0], np.cumsum(p[order])[:-1]]), 0)
    )
    return float(taken @ loss[order] / mass)


def claim_rate(
    fund: GuaranteeFund, product: str, loss: np.ndarray, events: np.ndarray
) -> np.ndarray:
    """κ(ω) per covered dollar, straight from the fund's terms (``events`` the fund's flags)."""
    if product not in fund.eligible_products:
        return np.zeros_like(loss)
    if fund.first_loss_cap_share is not None:
        loss = np.minimum(loss, fund.first_loss_cap_share)
    rate = fund.coverage_by_product.get(product, fund.coverage_ratio) * loss
    return rate * events.any(axis=1) if events.shape[1] else rate


def assert_limits_hold(case: Case, scen: ScenarioSet, res: Allocation) -> None:
    """Every limit of the case at ``res``, recomputed from the scenario losses."""
    assert res.status in ("optimal", "optimal_inaccurate")
    if res.status == "optimal_inaccurate":
        assert res.warnings, "an inaccurate optimum must carry a warning"
    ev = evaluate(case, res, scen)
    assert ev.breaches.empty, ev.breaches.to_string()
    pd.testing.assert_series_equal(
        ev.sources["cvar_usd"], res.sources["cvar_usd"], rtol=1e-9, atol=1e-6
    )

    p, n = np.asarray(scen.probabilities), scen.n_scenarios
    cell = {label: j for j, label in enumerate(scen.cells["cell"])}
    cells = scen.cells.set_index("cell")
    loss = {s.id: np.zeros(n) for s in case.sources}
    claims = {f.id: np.zeros(n) for f in case.funds}
    claims_by: dict[tuple[str, str], np.ndarray] = {}
    cover = {f.id: 0.0 for f in case.funds}
    for row in res.allocation.to_dict("records"):
        label = f"{row['product']}|{row['segment']}"
        src, x = case.finance_source(row["source"]), row["amount_usd"]
        info = cells.loc[label]
        assert row["product"] in src.products, label
        if src.min_deforestation_pressure is not None:
            assert info["deforestation_pressure"] >= src.min_deforestation_pressure, label
        if src.max_pd_guaranteed is not None:
            assert info["pd"] <= src.max_pd_guaranteed, label
        ell = np.asarray(scen.losses[:, cell[label]], dtype=np.float64)
        loss[src.id] += ell * x
        covered = 0.0
        for fund in case.funds:
            z = row[f"covered_usd_{fund.id}"]
            if z <= 0:
                continue
            assert src.kind in fund.covered_source_kinds, (fund.id, label)
            _holds(z, fund.uptake_share * x, f"uptake of {fund.id} on {src.id}/{label}")
            cols = [scen.event_ids.index(e) for e in fund.active_only_in_events]
            kappa = claim_rate(fund, row["product"], ell, scen.events[:, cols])
            loss[src.id] -= kappa * z
            claims[fund.id] += kappa * z
            key = (fund.id, src.id)
            claims_by[key] = claims_by.get(key, np.zeros(n)) + kappa * z
            cover[fund.id] += z
            covered += z
        _holds(covered, x, f"cover of {src.id}/{label}")
        if src.max_pd_unguaranteed is not None and info["pd"] > src.max_pd_unguaranteed:
            _holds(x, covered, f"must-cover lending {src.id}/{label}")

    alloc, table = res.allocation, res.sources.set_index("source")
    lending = alloc.groupby("source")["amount_usd"].sum()
    capital = res.guarantees.groupby("source")["capital_usd"].sum()
    # every dollar on someone: lending (unpaid claims back) plus fund capital
    on_lending, on_capital = bear_fund_losses(case, loss, claims_by, res.guarantees)
    loss = {s.id: on_lending[s.id] + on_capital[s.id] for s in case.sources}
    for src in case.sources:
        lent, cap = float(lending.get(src.id, 0.0)), float(capital.get(src.id, 0.0))
        _holds(lent + cap + table.loc[src.id, "ta_usd"], src.amount_usd, f"budget of {src.id}")
        if src.cvar_alpha is not None:
            limit = src.cvar_limit_usd
            if limit is None:
                limit = src.cvar_limit_share * (lent + cap)
            cvar = cvar_by_sorting(loss[src.id], src.cvar_alpha, p)
            _holds(cvar, limit, f"CVaR{src.cvar_alpha:g} of {src.id}")
            assert table.loc[src.id, "cvar_usd"] == pytest.approx(cvar, rel=1e-9, abs=1e-6)
        if src.expected_loss_limit_rate is not None:
            at_risk = src.expected_loss_limit_rate * (lent + cap)
            _holds(p @ loss[src.id], at_risk, f"EL of {src.id}")

    fund_capital = res.guarantees.groupby("fund")["capital_usd"].sum()
    for fund in case.funds:
        cap = float(fund_capital.get(fund.id, 0.0))
        eps = fund.max_depletion_probability
        if cover[fund.id] > 0:
            _holds(cvar_by_sorting(claims[fund.id], 1 - eps, p), cap, f"claims CVaR of {fund.id}")
            _holds(cover[fund.id], fund.leverage_cap * cap, f"leverage of {fund.id}")
        depleted = float(p @ (claims[fund.id] > cap + RTOL * cap + ATOL_USD))
        assert depleted <= eps + PROBABILITY_ATOL, (fund.id, depleted, eps)
        if fund.capital_cap_usd is not None:
            _holds(cap, fund.capital_cap_usd, f"capital cap of {fund.id}")
    _policy_rules_hold(case, res, lending)


def _policy_rules_hold(case: Case, res: Allocation, lending: pd.Series) -> None:
    alloc, pol = res.allocation, case.policy
    total = float(alloc["amount_usd"].sum())
    credit = alloc.groupby("segment")["amount_usd"].sum()
    for seg in case.segments:
        _holds(float(credit.get(seg.id, 0.0)), seg.gap_usd, f"credit to {seg.id}")
    for key, share in (
        ("segment", pol.max_share_per_segment),
        ("region", pol.max_share_per_region),
        ("product", pol.max_share_per_product),
    ):
        for name, amount in alloc.groupby(key)["amount_usd"].sum().items():
            _holds(amount, share * total, f"{key} share of {name}")
    spent = res.sources.set_index("source")["committed_usd"]
    concessional = sum(float(spent[s.id]) for s in case.sources if s.is_concessional)
    private = sum(
        float(lending.get(s.id, 0.0)) for s in case.sources if s.kind is SourceKind.private
    )
    _holds(pol.min_private_per_concessional * concessional, private, "mobilisation")
    for src in case.sources:
        if src.max_multiple_of_concessional is not None:
            _holds(
                float(lending.get(src.id, 0.0)),
                src.max_multiple_of_concessional * concessional,
                f"senior cap of {src.id}",
            )
    climate = alloc[alloc["kind"] == "climate"]
    pressure = climate["segment"].map({s.id: s.deforestation_pressure for s in case.segments})
    high = float(climate.loc[pressure >= pol.climate_earmark_min_pressure, "amount_usd"].sum())
    _holds(pol.climate_earmark_min_share * float(climate["amount_usd"].sum()), high, "earmark")
    ta_rate = alloc["product"].map({p.id: p.ta_cost_rate for p in case.products})
    ta_needed = float(alloc["amount_usd"].to_numpy() @ ta_rate.to_numpy(dtype=float))
    _holds(ta_needed, float(res.sources["ta_usd"].sum()), "technical assistance")
