"""``sensitivity``: one input at a time, re-simulated with common random numbers, re-optimised.

The small cases of :mod:`optimizer_cases` have binding risk limits and budgets, so every input
moves the optimal gap; the default case is used once, through the command line, at 200
scenarios.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from optimizer_cases import one_cell_case, random_case

from models import Case, load_case, simulate
from optimizer.analysis.sensitivity_analysis import (
    INPUT_IDS,
    INPUTS,
    SENSITIVITY_COLUMNS,
    Sensitivity,
    _simulate_and_optimize,
    _solve_point,
    perturbed_case,
    sensitivity,
    sensitivity_points,
)
from optimizer.door.cli import main
from optimizer.errors import InfeasibleCase
from optimizer.persist import from_plain, to_plain

USD_TOL = 1.0
"""The optimiser's tolerance on money (US$1, as in ``optimizer.analysis.evaluate``)."""


@pytest.fixture(scope="module")
def case() -> Case:
    return random_case(1)


def test_every_input_perturbed_by_one_rebuilds_bit_identical_scenarios(case):
    base = simulate(case, 600, seed=4)
    for input_id in INPUT_IDS:
        same, _ = perturbed_case(case, input_id, 1.0)
        assert same == case.model_copy(update={"content_sha256": None})
        assert np.array_equal(simulate(same, 600, seed=4).losses, base.losses), input_id


@pytest.mark.parametrize("sampling", ["mc", "importance"])
def test_money_and_limit_points_redraw_the_base_set_so_it_is_reused(case, sampling):
    # what lets the sweep solve those points on the base's own set instead of re-drawing it
    base = simulate(case, 600, seed=4, method=sampling)
    moved = set()
    for spec in INPUTS:
        if not spec.applies(case):
            continue
        point = simulate(perturbed_case(case, spec.id, 1.2)[0], 600, seed=4, method=sampling)
        if point.fingerprint != base.fingerprint:
            moved.add(spec.id)
    assert moved == {i.id for i in INPUTS if i.moves_risk and i.applies(case)}


def test_a_sweep_on_the_base_set_is_the_sweep_that_draws_it(case):
    scen = simulate(case, 300, seed=2, method="importance")
    drawn = sensitivity(case, 300, 2, inputs=["pd", "amount_private", "cvar_limit"])
    given = sensitivity(case, 300, 2, inputs=["pd", "amount_private", "cvar_limit"], scenarios=scen)
    pd.testing.assert_frame_equal(given.table, drawn.table)
    assert given.base_weighted_gap_usd == drawn.base_weighted_gap_usd
    with pytest.raises(ValueError, match=r"scenarios: seed 2, but the sweep draws 3"):
        sensitivity(case, 300, 3, inputs=["pd"], scenarios=scen)
    with pytest.raises(
        ValueError, match=r"scenarios: method 'mc', but the sweep draws 'importance'"
    ):
        sensitivity(case, 300, 2, inputs=["pd"], scenarios=simulate(case, 300, seed=2))


def test_perturbed_sets_share_the_base_random_draws(case):
    base = simulate(case, 600, seed=4)
    riskier = simulate(perturbed_case(case, "pd", 1.2)[0], 600, seed=4)
    # the draws depend on the seed alone: same factors and events, losses up in every scenario
    assert np.array_equal(riskier.factors, base.factors)
    assert np.array_equal(riskier.events, base.events)
    assert (riskier.losses >= base.losses).all() and (riskier.losses > base.losses).any()
    likelier = simulate(perturbed_case(case, "event_probability", 1.2)[0], 600, seed=4)
    assert (likelier.events >= base.events).all()  # an event that struck still strikes


def test_a_factor_of_one_changes_nothing_exactly(case):
    # a shock of 0 is refused (it perturbs nothing): each input's point at factor 1 is solved
    # as the sweep solves a point, and must be the base, bit for bit
    base = _simulate_and_optimize(case, 150, 2, "mc")
    for input_id in INPUT_IDS:
        row = _solve_point(case, 150, 2, "mc", "float64", "auto", None, None, input_id, "low", 1.0)
        assert row["status"] == "optimal", input_id
        assert row["weighted_gap_usd"] == base.objective_weighted_gap_usd, input_id
        assert row["gap_closed_usd"] == base.gap_closed_usd, input_id


def test_points_started_from_the_base_reach_its_optimum(case):
    # the cutting plane from the base's warm start (its cuts on the same scenarios, cuts at
    # its optimum on a risk input's): a factor of 1 lands on the base within the loop's
    # tolerance, and the risk inputs' points on what a cold solve of them finds
    base = _simulate_and_optimize(case, 400, 2, "mc", solve="cutting_plane")
    assert base.warm_start is not None
    for input_id in INPUT_IDS:
        args = (case, 400, 2, "mc", "float64", "cutting_plane")
        warm = _solve_point(*args, base.warm_start, None, input_id, "low", 1.0)
        assert warm["weighted_gap_usd"] == pytest.approx(
            base.objective_weighted_gap_usd, rel=1e-6, abs=USD_TOL
        ), input_id
        warm = _solve_point(*args, base.warm_start, None, input_id, "high", 1.2)
        cold = _solve_point(*args, None, None, input_id, "high", 1.2)
        assert warm["status"] == cold["status"], input_id
        if cold["status"] == "optimal":
            assert warm["weighted_gap_usd"] == pytest.approx(
                cold["weighted_gap_usd"], rel=1e-6, abs=USD_TOL
            ), input_id


def test_a_given_base_is_the_base_of_every_change(case):
    from optimizer.solve import optimize

    headline = optimize(case, simulate(case, 150, seed=2))
    sens = sensitivity(case, 150, 2, inputs=["pd"], method="mc", base=headline)
    assert sens.base_weighted_gap_usd == headline.objective_weighted_gap_usd
    assert sens.base_gap_closed_usd == headline.gap_closed_usd
    own = sensitivity(
        case, 150, 2, inputs=["pd"], method="mc"
    )  # base solved by the sweep: the same optimum
    assert own.base_weighted_gap_usd == pytest.approx(headline.objective_weighted_gap_usd, rel=1e-9)
    assert np.allclose(sens.table["change_usd"], own.table["change_usd"], rtol=0, atol=USD_TOL)
    with pytest.raises(ValueError, match=r"on 150 scenarios, not of .* on 200"):
        sensitivity(case, 200, 2, inputs=["pd"], method="mc", base=headline)


def test_points_are_drawn_at_the_given_precision(case):
    sens64 = sensitivity(case, 150, 2, inputs=["pd"])
    sens32 = sensitivity(case, 150, 2, inputs=["pd"], dtype="float32")
    # float32 losses (~1e-7 relative): the same optimum within the optimiser's tolerance
    assert np.allclose(sens32.table["weighted_gap_usd"], sens64.table["weighted_gap_usd"],
                       rtol=1e-5)  # fmt: skip
    assert not np.array_equal(sens32.table["weighted_gap_usd"], sens64.table["weighted_gap_usd"])


def test_the_table_has_every_input_low_then_high(case):
    sens = sensitivity(case, n_scenarios=150, seed=2, shock=0.1)
    t = sens.table
    assert list(t.columns) == list(SENSITIVITY_COLUMNS)
    assert list(t["input"]) == [i for i in INPUT_IDS for _ in range(2)]
    assert list(t["direction"]) == ["low", "high"] * len(INPUT_IDS)
    assert list(t["factor"]) == [0.9, 1.1] * len(INPUT_IDS)
    assert (t["status"] == "optimal").all()
    assert (t["change_usd"] == t["weighted_gap_usd"] - sens.base_weighted_gap_usd).all()


@pytest.mark.parametrize("seed", [1, 2])
def test_riskier_loans_never_lower_the_gap_and_climate_money_never_raises_it(seed):
    sens = sensitivity(random_case(seed), n_scenarios=400, seed=seed,
                       inputs=["amount_climate", "pd"], shock=0.25)  # fmt: skip
    change = sens.table.set_index(["input", "direction"])["change_usd"]
    assert (sens.table["status"] == "optimal").all()
    assert change["pd", "high"] >= -USD_TOL and change["pd", "low"] <= USD_TOL
    assert change["amount_climate", "high"] <= USD_TOL
    assert change["amount_climate", "low"] >= -USD_TOL
    # and they matter here: each moves the gap by more than a rounding error
    assert change["pd", "high"] - change["pd", "low"] > 1e6
    assert change["amount_climate", "low"] - change["amount_climate", "high"] > 1e6
    t = sens.tornado
    assert list(t["input"]) == ["pd", "amount_climate"]  # table order, not request order
    assert t.set_index("input").at["pd", "swing_usd"] == pytest.approx(
        max(abs(change["pd", "low"]), abs(change["pd", "high"]))
    )


def test_one_or_two_workers_give_the_same_table(case):
    kwargs = {"n_scenarios": 200, "seed": 6, "inputs": ["cvar_limit"]}
    one = sensitivity(case, n_jobs=1, **kwargs)
    done: list[int] = []
    two = sensitivity(case, n_jobs=2, on_point=done.append, **kwargs)
    pd.testing.assert_frame_equal(one.table, two.table, check_exact=True)
    assert done == [1, 2, 3] == list(range(1, sensitivity_points(case, kwargs["inputs"]) + 1))


def _risky_case() -> Case:
    raw = random_case(2).model_dump()
    raw["products"][0]["base_pd"] = 0.9  # x1.2 passes the bound of a probability
    return Case.model_validate(raw)


def test_an_invalid_perturbation_is_a_row_with_its_reason():
    sens = sensitivity(_risky_case(), n_scenarios=200, seed=1, inputs=["pd"], shock=0.2)
    rows = sens.table.set_index("direction")
    assert rows.at["low", "status"] == "optimal"
    assert rows.at["high", "status"] == "invalid"
    assert "products[IND].base_pd" in rows.at["high", "reason"]
    assert math.isnan(rows.at["high", "weighted_gap_usd"])
    assert math.isnan(rows.at["high", "change_usd"])
    note = sens.tornado.at[0, "note"]
    assert note.startswith("high: invalid (pd × 1.2 makes the case invalid")


def test_an_infeasible_point_stays_in_the_table(case, monkeypatch):
    import optimizer.analysis.sensitivity_analysis as module

    real, calls = module.optimize, []

    def flaky(point, scen, **kw):
        calls.append(point)
        if len(calls) == 3:  # the base solves; the second point (pd high) is infeasible
            raise InfeasibleCase(point.name, 1, "HIGHS")
        return real(point, scen, **kw)

    monkeypatch.setattr(module, "optimize", flaky)
    sens = sensitivity(case, n_scenarios=200, seed=1, inputs=["pd"])
    assert list(sens.table["status"]) == ["optimal", "infeasible"]
    assert "infeasible at stage 1" in sens.table.at[1, "reason"]
    assert math.isnan(sens.tornado.at[0, "high_change_usd"])


def test_the_result_survives_a_json_round_trip():
    sens = sensitivity(_risky_case(), n_scenarios=200, seed=1, inputs=["pd"])
    back = from_plain(Sensitivity, json.loads(json.dumps(to_plain(sens))))
    pd.testing.assert_frame_equal(back.table, sens.table, check_exact=True)
    assert back.base_weighted_gap_usd == sens.base_weighted_gap_usd and back.shock == 0.2


def test_bad_arguments_are_refused(case):
    for shock in (-0.1, 0.0, 1.0, 20, math.nan, True):
        with pytest.raises(ValueError, match=r"shock must be a number in \(0, 1\)"):
            sensitivity(case, 100, shock=shock)
    with pytest.raises(ValueError, match="choose from pd, lgd"):
        sensitivity(case, 100, inputs=["pds"])
    with pytest.raises(ValueError, match="n_jobs must be"):
        sensitivity(case, 100, n_jobs=0)
    lone = one_cell_case(1e6, 2e6)  # one private source, no event, no CVaR limit
    with pytest.raises(ValueError, match="nothing to perturb"):
        sensitivity(lone, 100, inputs=["event_probability"])
    assert sensitivity_points(lone) == 1 + 2 * len(["pd", "lgd", "correlation", "amount_private"])


def test_the_package_exports_the_functions_even_after_their_modules_are_imported():
    import optimizer
    import optimizer.analysis.sensitivity_analysis
    import optimizer.analysis.stress_testing
    from optimizer import sensitivity, stress

    assert sensitivity is optimizer.analysis.sensitivity_analysis.sensitivity
    assert stress is optimizer.analysis.stress_testing.stress
    assert optimizer.Sensitivity is Sensitivity


def test_sensitivity_command_writes_its_files_and_exits_0(tmp_path, capsys):
    out = tmp_path / "sens"
    code = main(["sensitivity", "-n", "200", "--seed", "3", "--inputs", "amount_climate",
                 "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "sensitivity.csv", "tornado.csv", "sensitivity.json", "ppcfin-manifest.json"
    }  # fmt: skip
    table = pd.read_csv(out / "sensitivity.csv")
    assert list(table["direction"]) == ["low", "high"]
    assert table.at[1, "change_usd"] <= USD_TOL and table.at[0, "change_usd"] >= -USD_TOL
    saved = from_plain(Sensitivity, json.loads((out / "sensitivity.json").read_text()))
    assert saved.n_scenarios == 200 and saved.case_name == load_case().name
    assert f"{table.at[1, 'change_usd'] / 1e6:+,.1f}" in printed


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--shock", "-0.5"], "shock must be a number in (0, 1)"),
        (["--shock", "1"], "shock must be a number in (0, 1)"),
        (["--inputs", "pd,nope"], "inputs ['nope']"),
        (["--jobs", "0"], "n_jobs must be"),
        (["--bogus"], "No such option"),
    ],
)
def test_sensitivity_command_bad_arguments_exit_2(tmp_path, capsys, args, needle):
    out = tmp_path / "x"
    assert main(["sensitivity", "-n", "50", *args, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_a_scheduler_without_dask_distributed_exits_2_saying_what_to_install(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    out = tmp_path / "x"
    args = ["sensitivity", "-n", "50", "--inputs", "pd", "--scheduler", "tcp://127.0.0.1:9"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs dask.distributed: pip install" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow  # starts a two-worker dask cluster
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_a_dask_scheduler_gives_the_same_table(case):
    distributed = pytest.importorskip("dask.distributed")
    kwargs = {"n_scenarios": 200, "seed": 6, "inputs": ["pd", "amount_private"]}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        on_dask = sensitivity(case, scheduler=cluster.scheduler_address, **kwargs)
    pd.testing.assert_frame_equal(
        on_dask.table, sensitivity(case, **kwargs).table, check_exact=True
    )
