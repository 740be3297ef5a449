"""The simulation recipe and the one headline sequence ``optimize`` and ``run`` share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from optimizer_cases import random_case
from test_optimizer_diagnose import broken

from models import Recipe, load_case, simulate
from models.errors import SimulationOptionError
from optimizer import InfeasibleCase
from optimizer.door.cli import main
from optimizer.door.pipeline import check_out_of_sample, solve_headline
from optimizer.door.run import run_case


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"n_scenarios": 0}, "n_scenarios must be in [1,"),
        ({"n_scenarios": 2.5}, "n_scenarios must be an integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"sampling": "bogus"}, "method must be one of mc, antithetic, sobol, importance"),
        ({"dtype": "float16"}, "dtype must be float64 or float32, got float16"),
        ({"dtype": "bogus"}, "dtype must be float64 or float32, got 'bogus'"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_a_bad_recipe_is_refused_whole_before_anything_is_drawn(fields, named):
    with pytest.raises(SimulationOptionError) as info:
        Recipe(**fields)
    assert named in str(info.value)


def test_a_recipe_is_frozen_and_draws_what_simulate_draws_bit_for_bit():
    case = load_case()
    recipe = Recipe(800, 11, "importance", "float32")
    assert recipe.backend == "loky" and Recipe(scheduler="tcp://h:1").backend == "dask"
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 12
    drawn = recipe.draw(case)
    direct = simulate(case, 800, seed=11, method="importance", dtype="float32")
    assert drawn.losses.dtype == np.float32
    assert np.array_equal(drawn.losses, direct.losses)
    assert np.array_equal(drawn.probabilities, direct.probabilities)
    other = recipe.draw(case, 5)  # another seed, every other setting the same
    again = simulate(case, 800, seed=16, method="importance", dtype="float32")
    assert np.array_equal(other.losses, again.losses)


def test_the_headline_sequence_names_its_steps_and_checks_on_an_independent_set():
    case = load_case()
    recipe = Recipe(1500, 3)
    steps = []

    def step(name, work):
        steps.append(name)
        return work()

    head = solve_headline(case, recipe, 0.95, marginal=False, step=step)
    oos = check_out_of_sample(case, recipe, head.allocation, step)
    assert steps == [
        "simulate",
        "simulate validation",
        "optimize",
        "simulate out of sample",
        "evaluate out of sample",
    ]
    assert head.scenarios.n_scenarios == oos.n_scenarios == 1500
    assert head.scenarios.fingerprint == recipe.draw(case).fingerprint
    # held at a confidence: the limits the allocation meets are the case's less their margins
    assert head.held != case
    assert head.allocation == solve_headline(case, recipe, 0.95, marginal=False).allocation


def test_run_diagnoses_an_infeasible_case_as_optimize_does():
    bad = broken(random_case(3), PUB={"amount_usd": -3e6})
    for solve in (
        lambda: solve_headline(bad, Recipe(400, 1), 0.0, marginal=False),
        lambda: run_case(bad, Recipe(400, 1), stresses=[], confidence=0.0, replications=0),
    ):
        with pytest.raises(InfeasibleCase) as info:
            solve()
        diagnosis = info.value.diagnosis
        assert diagnosis is not None and not diagnosis.feasible
        assert diagnosis.messages[0].startswith("PUB needs US$3.00m more money")


def test_optimize_and_run_write_the_same_allocation_from_the_same_options(tmp_path):
    # the marginal values re-solve after the allocation is chosen (the run tests cover them)
    options = ["-n", "1500", "--seed", "4", "--replications", "0", "--no-marginal"]
    assert main(["optimize", *options, "--out", str(tmp_path / "o")]) == 0
    assert main(["run", *options, "--format", "html", "--out", str(tmp_path / "r")]) == 0
    optimized = (tmp_path / "o" / "allocation.csv").read_bytes()
    assert optimized == (tmp_path / "r" / "allocation.csv").read_bytes()
