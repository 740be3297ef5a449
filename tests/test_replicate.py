"""The headline's error bar: replications of the whole optimisation (optimizer.analysis.replicate)."""

from __future__ import annotations

import json

import pytest
from optimizer_cases import random_case

from optimizer.analysis.replicate import advised_scenarios, replicate, replication_seeds
from optimizer.door.cli import main
from optimizer.result import Allocation


def test_replication_seeds_are_spawned_from_the_seed_reproducibly():
    seeds = replication_seeds(7, 4)
    assert seeds == replication_seeds(7, 4) and len(set(seeds)) == 4
    assert seeds[:2] == replication_seeds(7, 2)  # spawning more keeps the first ones
    assert not set(seeds) & set(replication_seeds(8, 4))
    assert all(0 <= s < 2**32 for s in seeds)


def test_the_advice_scales_the_scenarios_by_the_squared_relative_error():
    # SE 5 on a mean of 100 at 10,000 scenarios; 1 % needs (5 / 1)^2 = 25 times as many
    assert advised_scenarios(10_000, 100.0, 5.0, 0.01) == 250_000
    assert advised_scenarios(10_000, 100.0, 0.5, 0.01) == 3_000  # 2,500 up to the 1,000
    assert advised_scenarios(10_000, 100.0, 0.0, 0.01) == 1_000
    assert advised_scenarios(10_000, 0.0, 3.0, 0.01) == 10_000  # nothing closed: unchanged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replications": 1}, "replications must be between 2"),
        ({"replications": True}, "replications must be between 2"),
        ({"target_relative_se": 0.0}, "target_relative_se must be in"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs, message):
    args = {"replications": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        replicate(random_case(5), 100, 1, **args)


def test_same_numbers_for_one_and_two_workers():
    case = random_case(5)
    one = replicate(case, 300, 11, 2, confidence=0, n_jobs=1)
    two = replicate(case, 300, 11, 2, confidence=0, n_jobs=2)
    assert one.table.equals(two.table)
    assert (one.gap_closed_usd, one.gap_closed_se_usd) == (
        two.gap_closed_usd,
        two.gap_closed_se_usd,
    )
    assert list(one.table["seed"]) == replication_seeds(11, 2)
    assert (one.table["status"] == "optimal").all() and one.solved == 2
    assert one.gap_closed_se_usd > 0  # two scenario sets, two optima
    assert "(2 replications of 300 scenarios)" in one.headline()


@pytest.mark.slow
def test_the_error_bar_shrinks_like_one_over_root_n():
    """Four times the scenarios, half the spread of the optimum (within sampling error of
    two standard deviations over 20 replications each, about ±25 %)."""
    case = random_case(5)
    small = replicate(case, 1_000, 3, 20, confidence=0)
    large = replicate(case, 4_000, 3, 20, confidence=0)
    ratio = small.gap_closed_se_usd / large.gap_closed_se_usd
    assert 1.4 <= ratio <= 2.9, ratio
    w_ratio = small.weighted_gap_closed_se_usd / large.weighted_gap_closed_se_usd
    assert 1.4 <= w_ratio <= 2.9, w_ratio
    # the means agree within their errors: more scenarios move the estimate, not the target
    diff = abs(small.gap_closed_usd - large.gap_closed_usd)
    assert diff <= 3 * (small.mean_se_usd**2 + large.mean_se_usd**2) ** 0.5
    # the advice is the same target whichever size it is read from (within sampling error)
    assert 0.5 <= small.advised_n_scenarios / large.advised_n_scenarios <= 2.0


def test_optimize_command_prints_margins_and_the_error_bar(
    tmp_path, capsys, minimal_case_dict, write_case
):
    out = tmp_path / "opt"
    case_file = write_case(minimal_case_dict)
    code = main(["optimize", str(case_file), "-n", "300", "--confidence", "0.9",
                 "--replications", "2", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Limits held at 90% confidence" in printed
    assert "(2 replications of 300 scenarios)" in printed and "scenarios (weighted gap:" in printed
    result = Allocation.from_json((out / "result.json").read_text())
    assert result.confidence is not None and result.confidence.confidence == 0.9
    reps = json.loads((out / "replications.json").read_text())
    assert reps["replications"] == 2 and reps["confidence"] == 0.9
    assert (out / "replications.csv").read_text().startswith("replication,seed,")


@pytest.mark.parametrize(
    ("flag", "message"),
    [(["--confidence", "1.5"], "confidence must be 0"), (["--replications", "1"], "at least 2")],
)
def test_optimize_command_refuses_bad_flags_before_simulating(tmp_path, capsys, flag, message):
    assert main(["optimize", "-n", "300", *flag, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
