"""Issue #14 item 4: a scenario count that does not fit in memory is refused before allocating.

``simulate`` estimates its peak from the loss matrix, the factors, events and weights and the
chunk buffers (:func:`models.simulate.simulation_bytes`), and compares it with the memory
available (``/proc/meminfo``, cgroup, ``RLIMIT_AS``; ``PPCFIN_MEMORY_LIMIT_BYTES`` overrides).
Nothing big is ever allocated here: the limit comes from the environment variable.
"""

from __future__ import annotations

import importlib
import re
import resource
import tracemalloc

import numpy as np
import pytest

from models import load_case
from models.errors import SimulationError
from models.loss_model import build_loss_model
from models.simulate import (
    CHUNK_SCENARIOS,
    MEMORY_LIMIT_ENV,
    available_memory_bytes,
    simulate,
    simulation_bytes,
)
from optimizer.door.cli import main

memory = importlib.import_module("models.memory")  # where the machine's memory is read
LIMIT = 21_300_000_000
"""The 21.3 GB of the issue's machine."""


@pytest.fixture(scope="module")
def default_dims():
    model = build_loss_model(load_case())
    return model.n_cells, model.n_factors, model.n_events, model.n_products


def _at_most(message: str) -> int:
    return int(re.search(r"at most ~([\d,]+)", message).group(1).replace(",", ""))


def test_fifty_million_scenarios_are_refused_before_allocating(monkeypatch, capsys, default_dims):
    # the defect: `ppcfin simulate -n 50000000` allocated until the kernel killed it
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(LIMIT))
    tracemalloc.start()
    try:
        code = main(["simulate", "-n", "50000000"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    n_cells, n_factors, n_events, n_products = default_dims
    need = simulation_bytes(50_000_000, n_cells, n_factors, n_events, np.float64, 1, n_products)
    assert need >= 50_000_000 * n_cells * 8  # at least the loss matrix itself
    assert f"50,000,000 scenarios x {n_cells} cells need about {need / 1e9:,.1f} GB" in err
    assert "(float64); this machine has 21.3 GB available" in err
    assert "--float32" in err
    at_most = _at_most(err)
    fits = simulation_bytes(at_most, n_cells, n_factors, n_events, np.float64, 1, n_products)
    assert fits <= LIMIT
    assert simulation_bytes(int(at_most * 1.12), n_cells, n_factors, n_events) > LIMIT
    assert peak < 100e6, "nothing of the 53 GB was allocated"


def test_optimize_is_refused_the_same_way_and_writes_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(LIMIT))
    out = tmp_path / "opt"
    assert main(["optimize", "-n", "50000000", "--out", str(out)]) == 2
    assert "scenarios x 119 cells need about" in capsys.readouterr().err
    assert not out.exists()


def test_float32_halves_the_need_and_is_not_suggested_again(monkeypatch, default_dims):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(LIMIT))
    with pytest.raises(SimulationError, match=r"\(float32\); this machine has") as info:
        simulate(load_case(), 50_000_000, dtype=np.float32)
    assert "--float32" not in str(info.value)
    n_cells, n_factors, n_events, _ = default_dims
    f64 = simulation_bytes(10**7, n_cells, n_factors, n_events, np.float64)
    f32 = simulation_bytes(10**7, n_cells, n_factors, n_events, np.float32)
    assert f64 - f32 >= 10**7 * n_cells * 4  # the loss matrix, in half the bytes


def test_a_set_that_fits_is_simulated(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(LIMIT))
    assert simulate(load_case(), 200, seed=1).n_scenarios == 200


def test_no_memory_at_all_says_to_free_some(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1000")
    with pytest.raises(SimulationError, match=r"this machine has 0\.0 GB available: free memory"):
        simulate(load_case(), 100)


@pytest.mark.parametrize(("method", "dtype"), [("mc", np.float64), ("sobol", np.float32)])
def test_the_estimate_bounds_the_measured_peak_closely(monkeypatch, method, dtype, default_dims):
    # honest both ways: never below what the simulator allocates, at most 35 % above it
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    n = 3 * CHUNK_SCENARIOS
    tracemalloc.start()
    try:
        scen = simulate(load_case(), n, seed=2, method=method, dtype=dtype)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_cells, n_factors, n_events, n_products = default_dims
    assert scen.losses.nbytes == n * n_cells * np.dtype(dtype).itemsize
    estimate = simulation_bytes(n, n_cells, n_factors, n_events, dtype, 1, n_products)
    assert peak <= estimate <= 1.35 * peak


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5e9", ""])
def test_a_bad_override_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, value)
    with pytest.raises(SimulationError, match=rf"{MEMORY_LIMIT_ENV}=.*positive number of bytes"):
        available_memory_bytes()


def test_available_memory_is_the_least_of_meminfo_cgroup_and_rlimit(monkeypatch, tmp_path):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    limit, used = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text("max\n")
    used.write_text("123\n")
    monkeypatch.setattr(memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(memory, "CGROUP_MEMORY", (str(limit), str(used)))
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert available_memory_bytes() == 20_000_000 * 1024
    limit.write_text("8000000000\n")  # a container holding the process to 8 GB
    assert available_memory_bytes() == 8_000_000_000 - 123
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1_000_000_000, 1_000_000_000))
    assert 0 <= available_memory_bytes() < 1_000_000_000  # minus the address space in use
    meminfo.write_text("no such line\n")
    limit.write_text("max\n")
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert available_memory_bytes() == memory._meminfo_available() > 0  # os.sysconf's figure
