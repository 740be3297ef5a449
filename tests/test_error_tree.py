"""One error tree: every error ppcfin raises on purpose is a PpcfinError in one branch, with
the exit code the command line gives it; anything else is reported as a bug, its traceback
in a log file, never on the screen."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import (
    CaseError,
    CaseProblem,
    ComputationError,
    InputError,
    OptionError,
    OutputError,
    PpcfinError,
    SimulationError,
)
from models.options import check_n_jobs
from models.workers import WorkersLost
from optimizer.door.cli import main
from optimizer.door.cli_errors import LOG_DIR_ENV
from optimizer.door.outputs import OutputRefused
from optimizer.errors import InfeasibleCase, OptimizerError, ScenarioMismatch, SolverFailure

PACKAGES = ("models", "optimizer", "reports")
BRANCHES = (InputError, ComputationError, OutputError)
FAMILIES = (SimulationError, OptimizerError)
"""Layer families: group errors by the layer raising them; their members are in a branch."""
NOT_IN_THE_TREE = {
    # control flow inside optimizer.formulation.portfolio: always caught there and turned into an
    # OptionError naming the caps; never leaves the module
    "optimizer.formulation.portfolio_dual._NoPortfolio",
}
EXIT_CODES = {
    "models.errors.PpcfinError": 1,
    "models.errors.InputError": 2,
    "models.errors.OptionError": 2,
    "models.errors.ComputationError": 1,
    "models.errors.OutputError": 1,
    "models.errors.CaseError": 2,
    "models.errors.SimulationError": 2,
    "models.errors.SimulationOptionError": 2,
    "models.errors.ScenarioFileError": 2,
    "models.crosscheck.CrossFieldProblems": 2,
    "models.file_io.ReadProblem": 2,
    "models.workers.WorkersLost": 1,
    "optimizer.errors.OptimizerError": 2,
    "optimizer.errors.ScenarioMismatch": 2,
    "optimizer.errors.InfeasibleCase": 2,
    "optimizer.errors.SolverFailure": 1,
    "optimizer.analysis.confidence.ConfidenceInfeasible": 2,
    "optimizer.analysis.diagnose.RelaxationNotMappable": 2,
    "optimizer.door.outputs.OutputRefused": 2,
    "optimizer.persist.SavedRunError": 2,
    "optimizer.analysis.sensitivity_inputs.InvalidPerturbation": 2,
    "models.case_edit.InvalidEdit": 2,
}
"""Every error class and its exit code, as the command line has always given them."""


def _error_classes() -> dict[str, type[BaseException]]:
    found = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):  # rooms too
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                ):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


ERRORS = _error_classes()


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    modules = {name.split(".")[0] for name in ERRORS}
    assert {"models", "optimizer"} <= modules
    assert "models.errors.CaseError" in ERRORS and "optimizer.door.outputs.OutputRefused" in ERRORS


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_error_class_descends_from_the_root(name: str) -> None:
    if name in NOT_IN_THE_TREE:
        assert not issubclass(ERRORS[name], PpcfinError)
        return
    assert issubclass(ERRORS[name], PpcfinError), f"{name} is not a PpcfinError"


@pytest.mark.parametrize("name", sorted(set(ERRORS) - NOT_IN_THE_TREE))
def test_every_error_is_in_one_branch_with_its_exit_code(name: str) -> None:
    cls = ERRORS[name]
    branches = [b for b in BRANCHES if issubclass(cls, b)]
    if cls is PpcfinError or cls in FAMILIES:
        assert branches == []
    else:
        assert len(branches) == 1, f"{name} is in {branches}"
    assert cls.exit_code == EXIT_CODES[name]


def test_the_python_api_still_raises_what_it_documented() -> None:
    assert issubclass(OptionError, ValueError)
    assert issubclass(CaseError, ValueError) and issubclass(SimulationError, ValueError)
    assert issubclass(WorkersLost, SimulationError) and issubclass(WorkersLost, ComputationError)
    assert issubclass(ScenarioMismatch, ValueError) and issubclass(ScenarioMismatch, InputError)
    assert issubclass(SolverFailure, RuntimeError) and issubclass(InfeasibleCase, OptimizerError)


@pytest.mark.parametrize("value", [1, 4, -1, np.int64(2)])
def test_check_n_jobs_accepts_a_positive_integer_or_minus_one(value) -> None:
    assert check_n_jobs(value) == int(value) and type(check_n_jobs(value)) is int


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2", None])
def test_check_n_jobs_refuses_anything_else(value) -> None:
    with pytest.raises(OptionError, match=re.escape(f"got {value!r}")) as info:
        check_n_jobs(value)
    assert str(info.value).startswith("n_jobs must be a positive integer or -1 (all cores)")


def _one_of_each_branch() -> list:
    case_error = CaseError([CaseProblem("my.yaml", "sources[A].amount_usd", "-5", "must be >= 0")])
    margins = pd.DataFrame({"owner": ["PRIV"], "what": ["CVaR"], "margin_usd": [1e6]})
    from optimizer.analysis.confidence import ConfidenceInfeasible

    return [
        (case_error, 2, "The case cannot be used: 1 problem(s)."),
        (OptionError("points must be an integer >= 1, got 0"), 2, "Error: points must be"),
        (ScenarioMismatch("the scenario set has other cells"), 2, "Error: the scenario set"),
        (InfeasibleCase("demo", 1, "HIGHS"), 2, "Error: case 'demo' is infeasible at stage 1"),
        (ConfidenceInfeasible("demo", 0.95, margins, ""), 2, "Error: case 'demo' is feasible"),
        (SolverFailure("HIGHS", "user_limit", 1, "raise the time limit"), 1, "Error: HIGHS"),
        (WorkersLost("workers kept dying"), 1, "Error: workers kept dying"),
        (OutputRefused("out holds files"), 2, "Error: out holds files. Nothing was written."),
        (OutputError("cannot write out"), 1, "earlier outputs are left as they were."),
    ]


BRANCH_CASES = _one_of_each_branch()


@pytest.mark.parametrize(
    ("error", "code", "shown"), BRANCH_CASES, ids=[type(c[0]).__name__ for c in BRANCH_CASES]
)
def test_the_cli_gives_each_branch_its_exit_code(error, code, shown, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("optimizer.door.cli_views.print_case_summary", fail)
    assert main(["validate"]) == code
    err = capsys.readouterr().err
    assert shown in err
    assert "Traceback" not in err and "internal error" not in err


def test_a_bug_is_one_line_and_its_traceback_goes_to_a_log_file(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    def bug(*args, **kwargs):
        return {}["missing"]

    monkeypatch.setattr("optimizer.door.cli_views.print_case_summary", bug)
    logs = tmp_path / "logs"
    monkeypatch.setenv(LOG_DIR_ENV, str(logs))
    assert main(["validate"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    (log,) = logs.iterdir()
    assert lines[0] == f"internal error: KeyError: 'missing' (a bug; details in {log})"
    assert "Traceback" not in captured.err + captured.out
    text = log.read_text()
    assert text.startswith("ppcfin validate\n")
    assert "Traceback (most recent call last)" in text and "KeyError: 'missing'" in text
    assert "in bug" in text  # the frame that raised it
    assert log.stat().st_mode & 0o077 == 0  # the traceback may name the user's files


def test_a_bug_whose_log_cannot_be_written_still_says_so_in_one_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    def bug(*args, **kwargs):
        raise KeyError("missing")

    monkeypatch.setattr("optimizer.door.cli_views.print_case_summary", bug)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(LOG_DIR_ENV, str(blocked / "logs"))
    assert main(["validate"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("internal error: KeyError: 'missing' (a bug; its traceback could not")


def test_a_bare_value_error_is_a_bug_not_bad_input(tmp_path: Path, monkeypatch, capsys) -> None:
    def bug(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("optimizer.door.cli_views.print_case_summary", bug)
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    assert main(["validate"]) == 1
    assert capsys.readouterr().err.startswith("internal error: ValueError: operands")
