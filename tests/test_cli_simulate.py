"""``ppcfin simulate``: the table it prints, the file it writes, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from models import ScenarioSet, load_case, simulate
from models.book import book_loss_table, reference_book_weights
from optimizer.door.cli import main


def test_simulate_prints_book_losses_and_writes_a_loadable_file(tmp_path, capsys) -> None:
    out = tmp_path / "scen.npz"
    code = main(["simulate", "-n", "4000", "--seed", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "whole book" in printed and "coffee" in printed and "99.5" in printed
    scen = ScenarioSet.load(out)
    again = simulate(load_case(), 4000, seed=3)
    assert np.array_equal(scen.losses, again.losses)
    assert not list(tmp_path.glob(".*tmp"))


def test_book_table_whole_book_equals_exposure_weighted_mean() -> None:
    case = load_case()
    scen = simulate(case, 3000, seed=11)
    table = book_loss_table(case, scen)
    weights = reference_book_weights(case, scen.cells)
    assert weights.sum() == pytest.approx(1.0)
    expected = float(scen.probabilities @ (scen.losses @ weights))
    assert table.loc["whole book", "el_rate"] == pytest.approx(expected, rel=1e-12)
    assert table.loc["whole book", "exposure_usd"] == pytest.approx(case.total_gap_usd)
    # tail measures are ordered: EL <= VaR95 <= CVaR95 <= CVaR99 <= CVaR99.5
    row = table.loc["whole book"]
    assert row.el_rate <= row["var_0.95"] <= row["cvar_0.95"] <= row["cvar_0.99"]
    assert row["cvar_0.99"] <= row["cvar_0.995"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-n", "0"], "n_scenarios must be in"),
        (["--sampling", "montecarlo"], "--sampling 'montecarlo': choose from"),
        (["--seed", "-1"], "seed must be a non-negative integer"),
        (["--out", "scen.csv"], "must end in .npz or .parquet"),
    ],
)
def test_simulate_bad_arguments_exit_2_with_a_message(args, needle, capsys) -> None:
    code = main(["simulate", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_simulate_unwritable_output_exits_1_and_keeps_nothing(tmp_path, capsys) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("x")
    code = main(["simulate", "-n", "500", "--out", str(blocked / "scen.npz")])
    assert code == 1
    assert "cannot write" in capsys.readouterr().err
