"""Tests of ScenarioSet files: .npz / .parquet round trips, truncated files, other format
versions, unknown suffixes and atomic saves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sim_cases import event, make_case, product

import models.scenarios as scenarios_module
from models import load_case
from models.errors import ScenarioFileError
from models.scenarios import FORMAT_VERSION, ScenarioSet
from models.simulate import simulate

SUFFIXES = [".npz", ".parquet"]


def small_set(method: str = "mc", dtype: type = np.float64, n: int = 600, seed: int = 3):
    """Two chains x two regions x two products, two events: 8 cells with events and factors."""
    case = make_case(
        regions=("R1", "R2"),
        chains=("C1", "C2"),
        products=[product("P1", lgd_sd=0.2), product("P2", pd=0.02, state_run=True)],
        events=[
            event("drought", 0.2, pd_multiplier=2.0, chains=["C1"]),
            event("failure", 0.1, lgd_add=0.1, state_run_only=True),
        ],
        lgd_gamma=0.2,
    )
    return simulate(case, n, seed=seed, method=method, dtype=dtype)


def assert_sets_equal(a: ScenarioSet, b: ScenarioSet) -> None:
    for name in ("losses", "probabilities", "factors", "events"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    assert a.factor_names == b.factor_names
    assert a.event_ids == b.event_ids
    assert a.seed == b.seed
    assert a.method == b.method
    assert a.metadata == b.metadata


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    ("method", "dtype"), [("mc", np.float64), ("importance", np.float64), ("sobol", np.float32)]
)
def test_round_trip(tmp_path: Path, suffix: str, method: str, dtype: type) -> None:
    scen = small_set(method, dtype)
    path = tmp_path / f"scen{suffix}"
    assert scen.save(path) == path
    back = ScenarioSet.load(path)
    assert_sets_equal(scen, back)
    assert back.losses.dtype == np.dtype(dtype)
    assert back.n_scenarios == 600 and back.n_cells == 8
    assert back.events.any(), "the small case has events that occur"
    assert back.metadata["tilt"] == (scen.metadata["tilt"])
    assert back.effective_sample_size == pytest.approx(scen.effective_sample_size, rel=1e-12)
    # loaded arrays are frozen like freshly simulated ones
    assert not back.losses.flags.writeable


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_default_case(tmp_path: Path, suffix: str) -> None:
    case = load_case()
    scen = simulate(case, 1_000, seed=11, method="importance")
    path = tmp_path / f"default{suffix}"
    scen.save(str(path))  # str paths are accepted too
    back = ScenarioSet.load(str(path))
    assert_sets_equal(scen, back)
    assert back.metadata["case_sha256"] == case.content_sha256
    assert back.cell_index(scen.cells["cell"].iloc[7]) == 7


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_without_events(tmp_path: Path, suffix: str) -> None:
    case = make_case(events=[event("never", 0.0, pd_multiplier=2.0)])
    scen = simulate(case, 100, seed=1)
    # a set with no event columns at all
    bare = ScenarioSet(
        losses=scen.losses.copy(),
        probabilities=scen.probabilities.copy(),
        cells=scen.cells,
        factors=scen.factors.copy(),
        factor_names=scen.factor_names,
        events=np.zeros((100, 0), dtype=bool),
        event_ids=(),
        seed=scen.seed,
        method=scen.method,
        metadata={"note": "no events"},
    )
    path = tmp_path / f"bare{suffix}"
    bare.save(path)
    assert_sets_equal(bare, ScenarioSet.load(path))


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    scen = small_set()
    path = tmp_path / "upper.NPZ"
    scen.save(path)
    assert_sets_equal(scen, ScenarioSet.load(path))


# --- damaged or foreign files -------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file_raises(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scen{suffix}"
    small_set().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ScenarioFileError, match=re.escape(str(path))):
        ScenarioSet.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_or_garbage_file_raises(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scen{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ScenarioFileError, match=re.escape(str(path))):
        ScenarioSet.load(path)
    path.write_bytes(b"this is not a scenario file\n" * 50)
    with pytest.raises(ScenarioFileError, match=re.escape(str(path))):
        ScenarioSet.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_other_format_version_raises(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"scen{suffix}"
    scen = small_set()
    monkeypatch.setattr(scenarios_module, "FORMAT_VERSION", FORMAT_VERSION + 1)
    scen.save(path)
    monkeypatch.undo()
    assert scenarios_module.FORMAT_VERSION == FORMAT_VERSION
    with pytest.raises(ScenarioFileError, match=rf"version {FORMAT_VERSION + 1}\b") as info:
        ScenarioSet.load(path)
    assert str(path) in str(info.value)
    # and a file of the current version written afterwards reads fine
    scen.save(path)
    assert_sets_equal(scen, ScenarioSet.load(path))


def test_edited_meta_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "scen.npz"
    scen = small_set()
    scen.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta["format_version"] == FORMAT_VERSION
    meta["format_version"] = 0
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ScenarioFileError, match=r"version 0\b"):
        ScenarioSet.load(path)
    del meta["format_version"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ScenarioFileError, match=r"version None"):
        ScenarioSet.load(path)


def test_npz_without_meta_raises(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, losses=np.zeros((3, 2)))
    with pytest.raises(ScenarioFileError, match=re.escape(str(path))):
        ScenarioSet.load(path)


def test_parquet_without_ppcfin_metadata_raises(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"probability": [0.5, 0.5], "loss:0": [0.1, 0.2]}).to_parquet(path)
    with pytest.raises(ScenarioFileError, match="not a ppcfin scenario file"):
        ScenarioSet.load(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"
    with pytest.raises(ScenarioFileError, match=re.escape(str(path))):
        ScenarioSet.load(path)
    with pytest.raises(ScenarioFileError):
        ScenarioSet.load(tmp_path)  # a directory is not a scenario file


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".pq", ""])
def test_unknown_suffix_raises_on_save(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scen{suffix}"
    with pytest.raises(ScenarioFileError, match=r"\.npz or \.parquet"):
        small_set().save(path)
    assert list(tmp_path.iterdir()) == [], "a refused save writes nothing"


def test_unknown_suffix_raises_on_load(tmp_path: Path) -> None:
    good = tmp_path / "scen.npz"
    small_set().save(good)
    renamed = good.rename(tmp_path / "scen.csv")
    with pytest.raises(ScenarioFileError, match=r"unknown scenario file type '\.csv'"):
        ScenarioSet.load(renamed)


# --- atomic saves -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_leaves_no_temp_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scen{suffix}"
    small_set().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_replaces_existing_file_whole(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scen{suffix}"
    big = small_set(n=5_000, seed=1)
    small = small_set(n=50, seed=2)
    big.save(path)
    small.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    back = ScenarioSet.load(path)
    assert_sets_equal(small, back)
    assert back.n_scenarios == 50


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_save_keeps_existing_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"scen{suffix}"
    first = small_set(seed=1)
    first.save(path)
    _break_writer(monkeypatch, suffix)
    with pytest.raises(OSError, match="disk full"):
        small_set(seed=2).save(path)
    monkeypatch.undo()
    assert_sets_equal(first, ScenarioSet.load(path))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_save_leaves_no_temp_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"scen{suffix}"
    small_set(seed=1).save(path)
    _break_writer(monkeypatch, suffix)
    with pytest.raises(OSError, match="disk full"):
        small_set(seed=2).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _break_writer(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Make the next save fail half-way, after its temporary file has been created."""

    def fail(target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"partial")
        else:
            with open(target, "wb") as fh:
                fh.write(b"partial")
        raise OSError("disk full")

    if suffix == ".npz":
        monkeypatch.setattr(scenarios_module.np, "savez", fail)
    else:
        monkeypatch.setattr(Path, "write_bytes", lambda self, data: fail(str(self)))
