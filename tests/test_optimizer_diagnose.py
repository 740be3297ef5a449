"""``diagnose``: the elastic re-solve, its messages, and the relaxed case that then solves.

A validated case is never infeasible (zero lending meets every rule: pinned below), so the
infeasible cases here skip validation with ``model_copy(update=...)`` — a negative budget, CVaR
limit or gap, the mechanism's test — and the policy relaxations (earmark, mobilisation,
concentration, CVaR share) are reached honestly through a gap target that requires lending.
"""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import _COPULA, _product, _segment, random_case, synthetic_scenarios

from models import load_case, simulate
from models.schema import Case
from optimizer import InfeasibleCase, SolverFailure, optimize
from optimizer.analysis.diagnose import (
    STRUCTURAL_WEIGHT,
    RelaxationNotMappable,
    diagnose,
    optimize_or_diagnose,
)
from optimizer.formulation.problem import build_problem

CLIM = {"id": "CLIM", "name": "CLIM", "kind": "climate", "amount_usd": 30e6,
        "cost_of_funds_rate": 0.0, "products": ["P"]}  # fmt: skip
PUB = {"id": "PUB", "name": "PUB", "kind": "public", "amount_usd": 30e6,
       "cost_of_funds_rate": 0.03, "products": ["P"]}  # fmt: skip
PRIV = {"id": "PRIV", "name": "PRIV", "kind": "private", "amount_usd": 5e6,
        "cost_of_funds_rate": 0.07, "products": ["P"]}  # fmt: skip


def two_segments(policy: dict, sources: list[dict]) -> Case:
    """H: gap US$2m at deforestation pressure 0.9 (weight 1.9); L: gap US$40m at 0.2 (1.2)."""
    return Case(
        name="two segments",
        regions=[{"id": "R", "name": "R"}],
        value_chains=[{"id": "C1", "name": "C1"}, {"id": "C2", "name": "C2"}],
        segments=[_segment("H", "R", "C1", 2e6, 0.9), _segment("L", "R", "C2", 40e6, 0.2)],
        products=[_product("P")],
        sources=sources,
        risk_model={"copula": _COPULA},
        policy=policy,
    )


def broken(case: Case, **changes: dict) -> Case:
    """``case`` with entity fields changed WITHOUT validation (``model_copy``)."""

    def edit(items):
        return tuple(i.model_copy(update=changes.get(i.id, {})) for i in items)

    return case.model_copy(update={"sources": edit(case.sources), "segments": edit(case.segments)})


@pytest.fixture(scope="module")
def small():
    case = random_case(3)
    return case, synthetic_scenarios(case, 1000, seed=1, importance=True)


@pytest.mark.parametrize("which", ["random 0", "random 1", "random 2", "default"])
def test_zero_allocation_meets_every_constraint_of_a_validated_case(which):
    """Why a validated case is never infeasible: all-zero variables satisfy every row."""
    case = load_case() if which == "default" else random_case(int(which[-1]))
    scen = simulate(case, 200, seed=1) if which == "default" else synthetic_scenarios(case, 200, 1)
    prob = build_problem(case, scen)
    for var in prob.problem.variables():
        var.value = np.zeros(var.shape)
    worst = max(float(np.max(c.violation(), initial=0.0)) for c in prob.problem.constraints)
    assert worst <= 1e-12


def test_a_feasible_case_needs_no_relaxation(small):
    case, scen = small
    d = diagnose(case, scen)
    assert d.feasible and d.relaxations.empty and d.messages == ()
    assert d.weighted_relaxation_usd == pytest.approx(0.0, abs=1e-3)
    assert d.status == "optimal" and d.relaxed_case(case) is case
    assert d.weights["budget"] == 1.0 and d.weights["segment_gap"] == STRUCTURAL_WEIGHT


def test_negative_budget_and_cvar_limit_are_diagnosed_and_relaxed(small):
    case, scen = small
    bad = broken(case, PUB={"amount_usd": -3e6}, SEN={"cvar_limit_usd": -2e6})
    with pytest.raises(InfeasibleCase) as info:
        optimize(bad, scen)
    assert info.value.diagnosis is None  # optimize itself does not diagnose

    with pytest.raises(InfeasibleCase) as info:
        optimize_or_diagnose(bad, scen)
    d = info.value.diagnosis
    assert not d.feasible and d.status == "optimal"  # the elastic problem always solves
    rel = d.relaxations.set_index("family")
    assert set(rel.index) == {"budget", "cvar_limit"}
    assert rel.loc["budget", "subject"] == "PUB"
    assert rel.loc["budget", "relaxation_usd"] == pytest.approx(3e6, rel=1e-6)
    assert rel.loc["cvar_limit", "subject"] == "SEN"
    assert rel.loc["cvar_limit", "relaxation_usd"] == pytest.approx(2e6, rel=1e-6)
    assert d.total_relaxation_usd == pytest.approx(5e6, rel=1e-6)
    # Relaxation rounded up by 1 % + US$1.
    assert rel.loc["budget", "relaxed_value"] == pytest.approx(-3e6 + 3e6 * 1.01 + 1, rel=1e-6)
    assert rel.loc["cvar_limit", "relaxed_value"] == pytest.approx(-2e6 + 2e6 * 1.01 + 1, rel=1e-6)

    budget_msg, cvar_msg = d.messages
    assert budget_msg.startswith("PUB needs US$3.00m more money")
    assert budget_msg.endswith("[budget: sources[PUB].amount_usd −US$3,000,000 → US$30,001]")
    assert cvar_msg.startswith("SEN's CVaR99% limit must rise by US$2.00m (from −US$2.00m)")
    assert "cvar_limit" in cvar_msg

    fixed = d.relaxed_case(bad)
    assert fixed.finance_source("PUB").amount_usd == pytest.approx(30_001, rel=1e-6)
    assert fixed.finance_source("SEN").cvar_limit_usd == pytest.approx(20_001, rel=1e-6)
    assert fixed.field_sources["sources[SEN].cvar_limit_usd"].startswith("[D] relaxed")
    res = optimize(fixed, scen)
    assert res.status == "optimal"
    sen = res.sources.set_index("source").loc["SEN"]
    assert sen["cvar_usd"] <= sen["cvar_limit_usd"] + 1


def test_a_negative_gap_is_relaxed_through_the_segment_need(small):
    case, scen = small
    seg = case.segments[0]
    bad = broken(case, **{seg.id: {"supply_usd": seg.need_usd + 4e6}})
    d = diagnose(bad, scen)
    row = d.relaxations.iloc[0]
    assert (len(d.relaxations), row["family"], row["subject"]) == (1, "segment_gap", seg.id)
    assert row["relaxation_usd"] == pytest.approx(4e6, rel=1e-6)
    assert row["field"] == f"segments[{seg.id}].need_usd"
    assert d.messages[0].startswith(f"segment {seg.id} would need US$4.00m more credit need")
    optimize(d.relaxed_case(bad), scen)  # solves


def test_a_target_on_the_climate_earmark(small):
    """Earmark 80 % at pressure >= 0.6: climate lending to L is at most a quarter of H's
    US$2m gap. Weighted gap <= US$36m needs US$10m in L, so 0.8·12 − 2 = US$7.6m more
    high-pressure climate lending."""
    case = two_segments(
        {"climate_earmark_min_share": 0.8, "climate_earmark_min_pressure": 0.6}, [CLIM]
    )
    scen = synthetic_scenarios(case, 300, seed=1)
    assert optimize(case, scen).objective_weighted_gap_usd == pytest.approx(47.4e6, rel=1e-6)
    d = diagnose(case, scen, max_weighted_gap_usd=36e6)
    assert len(d.relaxations) == 1
    row = d.relaxations.iloc[0]
    assert (row["family"], row["field"], row["direction"]) == (
        "climate_earmark", "policy.climate_earmark_min_share", "lower")  # fmt: skip
    assert row["relaxation_usd"] == pytest.approx(7.6e6, rel=1e-6)
    assert row["relaxed_value"] == pytest.approx(0.8 - (7.6 * 1.01 + 1e-6) / 12, rel=1e-6)
    assert d.messages[0].startswith(
        "the climate earmark needs US$7.60m more high-pressure climate lending"
    )
    assert optimize(d.relaxed_case(case), scen).objective_weighted_gap_usd <= 36e6


def test_a_target_on_the_concentration_cap():
    """One source, segment cap 50 %: L gets at most what H gets (US$2m). Closing US$10m more
    weighted gap needs L at US$10.33m, i.e. US$4.17m above half of US$12.33m."""
    case = two_segments({"max_share_per_segment": 0.5}, [PUB])
    scen = synthetic_scenarios(case, 300, seed=1)
    d = diagnose(case, scen, max_weighted_gap_usd=35.6e6)
    row = d.relaxations.iloc[0]
    assert (len(d.relaxations), row["family"], row["subject"]) == (1, "segment_share", "L")
    assert row["relaxation_usd"] == pytest.approx(0.5 * (2e6 + 10e6 / 1.2) - 1e6, rel=1e-6)
    assert "concentration cap on segment L (50% of programme lending)" in d.messages[0]
    assert "US$4.17m" in d.messages[0]
    relaxed = d.relaxed_case(case)
    assert relaxed.policy.max_share_per_segment == pytest.approx(0.8412, abs=1e-4)
    assert optimize(relaxed, scen).objective_weighted_gap_usd <= 35.6e6


def test_a_target_on_mobilisation_when_money_is_dear():
    """Private US$5m must match concessional money 1:1. Closing US$12m more weighted gap
    (US$10m more lending) costs either US$5m more private money or US$10m of mobilisation
    rule; with money weighted 10x the rule gives way."""
    case = two_segments({"min_private_per_concessional": 1.0}, [PUB, PRIV])
    scen = synthetic_scenarios(case, 300, seed=1)
    target = 38.4e6 - 12e6
    plain = diagnose(case, scen, max_weighted_gap_usd=target)
    assert list(plain.relaxations["family"]) == ["budget"]
    assert plain.relaxations["relaxation_usd"].iloc[0] == pytest.approx(5e6, rel=1e-6)

    d = diagnose(case, scen, max_weighted_gap_usd=target, weights={"budget": 10})
    row = d.relaxations.iloc[0]
    assert (len(d.relaxations), row["family"]) == (1, "mobilization")
    assert row["relaxation_usd"] == pytest.approx(10e6, rel=1e-6)
    assert d.messages[0].startswith(
        "the mobilisation rule (1 private per concessional dollar) needs US$10.00m more private"
    )
    relaxed = d.relaxed_case(case)
    assert relaxed.policy.min_private_per_concessional == pytest.approx(1 - 10.1 / 15, rel=1e-6)
    assert optimize(relaxed, scen).objective_weighted_gap_usd <= target


def test_a_target_on_a_cvar_share_limit():
    case = two_segments(
        {}, [PRIV | {"amount_usd": 50e6, "cvar_alpha": 0.95, "cvar_limit_share": 0.05}]
    )
    scen = synthetic_scenarios(case, 500, seed=1)
    best = optimize(case, scen).objective_weighted_gap_usd
    d = diagnose(case, scen, max_weighted_gap_usd=best - 10e6)
    row = d.relaxations.iloc[0]
    assert (len(d.relaxations), row["family"]) == (1, "cvar_limit")
    assert row["field"] == "sources[PRIV].cvar_limit_share" and row["relaxed_value"] > 0.05
    assert "PRIV's CVaR95% limit must rise by US$" in d.messages[0]
    assert optimize(d.relaxed_case(case), scen).objective_weighted_gap_usd <= best - 10e6


def test_a_relaxation_no_case_field_carries_is_refused_by_name():
    """Make the earmark 100x dear: the cheapest way is then lending US$38m past H's gap (to
    satisfy the earmark) plus US$20m more climate money. Past-the-gap lending is no lever."""
    case = two_segments(
        {"climate_earmark_min_share": 0.8, "climate_earmark_min_pressure": 0.6}, [CLIM]
    )
    scen = synthetic_scenarios(case, 300, seed=1)
    d = diagnose(case, scen, max_weighted_gap_usd=36e6, weights={"climate_earmark": 100})
    rel = d.relaxations.set_index("family")
    assert rel.loc["segment_gap", "relaxation_usd"] == pytest.approx(38e6, rel=1e-6)
    assert rel.loc["budget", "relaxation_usd"] == pytest.approx(20e6, rel=1e-6)
    assert not rel.loc["segment_gap", "mappable"]
    with pytest.raises(RelaxationNotMappable, match=r"segment_gap \(H, US\$38,000,000\)"):
        d.relaxed_case(case)


def test_a_failed_diagnosis_leaves_the_original_error_with_a_note(small, monkeypatch):
    import optimizer.analysis.diagnose as module

    def fail(*args, **kwargs):
        raise SolverFailure("HIGHS", "solver_error", 1, "test")

    monkeypatch.setattr(module, "diagnose", fail)
    case, scen = small
    with pytest.raises(InfeasibleCase) as info:
        optimize_or_diagnose(broken(case, PUB={"amount_usd": -1e6}), scen)
    assert info.value.diagnosis is None
    assert any("diagnosis failed too" in note for note in info.value.__notes__)


def test_optimize_or_diagnose_passes_a_feasible_answer_through(small):
    case, scen = small
    assert optimize_or_diagnose(case, scen).status == "optimal"


def test_bad_arguments_are_refused_at_the_door(small):
    case, scen = small
    with pytest.raises(ValueError, match="solver must be one of"):
        diagnose(case, scen, solver="GUROBI")
    with pytest.raises(ValueError, match=r"weights\['budget'\] must be a finite number > 0"):
        diagnose(case, scen, weights={"budget": 0})
    with pytest.raises(ValueError, match="unknown constraint family 'budgets'"):
        diagnose(case, scen, weights={"budgets": 2})
    with pytest.raises(ValueError, match="max_weighted_gap_usd must be a finite number >= 0"):
        diagnose(case, scen, max_weighted_gap_usd=-1.0)
    only_h = two_segments({}, [CLIM | {"min_deforestation_pressure": 0.5}])
    scen_h = synthetic_scenarios(only_h, 100, seed=1)
    with pytest.raises(ValueError, match=r"no source may lend to segments \['L'\]"):
        diagnose(only_h, scen_h, max_weighted_gap_usd=40e6)
    with pytest.raises(ValueError, match="this diagnosis is of case"):
        diagnose(case, scen).relaxed_case(only_h)
