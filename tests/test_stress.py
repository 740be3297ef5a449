"""``stress``: a fixed allocation under stress overlays, with common random numbers.

The roya-2013 replay is checked against its closed form on a small two-chain case that copies
the shipped overlay's numbers (rust probability 1, coffee price −30 %) and the default case's
rust multiplier, price volatility and copula: with a constant LGD and no LGD downturn correlation
the large-pool expected default rate is exactly ``Φ(Φ⁻¹(PD') − √ρ_chain · log(1 + s) / σ)``.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from optimizer_cases import random_case
from scipy import special

from models import load_case, simulate
from models.problems import RESERVED_FIELDS
from models.yaml_io import read_yaml
from optimizer import optimize
from optimizer.analysis.stress_testing import (
    LIMIT_COLUMNS,
    REOPTIMIZED_COLUMNS,
    STRESS_DIR,
    SUMMARY_COLUMNS,
    StressOutcome,
    read_allocation,
    shipped_stresses,
    stress,
    stress_steps,
)
from optimizer.door.cli import main

ROYA = STRESS_DIR / "roya_2013.yaml"
PD, LGD = 0.05, 0.5


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return str(path)


def _coffee_case_dict() -> dict:
    """Coffee and cocoa in one region, one product of constant LGD; the rust event, coffee
    price volatility and copula of the shipped default case."""
    default = load_case()
    rust = default.event("coffee_rust")
    cop = default.risk_model.copula
    gap = 10_000_000.0
    return {
        "name": "roya test case",
        "regions": [{"id": "JU", "name": "Junín"}],
        "value_chains": [{"id": "coffee", "name": "Coffee"}, {"id": "cocoa", "name": "Cocoa"}],
        "segments": [
            {
                "id": f"JU-{c[:3].upper()}",
                "region": "JU",
                "value_chain": c,
                "households": 100,
                "need_usd": gap,
                "supply_usd": 0.0,
                "deforestation_pressure": 0.5,
            }
            for c in ("coffee", "cocoa")
        ],
        "products": [
            {
                "id": "P",
                "name": "loan",
                "rate": 0.25,
                "tenor_months": 12,
                "avg_ticket_usd": 2000,
                "base_pd": PD,
                "lgd_mean": LGD,
                "lgd_sd": 0.0,
                "transaction_cost_rate": 0.05,
            }
        ],
        "sources": [
            {
                "id": "PUB",
                "name": "public lender",
                "kind": "public",
                "amount_usd": 2 * gap,
                "cost_of_funds_rate": 0.0,
                "products": ["P"],
            }
        ],
        "risk_model": {
            "copula": {
                "rho_macro": cop.rho_macro,
                "rho_chain": cop.rho_chain,
                "rho_region": cop.rho_region,
            },
            "price_factors": {
                "coffee": {"volatility": default.risk_model.price_factors["coffee"].volatility}
            },
            "events": [
                {
                    "id": "coffee_rust",
                    "name": rust.name,
                    "probability": rust.probability,
                    "pd_multiplier": rust.pd_multiplier,
                    "chains": ["coffee"],
                }
            ],
        },
    }


@pytest.fixture
def coffee_files(tmp_path):
    """(case file, roya overlay file): the overlay copies the shipped one's stress and changes."""
    case_path = _write(tmp_path / "case.yaml", _coffee_case_dict())
    shipped = read_yaml(ROYA)
    overlay = {"base_case": "case.yaml", "stress": shipped["stress"], "changes": shipped["changes"]}
    return case_path, _write(tmp_path / "roya.yaml", overlay)


def test_roya_replay_raises_expected_coffee_losses_as_its_numbers_say(coffee_files):
    case_path, roya_path = coffee_files
    case = load_case(case_path)
    alloc = optimize(case, simulate(case, 300, seed=1))
    assert alloc.gap_closed_share == pytest.approx(1.0)  # both segments fully lent
    n, seed = 40_000, 11
    report = stress(case, alloc, [roya_path], n_scenarios=n, seed=seed, method="mc")

    # the closed form, from the overlay's numbers and the case's
    shipped = read_yaml(ROYA)["changes"]["risk_model"]
    assert shipped["events"][0]["probability"]["value"] == 1.0
    price_move = shipped["price_factors"]["coffee"]["shock_share"]["value"]
    rust = case.event("coffee_rust")
    sigma = case.risk_model.price_factors["coffee"].volatility
    hit_pd = min(PD * rust.pd_multiplier, 0.999)
    base_el = LGD * ((1 - rust.probability) * PD + rust.probability * hit_pd)
    shift = math.sqrt(case.risk_model.copula.rho_chain) * math.log1p(price_move) / sigma
    stressed_el = LGD * float(special.ndtr(special.ndtri(hit_pd) - shift))
    expected_ratio = stressed_el / base_el
    rust_only_ratio = LGD * hit_pd / base_el  # the rust for sure, without the price fall
    assert expected_ratio > rust_only_ratio > 1

    base_rates = report.baseline.chains.set_index("value_chain")["el_rate"]
    roya_rates = report.outcomes[0].evaluation.chains.set_index("value_chain")["el_rate"]
    # standard errors of the two means, from the same (common-random-number) scenario sets
    chains = simulate(case, 1, seed=seed).cells["value_chain"]
    coffee = next(j for j, c in enumerate(chains) if c == "coffee")
    base_losses = simulate(case, n, seed=seed).losses[:, coffee]
    roya_losses = simulate(load_case(roya_path), n, seed=seed).losses[:, coffee]
    assert base_rates["coffee"] == pytest.approx(base_losses.mean(), rel=1e-12)
    assert roya_rates["coffee"] == pytest.approx(roya_losses.mean(), rel=1e-12)
    se_base = base_losses.std(ddof=1) / math.sqrt(n)
    se_roya = roya_losses.std(ddof=1) / math.sqrt(n)
    assert abs(base_rates["coffee"] - base_el) < 4 * se_base
    assert abs(roya_rates["coffee"] - stressed_el) < 4 * se_roya
    ratio = roya_rates["coffee"] / base_rates["coffee"]
    se_ratio = ratio * math.hypot(se_base / base_el, se_roya / stressed_el)
    assert abs(ratio - expected_ratio) < 4 * se_ratio, (ratio, expected_ratio, se_ratio)
    # cocoa is untouched: same draws, same losses, to the last bit
    assert roya_rates["cocoa"] == base_rates["cocoa"]


def _case_file(tmp_path, case) -> str:
    """A Python-built case written as a case file (the loader sets the reserved fields)."""
    raw = case.model_dump(mode="json", exclude_none=True)
    for key in RESERVED_FIELDS:
        raw.pop(key, None)
    return _write(tmp_path / "case.yaml", raw)


@pytest.fixture
def small(tmp_path):
    """A small case with every feature (file), its allocation, and a do-nothing overlay."""
    case = load_case(_case_file(tmp_path, random_case(1)))
    alloc = optimize(case, simulate(case, 400, seed=5))
    noop = _write(
        tmp_path / "noop.yaml",
        {"base_case": "case.yaml", "stress": {"id": "noop", "name": "Nothing"}, "changes": {}},
    )
    half = _write(
        tmp_path / "half.yaml",
        {"base_case": "case.yaml", "stress": {"id": "half", "name": "Half the private money"},
         "changes": {"sources": [{"id": "PRIV", "amount_usd": case.finance_source("PRIV")
                                  .amount_usd / 2}]}},
    )  # fmt: skip
    return case, alloc, noop, half


def test_an_overlay_that_changes_nothing_reproduces_the_baseline_exactly(small):
    case, alloc, noop, half = small
    report = stress(
        case, alloc, [noop, half], n_scenarios=400, seed=5, method="mc", reoptimize=True
    )
    same = report.outcomes[0].evaluation
    for name in ("sources", "funds", "chains", "checks", "breaches"):
        pd.testing.assert_frame_equal(getattr(same, name), getattr(report.baseline, name))
    reopt = report.reoptimized.set_index("stress_id")
    assert list(report.reoptimized.columns) == list(REOPTIMIZED_COLUMNS)
    assert reopt.at["noop", "gives_up_usd"] == 0.0
    assert reopt.at["noop", "weighted_gap_usd"] == report.base_weighted_gap_usd
    # the allocation was optimised on these very scenarios: in sample, nothing is breached
    assert report.baseline.breaches.empty
    # halving private money: the stressed case funds half of what the allocation used of it
    # (every use scaled by the same share), so its budget holds and the gap left grows
    limits = report.limits
    assert list(limits.columns) == list(LIMIT_COLUMNS)
    over = limits[(limits.stress_id == "half") & (limits.owner == "PRIV")].set_index("what")
    assert over.at["budget", "held"]
    used = alloc.sources.set_index("source").at["PRIV", "committed_usd"]
    half_amount = case.finance_source("PRIV").amount_usd / 2
    summary = report.summary.set_index("stress_id")
    assert list(report.summary.columns) == list(SUMMARY_COLUMNS)
    assert summary.at["half", "money_withdrawn_usd"] == pytest.approx(used - half_amount)
    funded = report.funders.set_index(["stress_id", "source"])
    assert funded.at[("half", "PRIV"), "committed_usd"] == pytest.approx(half_amount)
    assert funded.at[("half", "PRIV"), "lending_usd"] == pytest.approx(
        alloc.sources.set_index("source").at["PRIV", "lending_usd"] * half_amount / used
    )
    assert summary.at["noop", "gap_given_up_usd"] == 0.0
    assert summary.at["base", "weighted_gap_usd"] == pytest.approx(alloc.weighted_gap_usd)
    assert summary.at["base", "gap_closed_usd"] == pytest.approx(alloc.gap_closed_usd)
    assert summary.at["half", "gap_given_up_usd"] > 0
    assert summary.at["half", "gap_closed_usd"] < summary.at["base", "gap_closed_usd"]
    assert reopt.at["half", "gives_up_usd"] > 0
    # re-optimising can only do better than holding the scaled-down allocation
    assert reopt.at["half", "weighted_gap_usd"] <= summary.at["half", "weighted_gap_usd"] + 1.0
    assert set(limits["stress_id"]) == {"base", "noop", "half"}
    assert (report.funders.groupby("stress_id").size() == len(case.sources)).all()
    assert (report.funds.groupby("stress_id").size() == len(case.funds)).all()


def test_overlays_and_allocations_of_another_case_are_refused(small, tmp_path):
    case, alloc, noop, _ = small
    with pytest.raises(ValueError, match=r"changes .* not the case being stressed"):
        stress(case, alloc, [ROYA], n_scenarios=50)
    with pytest.raises(ValueError, match="stress the default case only"):
        stress(case, alloc, None, n_scenarios=50)
    (tmp_path / "other").mkdir()
    other = load_case(_case_file(tmp_path / "other", random_case(2)))
    with pytest.raises(ValueError, match="allocation was made for case 'random 1'"):
        stress(other, alloc, [noop], n_scenarios=50)


def test_run_keeps_importing_the_stress_helpers():
    import optimizer.door.run as run

    assert run.StressOutcome is StressOutcome and run.shipped_stresses is shipped_stresses
    assert [p.stem for p in shipped_stresses()] == [
        "concessional_shortfall", "el_nino_strong", "governance_failure",
        "guarantee_non_uptake", "roya_2013", "roya_el_nino",
    ]  # fmt: skip
    assert stress_steps(load_case(), None, reoptimize=True) == 1 + 6 + 1 + 6
    assert stress_steps(load_case(), None, reverse=True) == 1 + 6 + 1


def test_stress_command_writes_its_files_and_exits_0(small, tmp_path, capsys):
    case, alloc, noop, half = small
    saved = tmp_path / "result.json"
    saved.write_text(alloc.to_json(), encoding="utf-8")
    out = tmp_path / "st"
    code = main(["stress", case.source_file, "--allocation", str(saved), "--stress", noop,
                 "--stress", half, "-n", "400", "--seed", "5", "--reoptimize", "--reverse",
                 "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "stress_summary.csv", "stress_limits.csv", "stress_funders.csv", "stress_funds.csv",
        "stress_reoptimized.csv", "stress_reverse.csv", "stress.json", "ppcfin-manifest.json",
    }  # fmt: skip
    assert "Half the private" in printed and "Reverse stress" in printed, printed
    limits = pd.read_csv(out / "stress_limits.csv")
    assert limits.query("stress_id == 'half' and owner == 'PRIV' and what == 'budget'")[
        "held"
    ].item()
    summary = pd.read_csv(out / "stress_summary.csv").set_index("stress_id")
    assert summary.at["half", "money_withdrawn_usd"] > 0
    assert summary.at["half", "gap_given_up_usd"] > 0
    meta = json.loads((out / "stress.json").read_text())
    assert [o["stress_id"] for o in meta["outcomes"]] == ["noop", "half"]
    assert read_allocation(saved) == alloc


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--allocation", "missing.json"], "cannot read it"),
        (["--stress", "missing.yaml", "--allocation", "result.json"], "file not found"),
        (["--stress", "result.json", "--allocation", "result.json"], "does not end in .yaml"),
        (["-n", "0", "--allocation", "result.json"], "n_scenarios must be in"),
    ],
)
def test_stress_command_bad_arguments_exit_2(small, tmp_path, monkeypatch, capsys, args, needle):
    case, alloc, noop, _ = small
    (tmp_path / "result.json").write_text(alloc.to_json(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    extra = [] if "--stress" in args else ["--stress", noop]
    code = main(["stress", case.source_file, *args, *extra, "--out", str(tmp_path / "x")])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_reading_something_that_is_not_an_allocation_says_so(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"not a result\.json"):
        read_allocation(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"allocation .*r\.json"):
        read_allocation(bad)


def test_an_infeasible_stress_says_what_must_give(small, monkeypatch):
    import types

    import optimizer.analysis.stress_testing as module
    from optimizer.errors import InfeasibleCase

    case, alloc, _, half = small
    real = module.optimize_or_diagnose

    def infeasible_when_stressed(stressed, scen, **kw):
        if stressed.stress is None:
            return real(stressed, scen, **kw)
        exc = InfeasibleCase(stressed.name, 1, "HIGHS")
        exc.diagnosis = types.SimpleNamespace(messages=("raise PRIV's amount by US$1.0m",))
        raise exc

    monkeypatch.setattr(module, "optimize_or_diagnose", infeasible_when_stressed)
    report = stress(case, alloc, [half], n_scenarios=200, seed=5, method="mc", reoptimize=True)
    row = report.reoptimized.iloc[0]
    assert row["status"] == "infeasible" and pd.isna(row["gives_up_usd"])
    assert row["reason"] == "infeasible under the stress: raise PRIV's amount by US$1.0m"
