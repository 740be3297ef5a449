"""``ScenarioSet``: the frozen output of the Monte Carlo, and its files.

A scenario set is what the optimizer, the evaluator and the reports read: a loss matrix (loss per
dollar lent, scenarios x cells), the scenario probabilities (1/S for plain Monte Carlo, normalised
likelihood ratios for importance sampling), the cells, the factor draws and event flags that made
each scenario, and how it was made (seed, method, versions).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from models.atomic_file import write_atomically
from models.cells import CELL_COLUMNS
from models.errors import OptionError, ScenarioFileError

FORMAT_VERSION = 1
"""Bumped whenever the saved layout changes; files of another version are refused."""
DEFAULT_SCENARIOS = 100_000
"""Scenarios every decision command draws unless told otherwise (``optimize``, ``run``,
``frontier``, ``sensitivity``, ``stress``). Measured on the shipped case: at 5,000 the weighted gap
moved 8 % between seeds 7, 8 and 9 (30 % at 2,000) and the optimum broke its own limits out of
sample; at 100,000 it moves 4 %."""
DEFAULT_SAMPLING = "importance"
"""How those commands draw them: importance sampling over every systematic factor and event
(:mod:`models.importance`, which falls back to plain Monte Carlo with a warning when the tail
rests on too few weights). Measured on the shipped case at 100,000 scenarios (float32, limits
held at 95 %): the weighted gap moved 0.7 % between seeds 7, 8 and 9 (US$1,055.0m-1,062.4m),
against 3.4 % with plain Monte Carlo (US$1,076.6m-1,114.3m), and the tighter CVaR errors cost
smaller confidence margins (US$1,659m of gap closed on average, against US$1,635m); drawing
takes 0.51 s against 0.46 s. The ``simulate`` command keeps plain Monte Carlo as its default:
it shows the model's own draws."""
RUN_REPLICATIONS = 4
"""Independent scenario sets of that size ``ppcfin run`` re-optimises by default for the gap
closed's error bar (the standard deviation over them)."""
TEXT_CELL_COLUMNS = ("cell", "product", "segment", "region", "value_chain")
BOOL_CELL_COLUMNS = ("state_run", "remote")
PROBABILITY_SUM_TOLERANCE = 1e-6


Count = Annotated[int, Field(strict=True, ge=0)]


class ScenarioMeta(BaseModel):
    """The metadata block of a scenario file (``meta`` of the ``.npz``, ``ppcfin`` of parquet)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format_version: int
    seed: Count
    method: Annotated[str, Field(min_length=1)]
    factor_names: list[StrictStr]
    event_ids: list[StrictStr]
    metadata: dict[str, Any]
    cells: dict[str, list[StrictStr | float | StrictBool | None]]
    shape: Annotated[list[Count], Field(min_length=2, max_length=2)]


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
            raise OptionError(
                f"probabilities must have shape ({s},), got {self.probabilities.shape}"
            )
        if len(self.cells) != j:
            raise OptionError(f"{j} loss columns but {len(self.cells)} cells")
        if self.events.shape != (s, len(self.event_ids)):
            raise OptionError(f"events must have shape ({s}, {len(self.event_ids)})")
        for arr in (self.losses, self.probabilities, self.factors, self.events):
            arr.flags.writeable = False

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios (rows of ``losses``)."""
        return int(self.losses.shape[0])

    @property
    def n_cells(self) -> int:
        """Number of cells (columns of ``losses``)."""
        return int(self.losses.shape[1])

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the losses and probabilities (shape and dtype included): two sets with the
        same fingerprint are the same scenarios, whatever their seed or case says.

        What a cut pool is valid on (:class:`optimizer.formulation.warm_start.WarmStart`): a cut
        bounds the tail of one loss matrix. Computed once per set (about 0.1 s per 100 MB of
        losses).
        """
        digest = hashlib.blake2b(digest_size=16)
        for arr in (self.losses, self.probabilities):
            digest.update(f"{arr.shape}{arr.dtype.str}".encode())
            digest.update(np.ascontiguousarray(arr).data)
        return digest.hexdigest()

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
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".parquet"):
            raise ScenarioFileError(
                f"{path}: unknown scenario file type {suffix!r}; use .npz or .parquet"
            )
        return write_atomically(path, lambda tmp: self._write(tmp, suffix, meta))

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
            _pin_zip_times(tmp)
        else:
            _save_parquet(self, tmp, meta)

    @classmethod
    def load(cls, path: str | Path) -> ScenarioSet:
        """Read a set written by :meth:`save`.

        Raises
        ------
        ScenarioFileError
            Missing, truncated or of another format version; metadata missing a field or of
            the wrong type; arrays whose shapes or types disagree with it; losses outside
            [0, 1] or probabilities that are negative or do not sum to 1.
        """
        path = Path(path)
        if not path.is_file():
            raise ScenarioFileError(f"{path}: no such scenario file")
        suffix = path.suffix.lower()
        try:
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    meta = _read_meta(path, bytes(data["meta"]))
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
        _check_arrays(path, meta, arrays)
        return cls(
            losses=arrays["losses"],
            probabilities=arrays["probabilities"],
            cells=pd.DataFrame(meta.cells, columns=list(CELL_COLUMNS)),
            factors=arrays["factors"],
            factor_names=tuple(meta.factor_names),
            events=arrays["events"].astype(bool),
            event_ids=tuple(meta.event_ids),
            seed=meta.seed,
            method=meta.method,
            metadata=dict(meta.metadata),
        )


def _read_meta(path: Path, raw: bytes) -> ScenarioMeta:
    """The validated metadata; its format version is checked before anything else."""
    try:
        meta = json.loads(raw.decode())
    except ValueError as exc:  # not UTF-8 or not JSON
        raise ScenarioFileError(f"{path}: metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ScenarioFileError(f"{path}: metadata is a {type(meta).__name__}, not an object")
    _check_version(path, meta)
    try:
        valid = ScenarioMeta.model_validate(meta)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(metadata)"
        raise ScenarioFileError(
            f"{path}: metadata {where}: {first['msg']} ({exc.error_count()} problem(s)); "
            "re-run `ppcfin simulate`"
        ) from None
    _check_cells(path, valid)
    return valid


def _check_cells(path: Path, meta: ScenarioMeta) -> None:
    cells, n_cells = meta.cells, meta.shape[1]
    if sorted(cells) != sorted(CELL_COLUMNS):
        raise ScenarioFileError(
            f"{path}: metadata cells has columns {sorted(cells)}; expected {list(CELL_COLUMNS)}"
        )
    for name, values in cells.items():
        kind = str if name in TEXT_CELL_COLUMNS else bool if name in BOOL_CELL_COLUMNS else float
        wrong = [v for v in values if not _is_kind(v, kind)]
        if len(values) != n_cells or wrong:
            what = f"{len(values)} values for {n_cells} cells" if not wrong else repr(wrong[0])
            raise ScenarioFileError(
                f"{path}: metadata cells.{name}: {what}; expected {n_cells} values of type "
                f"{kind.__name__}"
            )


def _is_kind(value: object, kind: type) -> bool:
    if kind is float:  # numbers; null is a missing value (NaN)
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    return isinstance(value, kind)


def _check_arrays(path: Path, meta: ScenarioMeta, arrays: dict[str, np.ndarray]) -> None:
    """Shapes and types as the metadata says; losses in [0, 1]; probabilities that sum to 1."""
    s, j = meta.shape
    expected = {
        "losses": ((s, j), "f"),
        "probabilities": ((s,), "f"),
        "factors": ((s, len(meta.factor_names)), "f"),
        "events": ((s, len(meta.event_ids)), "bu"),
    }
    for name, (shape, kinds) in expected.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype.kind not in kinds:
            raise ScenarioFileError(
                f"{path}: {name} is {arr.dtype} of shape {arr.shape}; its metadata says shape "
                f"{shape} (re-run `ppcfin simulate`)"
            )
    losses, p = arrays["losses"], arrays["probabilities"]
    # min/max are NaN when any value is: one test catches NaN and out-of-range values
    if losses.size and not (losses.min() >= 0.0 and losses.max() <= 1.0):
        raise ScenarioFileError(f"{path}: losses outside [0, 1] (or NaN) in the loss matrix")
    if p.size and not (p.min() >= 0.0 and abs(float(p.sum()) - 1.0) <= PROBABILITY_SUM_TOLERANCE):
        raise ScenarioFileError(
            f"{path}: scenario probabilities must be non-negative and sum to 1 "
            f"(sum {float(p.sum())!r})"
        )


_DOS_EPOCH = struct.pack("<HH", 0, (0 << 9) | (1 << 5) | 1)  # 00:00:00 on 1980-01-01


def _pin_zip_times(path: Path) -> None:
    """Set every member's time in a zip file to 1980-01-01, so equal sets give equal files.

    ``np.savez`` stamps each member with the current time; the stamps sit at fixed offsets of
    the local headers (byte 10) and central-directory entries (byte 12), outside the data
    and its CRC.
    """
    with zipfile.ZipFile(path) as zf:
        infos, start = zf.infolist(), zf.start_dir
    with open(path, "r+b") as fh:
        for info in infos:
            fh.seek(info.header_offset + 10)
            fh.write(_DOS_EPOCH)
        entry = start
        for _ in infos:
            fh.seek(entry)
            head = fh.read(46)
            name_len, extra_len, comment_len = struct.unpack("<HHH", head[28:34])
            fh.seek(entry + 12)
            fh.write(_DOS_EPOCH)
            entry += 46 + name_len + extra_len + comment_len


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


def _load_parquet(path: Path) -> tuple[ScenarioMeta, dict[str, np.ndarray]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"ppcfin")
    if raw is None:
        raise ScenarioFileError(f"{path}: not a ppcfin scenario file (no ppcfin metadata)")
    meta = _read_meta(path, raw)
    s, j = meta.shape
    losses = np.empty((s, j), dtype=table.column("loss:0").type.to_pandas_dtype())
    for c in range(j):
        losses[:, c] = table.column(f"loss:{c}").to_numpy()
    factors = (
        np.column_stack([table.column(f"factor:{n}").to_numpy() for n in meta.factor_names])
        if meta.factor_names
        else np.zeros((s, 0), dtype=np.float32)
    )
    events = (
        np.column_stack([table.column(f"event:{n}").to_numpy() for n in meta.event_ids])
        if meta.event_ids
        else np.zeros((s, 0), dtype=bool)
    )
    return meta, {
        "losses": losses,
        "probabilities": table.column("probability").to_numpy(),
        "factors": factors,
        "events": events,
    }
