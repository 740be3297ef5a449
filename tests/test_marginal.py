"""Marginal values by re-solve: against independent re-solves of modified cases, a degenerate
vertex solvable by hand, grouping, the result file, and any number of workers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from optimizer_cases import (
    _product,
    _segment,
    modified,
    one_cell_case,
    random_case,
    scenario_set,
    synthetic_scenarios,
)

from models.schema import Case
from optimizer import optimize
from optimizer.analysis.marginal import (
    GROUPED_FAMILIES,
    MARGINAL_COLUMNS,
    STEP_USD,
    committee_lines,
    has_marginal_values,
    marginal_groups,
    marginal_values,
)
from optimizer.result import Allocation

W = 1.5  # the one-cell case's segment weight: 1 + 1.0 x pressure 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261202)


def cvar_brute_force(losses: np.ndarray, alpha: float, p: np.ndarray) -> float:
    """min over t of t + Σ p (L − t)+ / (1 − α), taken at one of the losses."""
    t = losses[:, None]
    return float(np.min(t[:, 0] + (p @ np.maximum(losses[:, None] - t.T, 0.0)) / (1 - alpha)))


# --- against an independent re-solve ------------------------------------------------------------
def changed_case(case: Case, family: str, subject: str, sign: float, rate: float) -> Case | None:
    """The case with one limit moved by its step, built from scratch (None: no case field)."""
    raw = case.model_dump()
    src = {s["id"]: s for s in raw["sources"]}
    funds = {f["id"]: f for f in raw["funds"]}
    if family == "budget":
        src[subject]["amount_usd"] += sign * STEP_USD
    elif family == "fund_capital_cap":
        funds[subject]["capital_cap_usd"] += sign * STEP_USD
    elif family == "cvar_limit" and src[subject]["cvar_limit_usd"] is not None:
        src[subject]["cvar_limit_usd"] += sign * STEP_USD
    elif math.isnan(rate):  # a coefficient on no volume at the optimum: moved in US$ instead
        return None
    elif family == "cvar_limit":
        src[subject]["cvar_limit_share"] += sign * rate
    elif family == "expected_loss_limit":
        src[subject]["expected_loss_limit_rate"] += sign * rate
    elif family == "return_hurdle":
        src[subject]["return_hurdle_rate"] -= sign * rate
    elif family == "senior_cap":
        src[subject]["max_multiple_of_concessional"] += sign * rate
    elif family == "leverage":
        funds[subject]["leverage_cap"] += sign * rate
    elif family == "mobilization":
        raw["policy"]["min_private_per_concessional"] -= sign * rate
    elif family == "climate_earmark":
        raw["policy"]["climate_earmark_min_share"] -= sign * rate
    else:
        return None
    return Case.model_validate(raw)


@pytest.mark.parametrize(("seed", "hurdle"), [(1, 0.04), (4, 0.08)])
def test_resolved_gains_equal_independent_resolves_of_the_changed_case(seed, hurdle):
    # hurdles raised so that return hurdles bind too (a random case's seldom do)
    rates = {"return_hurdle_rate": hurdle}
    case = modified(random_case(seed), sources={"PRIV": rates, "SEN": rates})
    scen = synthetic_scenarios(case, 300, seed, importance=seed % 2 == 0)
    base = optimize(case, scen, method="lp")
    res = marginal_values(case, scen, base)
    rows = res.binding.drop_duplicates("marginal_group")
    checked = set()
    for row in rows.itertuples():
        for sign, gain, gain_gap in (
            (1.0, row.resolved_gain_usd, row.resolved_gain_gap_usd),
            (-1.0, -row.resolved_loss_usd, -row.resolved_loss_gap_usd),
        ):
            new_case = changed_case(case, row.family, row.subject, sign, row.step_rate)
            if new_case is None:
                continue
            # the one-LP formulation, from scratch: independent of the re-solves' cutting plane
            new = optimize(new_case, scen, method="lp")
            expected = base.objective_weighted_gap_usd - gain
            assert new.objective_weighted_gap_usd == pytest.approx(expected, rel=1e-6), row.label
            # the credit gap of the returned (stage-2) allocation: held within the gap tolerance
            assert new.unmet_gap_usd == pytest.approx(base.unmet_gap_usd - gain_gap, abs=2e4)
            checked.add(row.family)
    assert {"budget", "cvar_limit", "leverage", "return_hurdle"} <= checked, checked


def test_a_share_step_is_worth_one_million_at_the_optimum():
    case = random_case(2)
    scen = synthetic_scenarios(case, 300, 2)
    res = optimize(case, scen, method="lp", marginal=True)
    rows = res.binding.set_index(["family", "subject"])
    src = res.sources.set_index("source").loc["PRIV"]
    # PRIV's limit is a share of its commitment: the step moves it by US$1m at the optimum
    commitment = src["lending_usd"] + src["capital_usd"]
    assert rows.loc[("cvar_limit", "PRIV"), "step_rate"] * commitment == pytest.approx(
        STEP_USD, rel=1e-6
    )
    # a leverage step allows US$1m more guaranteed volume on the fund's capital
    capital = res.funds.set_index("fund").loc["GP", "capital_usd"]
    assert rows.loc[("leverage", "GP"), "step_rate"] * capital == pytest.approx(STEP_USD, rel=1e-6)
    assert math.isnan(rows.loc[("cvar_limit", "SEN"), "step_rate"])  # a US$ limit: US$1m


# --- a degenerate vertex by hand ----------------------------------------------------------------
def test_a_degenerate_vertex_is_flagged_and_the_resolve_is_right(rng):
    # One cell; budget A and a CVaR limit of exactly A · CVaR(ℓ): both cap lending at A, so
    # both bind at x = A. Relaxing either alone closes nothing (the other still caps x), while
    # the LP's duals split W among the two rows somehow.
    n, alpha, amount = 400, 0.95, 10e6
    losses = rng.beta(2, 30, n)
    p = rng.dirichlet(np.ones(n))
    unit = cvar_brute_force(losses, alpha, p)
    case = one_cell_case(amount, 50e6, cvar_alpha=alpha, cvar_limit_usd=amount * unit)
    scen = scenario_set(case, losses[:, None], p)
    base = optimize(case, scen, gap_tolerance=0.0, method="lp")
    res = marginal_values(case, scen, base, gap_tolerance=0.0)
    rows = res.binding.set_index("family")
    budget, cvar = rows.loc["budget"], rows.loc["cvar_limit"]
    assert budget["shadow_price"] + cvar["shadow_price"] * unit == pytest.approx(W, rel=1e-6)
    for row in (budget, cvar):
        assert row["resolved_gain_usd"] == pytest.approx(0.0, abs=1.0)
        assert row["dual_disagrees"]
    # Tightening either by US$1m lends US$1m less, or US$1m / CVaR(ℓ) less.
    assert budget["resolved_loss_usd"] == pytest.approx(W * STEP_USD, rel=1e-6)
    assert budget["resolved_loss_gap_usd"] == pytest.approx(STEP_USD, rel=1e-6)
    assert cvar["resolved_loss_usd"] == pytest.approx(W * STEP_USD / unit, rel=1e-6)
    assert cvar["resolved_loss_gap_usd"] == pytest.approx(STEP_USD / unit, rel=1e-6)


def test_a_vertex_with_one_binding_limit_agrees_with_its_dual(rng):
    case = one_cell_case(10e6, 50e6)
    scen = scenario_set(case, rng.beta(2, 30, (200, 1)))
    res = optimize(case, scen, gap_tolerance=0.0, marginal=True)
    row = res.binding.set_index("family").loc["budget"]
    assert row["shadow_price"] == pytest.approx(W, rel=1e-9)
    assert row["resolved_gain_usd"] == pytest.approx(W * STEP_USD, rel=1e-7)
    assert row["resolved_loss_usd"] == pytest.approx(W * STEP_USD, rel=1e-7)
    assert row["resolved_gain_gap_usd"] == pytest.approx(STEP_USD, rel=1e-7)
    assert not row["dual_disagrees"]
    assert row["marginal_note"] == ""


# --- grouping ---------------------------------------------------------------------------------
SOURCE = {"id": "S", "name": "S", "kind": "private", "amount_usd": 100e6,
          "cost_of_funds_rate": 0.05, "products": ["P"]}  # fmt: skip


def two_segment_case() -> Case:
    """Plenty of money, two segments: both gaps bind, one row each of one family."""
    return Case(
        name="two segments",
        regions=[{"id": "R", "name": "R"}],
        value_chains=[{"id": "C", "name": "C"}, {"id": "D", "name": "D"}],
        segments=[_segment("K1", "R", "C", 8e6, 0.5), _segment("K2", "R", "D", 5e6, 0.2)],
        products=[_product("P")],
        sources=[SOURCE],
        risk_model={"copula": {"rho_macro": 0.05, "rho_chain": 0.1, "rho_region": 0.05}},
    )


def test_rows_of_one_mechanism_are_one_group_and_one_resolve(rng):
    case = two_segment_case()
    scen = scenario_set(case, rng.beta(2, 30, (200, 2)))
    res = optimize(case, scen, gap_tolerance=0.0, marginal=True)
    gaps = res.binding[res.binding["family"] == "segment_gap"]
    assert len(gaps) == 2 and gaps["marginal_group"].nunique() == 1
    # both gaps relaxed by US$1m together: US$2m more lending, worth w1 + w2 of weighted gap
    w = 1.5 + 1.2
    for column, value in (("resolved_gain_usd", w * STEP_USD), ("dual_gain_usd", w * STEP_USD),
                          ("resolved_loss_usd", w * STEP_USD)):  # fmt: skip
        assert gaps[column].to_numpy() == pytest.approx([value, value], rel=1e-7)
    # one committee line at most for the group (segment_gap is not a programme lever)
    assert committee_lines(res.binding)["marginal_group"].is_unique


def test_groups_follow_the_families():
    case = random_case(3)
    scen = synthetic_scenarios(case, 300, 3)
    binding = optimize(case, scen).binding
    groups = marginal_groups(binding)
    grouped = [g for g in groups if g[0] in GROUPED_FAMILIES]
    assert len(grouped) == len({f for f in binding["family"] if f in GROUPED_FAMILIES})
    singles = binding[~binding["family"].isin(GROUPED_FAMILIES)]
    assert len(groups) == len(grouped) + len(singles)
    assert sum(len(s) for _, s in groups) == len(binding)


# --- the result file and workers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def marginal_result() -> tuple[Case, object, Allocation]:
    case = random_case(2)
    scen = synthetic_scenarios(case, 400, 2, importance=True)
    return case, scen, marginal_values(case, scen, optimize(case, scen))


def test_the_json_file_carries_the_marginal_values(marginal_result):
    _, _, res = marginal_result
    assert has_marginal_values(res)
    back = Allocation.from_json(res.to_json())
    assert back == res
    assert list(back.binding.columns)[-len(MARGINAL_COLUMNS) :] == list(MARGINAL_COLUMNS)
    assert back.binding["dual_disagrees"].dtype == bool
    assert "US$1m step closes" in back.summary()  # the summary quotes the re-solves


def test_a_file_without_marginal_values_still_reads(marginal_result):
    case, scen, _ = marginal_result
    plain = optimize(case, scen)
    back = Allocation.from_json(plain.to_json())
    assert back == plain and not has_marginal_values(back)


def test_figures_do_not_depend_on_the_number_of_workers(marginal_result):
    case, scen, one = marginal_result
    base = optimize(case, scen)
    two = marginal_values(case, scen, base, n_jobs=2)
    threads = marginal_values(case, scen, base, n_jobs=2, backend="threading")
    assert two.binding.equals(one.binding)
    assert threads.binding.equals(one.binding)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")  # cvxpy, on the time limit
def test_a_base_that_does_not_resolve_is_a_warning_not_a_lost_optimum(marginal_result):
    case, scen, _ = marginal_result
    base = optimize(case, scen)
    out = marginal_values(case, scen, base, time_limit_s=1e-9)  # HiGHS stops at once
    assert not has_marginal_values(out)
    assert out.binding.equals(base.binding) and out.allocation.equals(base.allocation)
    assert "marginal values not computed" in out.warnings[-1]
    assert "time limit" in out.warnings[-1]


def test_an_allocation_of_other_scenarios_is_refused(marginal_result):
    case, scen, res = marginal_result
    other = synthetic_scenarios(case, 300, 9)
    with pytest.raises(ValueError, match="400 scenarios, not these 300"):
        marginal_values(case, other, res)
    with pytest.raises(ValueError, match="method must be"):
        marginal_values(case, scen, res, method="simplex")


# --- the command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("skip", [False, True])
def test_optimize_command_quotes_the_resolves_unless_told_not_to(
    skip, minimal_case_dict, write_case, tmp_path, capsys
):
    from optimizer.door.cli import main

    for src in minimal_case_dict["sources"]:  # money short of the gap: budgets bind
        src["amount_usd"] /= 4
    out = tmp_path / "opt"
    args = ["optimize", str(write_case(minimal_case_dict)), "-n", "300", "--out", str(out)]
    assert main(args + (["--no-marginal"] if skip else [])) == 0
    printed = " ".join(capsys.readouterr().out.split())
    result = Allocation.from_json((out / "result.json").read_text())
    assert has_marginal_values(result) is not skip
    assert ("(re-solved)" in printed) is not skip
    assert ("(LP dual)" in printed) is skip


def test_a_what_if_whose_stage_2_fails_keeps_its_exact_stage_1_figure_without_retries(
    monkeypatch,
):
    """A what-if's stage 2 only picks the plain gap among allocations of one weighted gap: a
    master that fails there is not run again cold and scaled, and the re-solved weighted gain
    (stage 1's, exact) stays, with a note, instead of a NaN."""
    import optimizer.solve as solve_module
    from optimizer.errors import SolverFailure

    case = random_case(1)
    scen = synthetic_scenarios(case, 300, 1)
    base = optimize(case, scen, method="cutting_plane")
    plain = marginal_values(case, scen, base)
    original, retries = solve_module.solve_stage, []

    def stage_2_fails_without_retries(prob, stage, *args, **kwargs):
        retry = kwargs.get("retry", True)
        if stage == 2:
            retries.append(retry)
            if not retry:
                raise SolverFailure("HIGHS", "solver_error", 2, "the master has no usable answer")
        return original(prob, stage, *args, **kwargs)

    monkeypatch.setattr(solve_module, "solve_stage", stage_2_fails_without_retries)
    failed = marginal_values(case, scen, base)
    assert retries[0] is True and retries.count(True) == 1  # the base keeps its retries
    assert len(retries) > 1 and not any(retries[1:])  # every what-if runs without
    gains = ["resolved_gain_usd", "resolved_loss_usd"]
    assert failed.binding[gains].notna().equals(plain.binding[gains].notna())
    pd.testing.assert_frame_equal(failed.binding[gains], plain.binding[gains], rtol=1e-6)
    resolved = failed.binding["resolved_gain_usd"].notna()
    assert resolved.any()
    notes = failed.binding.loc[resolved, "marginal_note"]
    assert notes.str.contains("stage 2 (least loss and cost", regex=False).all()
