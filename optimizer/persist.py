"""Saving and reading a run's results as plain JSON (no pickle: a results folder is data).

Frozen dataclasses whose fields are DataFrames, numbers, strings and tuples are written field by
field (DataFrames in pandas' ``split`` layout) and read back into the same class.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")


def to_plain(obj: Any) -> Any:
    """A JSON-ready copy of a dataclass of DataFrames, arrays and scalars."""
    if isinstance(obj, pd.DataFrame):
        return {"__frame__": json.loads(obj.to_json(orient="split", double_precision=15))}
    if isinstance(obj, np.ndarray):
        return {"__array__": obj.tolist(), "dtype": str(obj.dtype)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_plain_value(value: Any) -> Any:
    if isinstance(value, dict) and "__frame__" in value:
        raw = value["__frame__"]
        return pd.DataFrame(raw["data"], index=raw["index"], columns=raw["columns"])
    if isinstance(value, dict) and "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if isinstance(value, list):
        return tuple(_from_plain_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _from_plain_value(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass written by :func:`to_plain` (unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unexpected fields {sorted(unknown)} in saved results")
    return cls(**{k: _from_plain_value(v) for k, v in data.items()})
