"""Frontiers: compiled once, monotone, equal to independent optimizations, worker-independent."""

from __future__ import annotations

import sys

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from optimizer_cases import _COPULA, _product, _segment, random_case, synthetic_scenarios

from models.schema import Case
from optimizer import ScenarioMismatch, optimize
from optimizer.analysis.frontier import FRONTIER_COLUMNS, case_at, frontier
from optimizer.door.cli import main
from optimizer.formulation.problem import build_problem
from optimizer.persist import from_plain, to_plain

REL = 1e-6
"""Each point against a fresh optimize: 1e-6 relative (plus US$1 for an optimum near zero)."""


def covered_case() -> Case:
    """All private lending must be guaranteed by fund G, capitalised by US$2m of public money:
    the fund's depletion limit, the public budget and the mobilisation rule all bind."""
    return Case(
        name="covered",
        regions=[{"id": "R", "name": "R"}],
        value_chains=[{"id": "C", "name": "C"}],
        segments=[_segment("K", "R", "C", 60e6, 0.5)],
        products=[_product("P", base_pd=0.08)],
        funds=[{"id": "G", "name": "G", "coverage_ratio": 0.7, "leverage_cap": 20.0,
                "fee_rate": 0.0, "max_depletion_probability": 0.05, "eligible_products": ["P"]}],
        sources=[
            {"id": "S", "name": "S", "kind": "private", "amount_usd": 50e6,
             "cost_of_funds_rate": 0.05, "products": ["P"], "max_pd_unguaranteed": 0.05},
            {"id": "PUB", "name": "PUB", "kind": "public", "amount_usd": 2e6,
             "cost_of_funds_rate": 0.0, "funds": ["G"]},
        ],
        risk_model={"copula": _COPULA},
        policy={"min_private_per_concessional": 1.0},
    )  # fmt: skip


@pytest.fixture(scope="module")
def small():
    case = random_case(2)
    return case, synthetic_scenarios(case, 300, 2, importance=True)


@pytest.fixture(scope="module")
def covered():
    case = covered_case()
    return case, synthetic_scenarios(case, 400, 5)


def _fresh_gap(case, scen, sweep, value, method="lp"):
    res = optimize(case_at(case, sweep, value), scen, method=method, gap_tolerance=0.0)
    return res.objective_weighted_gap_usd


def _figures(front) -> pd.DataFrame:
    return front.table.drop(columns="seconds")


def test_cvar_frontier_is_monotone_and_matches_fresh_solves():
    case = random_case(1)
    scen = synthetic_scenarios(case, 300, 1)
    values = [0.25, 0.5, 1.0, 1.5]
    front = frontier(case, scen, "cvar_scale", values=values, method="lp")
    table = front.table
    assert list(table.columns) == list(FRONTIER_COLUMNS)
    assert list(table["value"]) == values
    assert (table["status"] == "optimal").all()
    gaps = table["weighted_gap_usd"].to_numpy()
    assert np.all(np.diff(gaps) <= 1e-6 * gaps[:-1] + 1.0)  # never increases (US$1 slack)
    assert gaps[0] > gaps[-1] + 1e6  # and the limits do bind in this case
    assert front.compiled_once and front.compilations == 1 and front.method == "lp"
    for value, gap in zip(values, gaps, strict=True):
        assert _fresh_gap(case, scen, "cvar_scale", value) == pytest.approx(gap, rel=REL, abs=1.0)


@pytest.mark.parametrize(
    ("which", "sweep", "values", "direction"),
    [
        ("small", "cvar_scale:SEN", [0.5, 1.0, 2.0], -1),
        ("small", "amount:private", [0.25, 0.5, 1.0, 2.0], -1),
        ("covered", "depletion:G", [0.01, 0.05, 0.1, 0.3], -1),  # more ε, gap never larger
        ("covered", "mobilization", [0.0, 5.0, 10.0], +1),  # higher ratio, never smaller
        ("covered", "amount:public", [0.0, 0.5, 2.0], -1),
    ],
)
def test_each_sweep_moves_the_optimum_its_way_and_matches_fresh_solves(
    request, which, sweep, values, direction
):
    case, scen = request.getfixturevalue(which)
    table = frontier(case, scen, sweep, values=values, method="lp").table
    assert (table["status"] == "optimal").all()
    gaps = table["weighted_gap_usd"].to_numpy()
    assert np.all(direction * np.diff(gaps) >= -(1e-6 * gaps[:-1] + 1.0))
    assert abs(gaps[-1] - gaps[0]) > 1e6  # the swept quantity binds somewhere
    for value, gap in zip(values, gaps, strict=True):
        if value == 0.0 and sweep.startswith("amount"):
            continue  # a case cannot hold a CVaR limit above a zero amount
        assert _fresh_gap(case, scen, sweep, value) == pytest.approx(gap, rel=REL, abs=1.0)


@pytest.mark.parametrize(
    ("which", "sweep", "values"),
    [("covered", "depletion:G", [0.01, 0.05, 0.3]), ("small", "deforestation_priority", [0, 4])],
)
def test_lp_and_cutting_plane_frontiers_agree(request, which, sweep, values):
    """The cut master's swept tail factor and the rebuilt priority objective, against the LP."""
    case, scen = request.getfixturevalue(which)
    lp = frontier(case, scen, sweep, values=values, method="lp").table
    cuts = frontier(case, scen, sweep, values=values, method="cutting_plane").table
    np.testing.assert_allclose(cuts["weighted_gap_usd"], lp["weighted_gap_usd"], rtol=REL, atol=1)


def test_deforestation_priority_trades_volume_for_pressure(small):
    """Minimising unmet + λ·pressure-weighted unmet: as λ grows, the pressure-weighted unmet
    gap cannot rise and the unweighted gap closed cannot rise either (exchange argument)."""
    case, scen = small
    values = [0.0, 1.0, 4.0, 10.0]
    front = frontier(case, scen, "deforestation_priority", values=values, method="lp")
    table = front.table
    assert front.compiled_once
    closed = table["gap_closed_usd"].to_numpy()
    assert np.all(np.diff(closed) <= 1.0)
    assert closed[0] > closed[-1] + 1e4
    pressure = np.array([s.deforestation_pressure for s in case.segments])
    assert pressure.std() > 0
    for value, gap in zip(values, table["weighted_gap_usd"], strict=True):
        assert _fresh_gap(case, scen, "deforestation_priority", value) == pytest.approx(
            gap, rel=REL, abs=1.0
        )


@pytest.mark.parametrize("method", ["lp", "cutting_plane"])
def test_the_swept_problem_is_dpp_and_compiled_once(small, monkeypatch, method):
    case, scen = small
    assert build_problem(case, scen, "cuts" if method == "cutting_plane" else "lp").problem.is_dpp()
    calls = []
    original = cp.Problem._construct_chain

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "_construct_chain", counting)
    front = frontier(case, scen, "cvar_scale", values=[0.5, 1.0, 1.5, 2.0], method=method)
    assert len(calls) == 1  # cvxpy built its solving chain (canonicalization) once
    assert front.compiled_once and front.compilations == 1 and front.workers == 1
    assert front.method == method


@pytest.mark.parametrize(("method", "backend"), [("cutting_plane", "loky"), ("lp", "threading")])
def test_values_are_identical_for_one_and_two_workers(small, method, backend):
    case, scen = small
    values = [0.3, 0.6, 1.0, 1.7, 2.5]
    one = frontier(case, scen, "cvar_scale", values=values, method=method)
    seen = []
    two = frontier(case, scen, "cvar_scale", values=values, method=method, n_jobs=2,
                   backend=backend, on_point=lambda i, row: seen.append((i, row["value"])))  # fmt: skip
    assert seen == list(enumerate(values))  # in point order, whatever the worker
    assert two.workers == 2 and two.compilations == 2 and two.compiled_once
    pd.testing.assert_frame_equal(_figures(one), _figures(two), check_exact=True)


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_a_dask_local_cluster_equals_loky(small):
    distributed = pytest.importorskip("dask.distributed")
    case, scen = small
    values = [0.4, 0.8, 1.2, 1.6]
    # the one LP: its optimum is a vertex, whatever the path; the cutting plane's last digits
    # under dask's threads are an open question (see the stop note)
    loky = frontier(
        case, scen, "amount:private", values=values, n_jobs=2, backend="loky", method="lp"
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        dask = frontier(case, scen, "amount:private", values=values, n_jobs=2, backend="dask",
                        scheduler=cluster.scheduler_address, method="lp")  # fmt: skip
    assert dask.workers == 2 and dask.compiled_once
    # dask's workers are threads of this process: same digits as loky's processes all the same
    pd.testing.assert_frame_equal(_figures(loky), _figures(dask), check_exact=True)


@pytest.mark.parametrize("method", ["lp", "cutting_plane"])
def test_a_failed_point_stays_in_the_table_with_its_reason(small, method):
    case, scen = small
    # a negative budget cannot come from a validated case: skip validation on purpose
    sources = tuple(
        s.model_copy(update={"amount_usd": -1e6}) if s.id == "PUB" else s for s in case.sources
    )
    broken = case.model_copy(update={"sources": sources})
    seen = []
    table = frontier(
        broken, scen, "amount:PUB", values=[0.0, 1.0, 0.0], method=method,
        on_point=lambda i, row: seen.append((i, row["status"])),
    ).table  # fmt: skip
    assert list(table["status"]) == ["optimal", "infeasible", "optimal"]
    assert seen == list(enumerate(table["status"]))
    assert "infeasible" in table.loc[1, "reason"] and table.loc[0, "reason"] == ""
    assert np.isnan(table.loc[1, "weighted_gap_usd"]) and table.loc[1, "seconds"] >= 0
    assert table.loc[0, "weighted_gap_usd"] == table.loc[2, "weighted_gap_usd"]


def test_the_frontier_survives_a_round_trip_through_plain_json(small):
    from optimizer.analysis.frontier import Frontier

    case, scen = small
    front = frontier(case, scen, "mobilization", points=2, method="cutting_plane")
    back = from_plain(Frontier, to_plain(front))
    assert (back.sweep, back.method, back.compilations) == ("mobilization", "cutting_plane", 1)
    assert list(back.table["value"]) == [1.0, 2.0]  # the case's own ratio (1) replaces 0


@pytest.mark.parametrize(
    ("sweep", "kwargs", "needle"),
    [
        ("risk", {}, "sweep must be one of cvar_scale, cvar_scale:<SOURCE>, amount:<SOURCE>"),
        ("amount:NOPE", {}, "unknown source 'NOPE'; sources: PUB, PRIV, SEN, CLIM, or a kind"),
        ("cvar_scale:PUB", {}, "not a CVaR-limited source; choose from PRIV, SEN"),
        ("depletion:NOPE", {}, "choose from GP, GF, GE"),
        ("depletion:GP", {"values": [0.0, 0.5]}, r"each in \(0, 1\)"),
        ("depletion:GP", {"values": [1.0]}, r"each in \(0, 1\)"),
        ("cvar_scale", {"values": [-1.0]}, "multipliers >= 0"),
        ("mobilization", {"values": [np.nan]}, "finite numbers"),
        ("cvar_scale", {"points": 0}, "points must be an integer >= 1"),
        ("cvar_scale", {"method": "fast"}, "method must be one of auto, lp, cutting_plane"),
        ("cvar_scale", {"backend": "mpi"}, "backend must be one of loky, threading, dask"),
        ("cvar_scale", {"n_jobs": 0}, "n_jobs must be a positive integer or -1"),
        ("cvar_scale", {"scheduler": "tcp://x:1"}, "needs backend='dask'"),
        ("cvar_scale", {"solver": "GUROBI"}, "solver must be one of HIGHS, CLARABEL"),
    ],
)
def test_bad_arguments_are_refused_naming_the_choices(small, sweep, kwargs, needle):
    case, scen = small
    with pytest.raises(ValueError, match=needle):
        frontier(case, scen, sweep, **kwargs)


@pytest.mark.parametrize("scheduler", [None, "tcp://127.0.0.1:9"])
def test_dask_without_dask_distributed_says_what_to_install(small, monkeypatch, scheduler):
    from models.errors import SimulationError

    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    case, scen = small
    with pytest.raises(SimulationError, match=r"needs dask.distributed: pip install") as info:
        frontier(case, scen, values=[0.5, 1.0], n_jobs=2, backend="dask", scheduler=scheduler)
    assert isinstance(info.value, ValueError)  # bad input: the CLI exits 2


def test_sweeps_a_case_lacks_are_refused(covered, small):
    case, scen = covered
    with pytest.raises(ScenarioMismatch, match="re-simulate the scenarios for this case"):
        frontier(case, small[1], "amount:public")
    with pytest.raises(ValueError, match="unknown source 'NOPE'"):
        case_at(case, "amount:NOPE", 1.0)
    with pytest.raises(ValueError, match="no climate source"):
        frontier(case, scen, "amount:climate")
    with pytest.raises(ValueError, match="no source of case 'covered' has a CVaR limit"):
        frontier(case, scen, "cvar_scale")


def test_the_command_writes_csv_and_json(tmp_path, write_case, minimal_case_dict, capsys):
    import json

    path = write_case(minimal_case_dict)
    out = tmp_path / "front"
    argv = ["frontier", str(path), "-n", "200", "--sweep", "amount:climate", "--points", "3",
            "--cvar-method", "lp", "--jobs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(out / "frontier.csv")
    assert list(table["value"]) == [0.0, 1.0, 2.0]
    meta = json.loads((out / "frontier.json").read_text())
    assert meta["frontier"]["method"] == "lp" and meta["n_scenarios"] == 200
    assert "frontier.csv, frontier.json" in capsys.readouterr().out
    assert main([*argv[:5], "depletion:NOPE", *argv[6:]]) == 2
    assert "choose from G1" in capsys.readouterr().err


@pytest.mark.slow
def test_default_case_frontier_matches_fresh_optimize():
    from models import load_case, simulate

    case = load_case()
    scen = simulate(case, 1_000, seed=7)
    values = [0.0, 1.0, 2.0]
    front = frontier(case, scen, "amount:climate", values=values, method="lp")
    gaps = front.table["weighted_gap_usd"].to_numpy()
    assert (front.table["status"] == "optimal").all() and front.compiled_once
    assert np.all(np.diff(gaps) <= 1.0) and gaps[0] > gaps[-1]
    assert _fresh_gap(case, scen, "amount:climate", 2.0) == pytest.approx(gaps[2], rel=REL)


@pytest.mark.parametrize("points", [1, 2, 6, 7])
def test_default_values_always_hold_the_case_itself(small, points):
    from optimizer.analysis.frontier import with_own_setting
    from optimizer.analysis.frontier_spec import default_values, parse_sweep

    case, scen = small
    for sweep in ("cvar_scale", "mobilization", "deforestation_priority"):
        spec = parse_sweep(case, scen, sweep)
        values = with_own_setting(default_values(spec, points), spec.base)
        assert len(values) == points and spec.base in values.tolist(), sweep
        assert (np.diff(values) > 0).all(), sweep
        # only the point nearest to the case's setting moved
        assert (values != default_values(spec, points)).sum() <= 1, sweep
    front = frontier(case, scen, "cvar_scale", points=points, method="lp")
    own = front.table.loc[front.table["value"] == 1.0, "weighted_gap_usd"]
    from optimizer.solve import optimize

    base = optimize(case, scen, method="lp")
    assert float(own.iloc[0]) == pytest.approx(base.objective_weighted_gap_usd, rel=1e-6)
