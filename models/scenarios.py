"""``ScenarioSet``: the frozen output of the Monte Carlo, and its files.

A scenario set is what the optimizer, the evaluator and the reports read: a loss matrix (loss per
dollar lent, scenarios x cells), the scenario probabilities (1/S for plain Monte Carlo, normalised
likelihood ratios for importance sampling), the cells, the factor draws and event flags that made
each scenario, and how it was made (seed, method, versions).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.cells import CELL_COLUMNS
from models.errors import ScenarioFileError

FORMAT_VERSION = 1
"""Bumped whenever the saved layout changes; files of another version are refused."""


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Simulated annual losses of every cell of a case.

    Attributes
    ----------
    losses : ndarray of shape (n_scenarios, n_cells), float64 (or float32 on request)
        Loss per dollar lent over the horizon, ℓ_j(ω) = DR_j(ω) · LGD_j(ω), in [0, 1].
    probabilities : ndarray of shape (n_scenarios,), float64
        Scenario probabilities π, non-negative, summing to 1.
    cells : DataFrame of n_cells rows
        Labels and parameters of the columns (see :func:`models.cells.build_cells`).
    factors : ndarray of shape (n_scenarios, n_factors), float32
        Systematic factor draws (after any importance-sampling shift).
    factor_names : tuple of str
        ``"macro"``, ``"chain:<id>"``, ``"region:<id>"``.
    events : ndarray of shape (n_scenarios, n_events), bool
        Which shock events occurred in each scenario.
    event_ids : tuple of str
    seed : int
    method : str
        ``"mc"``, ``"antithetic"``, ``"sobol"`` or ``"importance"``.
    metadata : dict
        Case hash, granularity, chunk size, package versions, effective sample size...
    """

    losses: np.ndarray
    probabilities: np.ndarray
    cells: pd.DataFrame
    factors: np.ndarray
    factor_names: tuple[str, ...]
    events: np.ndarray
    event_ids: tuple[str, ...]
    seed: int
    method: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s, j = self.losses.shape
        if self.probabilities.shape != (s,):
            raise ValueError(
                f"probabilities must have shape ({s},), got {self.probabilities.shape}"
            )
        if len(self.cells) != j:
            raise ValueError(f"{j} loss columns but {len(self.cells)} cells")
        if self.events.shape != (s, len(self.event_ids)):
            raise ValueError(f"events must have shape ({s}, {len(self.event_ids)})")
        for arr in (self.losses, self.probabilities, self.factors, self.events):
            arr.flags.writeable = False

    @property
    def n_scenarios(self) -> int:
        return int(self.losses.shape[0])

    @property
    def n_cells(self) -> int:
        return int(self.losses.shape[1])

    @property
    def effective_sample_size(self) -> float:
        """Kish effective sample size 1 / Σπ²; equals S for equal weights."""
        return float(1.0 / np.sum(self.probabilities**2))

    def cell_index(self, label: str) -> int:
        """Column of the cell ``"PRODUCT|SEGMENT"``."""
        hits = np.flatnonzero(self.cells["cell"].to_numpy() == label)
        if hits.size == 0:
            raise KeyError(f"no cell {label!r}")
        return int(hits[0])

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the set to ``.npz`` (numpy, uncompressed) or ``.parquet``, atomically.

        The file is written next to its destination and renamed, so a crash never leaves a
        half-written scenario file under the final name.
        """
        path = Path(path)
        meta = {
            "format_version": FORMAT_VERSION,
            "seed": self.seed,
            "method": self.method,
            "factor_names": list(self.factor_names),
            "event_ids": list(self.event_ids),
            "metadata": self.metadata,
            "cells": self.cells.to_dict(orient="list"),
            "shape": list(self.losses.shape),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".parquet"):
            raise ScenarioFileError(
                f"{path}: unknown scenario file type {suffix!r}; use .npz or .parquet"
            )
        try:
            self._write(tmp, suffix, meta)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never leave a half-written temp file behind
            raise
        return path

    def _write(self, tmp: Path, suffix: str, meta: dict[str, Any]) -> None:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    losses=self.losses,
                    probabilities=self.probabilities,
                    factors=self.factors,
                    events=self.events,
                    meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                )
        else:
            _save_parquet(self, tmp, meta)

    @classmethod
    def load(cls, path: str | Path) -> ScenarioSet:
        """Read a set written by :meth:`save`; refuses truncated files and other versions."""
        path = Path(path)
        if not path.is_file():
            raise ScenarioFileError(f"{path}: no such scenario file")
        suffix = path.suffix.lower()
        try:
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(bytes(data["meta"]).decode())
                    _check_version(path, meta)
                    arrays = {k: data[k] for k in ("losses", "probabilities", "factors", "events")}
            elif suffix == ".parquet":
                meta, arrays = _load_parquet(path)
            else:
                raise ScenarioFileError(f"{path}: unknown scenario file type {suffix!r}")
        except ScenarioFileError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ScenarioFileError(
                f"{path}: unreadable or truncated scenario file ({type(exc).__name__}: {exc})"
            ) from None
        if list(arrays["losses"].shape) != meta["shape"]:
            raise ScenarioFileError(f"{path}: loss matrix shape does not match its metadata")
        return cls(
            losses=arrays["losses"],
            probabilities=arrays["probabilities"],
            cells=pd.DataFrame(meta["cells"], columns=list(CELL_COLUMNS)),
            factors=arrays["factors"],
            factor_names=tuple(meta["factor_names"]),
            events=arrays["events"].astype(bool),
            event_ids=tuple(meta["event_ids"]),
            seed=int(meta["seed"]),
            method=str(meta["method"]),
            metadata=dict(meta["metadata"]),
        )


def _check_version(path: Path, meta: dict[str, Any]) -> None:
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ScenarioFileError(
            f"{path}: scenario file format version {version}, this ppcfin reads version "
            f"{FORMAT_VERSION}; re-run `ppcfin simulate`"
        )


def _save_parquet(scen: ScenarioSet, tmp: Path, meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"probability": scen.probabilities}
    for j in range(scen.n_cells):
        columns[f"loss:{j}"] = scen.losses[:, j]
    for f, name in enumerate(scen.factor_names):
        columns[f"factor:{name}"] = scen.factors[:, f]
    for e, name in enumerate(scen.event_ids):
        columns[f"event:{name}"] = scen.events[:, e]
    table = pa.table(columns)
    table = table.replace_schema_metadata({b"ppcfin": json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    tmp.write_bytes(buf.getvalue())


def _load_parquet(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"ppcfin")
    if raw is None:
        raise ScenarioFileError(f"{path}: not a ppcfin scenario file (no ppcfin metadata)")
    meta = json.loads(raw.decode())
    _check_version(path, meta)
    s, j = meta["shape"]
    losses = np.empty((s, j), dtype=table.column("loss:0").type.to_pandas_dtype())
    for c in range(j):
        losses[:, c] = table.column(f"loss:{c}").to_numpy()
    factors = (
        np.column_stack([table.column(f"factor:{n}").to_numpy() for n in meta["factor_names"]])
        if meta["factor_names"]
        else np.zeros((s, 0), dtype=np.float32)
    )
    events = (
        np.column_stack([table.column(f"event:{n}").to_numpy() for n in meta["event_ids"]])
        if meta["event_ids"]
        else np.zeros((s, 0), dtype=bool)
    )
    return meta, {
        "losses": losses,
        "probabilities": table.column("probability").to_numpy(),
        "factors": factors,
        "events": events,
    }
