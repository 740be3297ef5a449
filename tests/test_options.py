"""One check per kind of option: a choice among an enum's values, in one sentence per layer."""

from __future__ import annotations

import pytest
from optimizer_cases import random_case, synthetic_scenarios

from models.errors import OptionError, SimulationOptionError
from models.options import check_choice
from models.workers import Backend
from optimizer import optimize
from optimizer.choices import CvarMethod, Solver
from optimizer.solve_stage import SOLVERS, fallback_order


def test_a_valid_choice_comes_back_as_the_member():
    assert check_choice("dask", Backend, "backend") is Backend.dask
    assert check_choice(CvarMethod.lp, CvarMethod, "method") is CvarMethod.lp


def test_an_argument_and_a_flag_are_refused_in_their_own_words():
    with pytest.raises(
        OptionError, match=r"^method must be one of auto, lp, cutting_plane, got 'x'$"
    ):
        check_choice("x", CvarMethod, "method")
    with pytest.raises(
        OptionError, match=r"^--cvar-method 'x': choose from auto, lp, cutting_plane$"
    ):
        check_choice("x", CvarMethod, "--cvar-method")
    with pytest.raises(SimulationOptionError) as info:  # the caller's own kind of error
        check_choice("y" * 500, Backend, "backend", SimulationOptionError)
    assert len(str(info.value)) < 120  # the value shown is cut at 60 characters


def test_the_solvers_and_their_fallback_order_come_from_one_enum():
    assert SOLVERS == tuple(s.value for s in Solver) == ("HIGHS", "CLARABEL")
    assert fallback_order("CLARABEL") == ["CLARABEL", "HIGHS"]
    assert fallback_order("HIGHS") == ["HIGHS", "CLARABEL"]


def test_optimize_refuses_a_method_or_solver_outside_the_vocabulary():
    case = random_case(1)
    scen = synthetic_scenarios(case, 200, 1)
    with pytest.raises(OptionError, match="method must be one of auto, lp, cutting_plane"):
        optimize(case, scen, method="fast")
    with pytest.raises(OptionError, match="solver must be one of HIGHS, CLARABEL, got 'GUROBI'"):
        optimize(case, scen, solver="gurobi")
    assert optimize(case, scen, method=CvarMethod.lp, solver=Solver.HIGHS).method == "lp"


def test_a_sweep_kind_and_a_point_status_are_one_vocabulary():
    from optimizer.analysis.frontier_spec import sweep_kind
    from optimizer.choices import FAILED_STATUSES, PointStatus, SweepKind

    assert sweep_kind("depletion:GP") is SweepKind.depletion
    assert sweep_kind("cvar_scale") == "cvar_scale"  # a str to files and tables
    with pytest.raises(OptionError, match="sweep must be one of cvar_scale"):
        sweep_kind("risk")
    assert FAILED_STATUSES == ("infeasible", "failed")
    assert {s.value for s in PointStatus} >= {"optimal", "invalid", *FAILED_STATUSES}
