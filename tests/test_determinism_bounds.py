"""Issue #14, "do no harm": the same numbers for any n_jobs, and absurd inputs refused cleanly.

1. A sensitivity point or a frontier block used to carry the BLAS thread count of the process
   it ran in (all cores in this one, ``cores / n_jobs`` in a loky worker): some products split
   their sums between threads, so the tables differed in the last digits between ``n_jobs=1``
   and ``n_jobs=2`` (on the default case's cutting plane, 6,000 scenarios). Each now runs on one
   BLAS thread. The ``n_jobs=1`` arm runs under four BLAS threads, as on a bigger machine, so
   the test reproduces the defect on any machine.
2. ``max_depletion_probability: 1e-300`` gave cvxpy's "Cannot unpack invalid solution" (the
   tail factor 1/ε = 1e300). An ε below the smallest scenario probability is now solved as that
   probability (the worst scenario, which it is on these scenarios), with a warning; one too
   small for ``1 − ε`` to be a level is refused naming the fund, the value and what is valid.
3. ``frontier --points 100000000`` started work it could never finish, and a sensitivity shock
   of 0 or 1 was taken: both are refused up front.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml
from optimizer_cases import random_case, synthetic_scenarios
from threadpoolctl import threadpool_limits

from models import load_case, simulate
from optimizer.analysis.frontier import MAX_FRONTIER_POINTS, frontier
from optimizer.analysis.sensitivity_analysis import sensitivity
from optimizer.door.cli import main
from optimizer.formulation.problem import depletion_floor
from optimizer.solve import MIN_DEPLETION_PROBABILITY, optimize

CUT_SCENARIOS = 6_000
"""Above ``AUTO_CUTS_ABOVE_SCENARIOS``: the cutting plane, where the digits used to differ."""


def _figures(front) -> pd.DataFrame:
    return front.table.drop(columns="seconds")


def test_sensitivity_and_frontier_tables_are_bit_identical_for_any_n_jobs():
    case = load_case()
    kwargs = {"n_scenarios": CUT_SCENARIOS, "seed": 7, "inputs": ["pd"]}
    with threadpool_limits(limits=4, user_api="blas"):  # a parent with more threads than a worker
        one = sensitivity(case, n_jobs=1, **kwargs)
    two = sensitivity(case, n_jobs=2, **kwargs)
    pd.testing.assert_frame_equal(one.table, two.table, check_exact=True)
    assert one.base_weighted_gap_usd == two.base_weighted_gap_usd
    assert (one.table["status"] == "optimal").all()

    scen = simulate(case, CUT_SCENARIOS, seed=7)
    sweep = {"sweep": "amount:private", "values": [0.5, 1.5]}
    with threadpool_limits(limits=4, user_api="blas"):
        alone = frontier(case, scen, **sweep)
    assert alone.method == "cutting_plane"
    for backend in ("loky", "threading"):
        split = frontier(case, scen, **sweep, n_jobs=2, backend=backend)
        assert split.workers == 2
        pd.testing.assert_frame_equal(_figures(alone), _figures(split), check_exact=True)


def _case_with_depletion(inputs_copy, eps: float):
    """The shipped case with fund G_PUB's allowed depletion probability set to ``eps``."""
    path = inputs_copy / "peru_amazon.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    fund = next(f for f in raw["funds"] if f["id"] == "G_PUB")
    fund["max_depletion_probability"] = eps
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_a_depletion_probability_the_scenarios_cannot_measure_is_handled_not_crashed(
    inputs_copy, tmp_path, capsys
):
    n = 300
    # 1e-300: 1 − ε is 1, no level at all: refused at the optimizer's door, naming what to set
    path = _case_with_depletion(inputs_copy, 1e-300)
    tiny = load_case(path)
    scen = simulate(tiny, n, seed=7)
    with pytest.raises(ValueError, match=r"fund G_PUB: max_depletion_probability = 1e-300"):
        optimize(tiny, scen)
    out = tmp_path / "o"
    assert main(["optimize", str(path), "-n", str(n), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "G_PUB" in err and f"between {MIN_DEPLETION_PROBABILITY:g} and 0.5" in err
    assert "Traceback" not in err and "unpack" not in err and not out.exists()

    # 1e-9 < 1/300: the worst scenario, on purpose and said so; the same LP as ε = 1/300
    floor = depletion_floor(scen.probabilities)
    assert floor == pytest.approx(1 / n, rel=1e-12)
    small = load_case(_case_with_depletion(inputs_copy, 1e-9))
    res = optimize(small, scen)
    at_floor = optimize(load_case(_case_with_depletion(inputs_copy, floor)), scen)
    assert res.status == "optimal"
    assert res.objective_weighted_gap_usd == at_floor.objective_weighted_gap_usd
    assert len(res.warnings) == 1
    assert res.warnings[0].startswith("fund G_PUB: max_depletion_probability 1e-09 is below")
    assert "worst scenario" in res.warnings[0]
    assert at_floor.warnings == ()
    # recomputed from the allocation: every scenario's claims on G_PUB within its capital
    fund = res.funds.set_index("fund").loc["G_PUB"]
    assert fund["claims_cvar_usd"] <= fund["capital_usd"] * (1 + 1e-6) + 1.0
    assert fund["depletion_probability"] == 0.0
    assert main(["optimize", str(inputs_copy / "peru_amazon.yaml"), "-n", str(n),
                 "--out", str(tmp_path / "o2")]) == 0  # fmt: skip
    assert "Traceback" not in capsys.readouterr().err


def test_absurd_sizes_and_shocks_are_refused_up_front(tmp_path, capsys):
    case = random_case(2)
    scen = synthetic_scenarios(case, 100, 2)
    for points, needle in ((100_000_000, "100,000,000"), (MAX_FRONTIER_POINTS + 1, "1,001")):
        start = time.perf_counter()
        with pytest.raises(ValueError, match=f"points = {needle} .*at most 1,000"):
            frontier(case, scen, "cvar_scale", points=points)
        assert time.perf_counter() - start < 1.0  # refused, not started
    for points in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="points must be an integer >= 1"):
            frontier(case, scen, "cvar_scale", points=points)
    with pytest.raises(ValueError, match="values holds 1,001 points"):
        frontier(case, scen, "cvar_scale", values=np.linspace(0.5, 2, MAX_FRONTIER_POINTS + 1))
    # a billion workers for two points: two blocks, not a billion empty ones
    many = frontier(case, scen, "cvar_scale", values=[0.5, 1.0], n_jobs=10**9, backend="threading")
    assert many.workers == 2 and len(many.table) == 2

    out = tmp_path / "f"
    assert main(["frontier", "-n", "50", "--points", "100000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "100,000,000" in err and "1,000" in err and "Traceback" not in err
    assert not out.exists()

    for shock in (0.0, 1.0, 1.5, -0.2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"shock must be a number in \(0, 1\)"):
            sensitivity(case, 100, shock=shock)
    assert main(["sensitivity", "-n", "50", "--shock", "0", "--out", str(out)]) == 2
    assert "shock must be a number in (0, 1) (0.2 = ±20 %), got 0.0" in capsys.readouterr().err
    assert not out.exists()
