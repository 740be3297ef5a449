"""Saving and reading a run's results as plain JSON (no pickle: a results folder is data).

Frozen dataclasses whose fields are DataFrames, numbers, strings and tuples are written field by
field (DataFrames in pandas' ``split`` layout) and read back into the same class. Reading a file
that a person may have edited goes through :func:`parse_saved`: JSON, then its format version,
then a strict pydantic model (:mod:`optimizer.saved`) whose tables are :class:`SplitFrame`
fields checked column by column (:func:`table`); any failure is one :class:`SavedRunError`
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from models.errors import InputError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_PROBLEMS_SHOWN = 3
"""Problems named in one message; the count of the others follows."""


class SavedRunError(InputError, ValueError):
    """A saved result that cannot be used: missing, edited, of another version or case.

    The message names the file, the field and what is wrong, and says what to do.
    """


def to_plain(obj: Any) -> Any:
    """A JSON-ready copy of a dataclass of DataFrames, arrays and scalars (NaN → null)."""
    if isinstance(obj, pd.DataFrame):
        # Python floats (shortest repr, exact) rather than to_json's 15 decimal places
        split = obj.to_dict(orient="split")
        split["data"] = [[to_plain(v) for v in row] for row in split["data"]]
        return {"__frame__": {k: to_plain(split[k]) for k in ("columns", "index", "data")}}
    if isinstance(obj, np.ndarray):
        return {"__array__": obj.tolist(), "dtype": str(obj.dtype)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN; tables write theirs as null too
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
    """Rebuild a dataclass written by :func:`to_plain` (unknown keys are an error).

    Trusts its input: files a person may have edited go through :func:`parse_saved` first.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unexpected fields {sorted(unknown)} in saved results")
    return cls(**{k: _from_plain_value(v) for k, v in data.items()})


# --- tables a person may have edited -----------------------------------------------------------
ID, TEXT, INT, BOOL = "id", "text", "int", "bool"
NUMBER, VALUE, AMOUNT, LEVEL = "number", "value", "amount", "level"
"""Column kinds: ``id`` text and ``text`` text or null; ``number`` finite or null (NaN),
``value`` finite, ``amount`` finite and not negative (beyond ``AMOUNT_TOLERANCE``), ``level``
in (0, 1); ``int`` and ``bool``. A kind ending in ``?`` marks a column that may be absent."""
NUMBERS = (NUMBER, VALUE, AMOUNT, LEVEL)
AMOUNT_TOLERANCE = 1e-6
"""US$ a solver may leave below zero (the report's capital stack allows as much)."""


def columns_of(spec: str) -> dict[str, str]:
    """``"source:id pd:number"`` → ``{"source": "id", "pd": "number"}``."""
    return dict(item.split(":") for item in spec.split())


def _kind(kind: str) -> str:
    return kind.rstrip("?")


DTYPES = {
    ID: {"object", "str", "string"},
    TEXT: {"object", "str", "string"},
    **dict.fromkeys(NUMBERS, frozenset({"float64", "int64", "object"})),
    INT: {"int64", "object"},
    BOOL: {"bool", "object"},
}
"""pandas dtypes result.json may declare per column kind (``object`` for empty tables)."""


def _cell_ok(kind: str, value: Any, dtype: str | None = None) -> bool:
    """Whether a table cell of this kind (and declared dtype) can hold ``value``."""
    if dtype == "int64" or kind == INT:
        return type(value) is int and -_INT64 <= value < _INT64
    if dtype == "bool" or kind == BOOL:
        return type(value) is bool
    if kind in NUMBERS:
        if value is None:
            return kind == NUMBER
        if not (type(value) is int and abs(value) < _INT64) and not (
            type(value) is float and math.isfinite(value)
        ):
            return False
        return {AMOUNT: value >= -AMOUNT_TOLERANCE, LEVEL: 0 < value < 1}.get(kind, True)
    return type(value) is str or (kind == TEXT and value is None)


_INT64 = 2**63


class StrictModel(BaseModel):
    """A saved layout: every key required unless defaulted, none unknown, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    tables: ClassVar[dict[str, dict[str, str]]] = {}
    """Fields that hold a ``{"__frame__": ...}`` table, with its columns' kinds."""

    def build(self, cls: type[T]) -> T:
        """The dataclass ``cls`` with these fields (tables as typed DataFrames)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        for name, columns in self.tables.items():
            values[name] = values[name].frame_.frame(columns)
        return cls(**values)


class SplitFrame(StrictModel):
    """A table in pandas' ``split`` layout; ``dtypes`` only in result.json."""

    columns: list[StrictStr]
    index: list[StrictInt]
    data: list[list[Any]]
    dtypes: list[StrictStr] | None = None

    def frame(self, columns: dict[str, str]) -> pd.DataFrame:
        """The table, typed by the file's dtypes (result.json) or by ``columns``' kinds."""
        # text is left to pandas to type, but an empty column would come out float64
        casts = {**dict.fromkeys(NUMBERS, "float64"), INT: "int64", BOOL: "bool"}
        casts[ID] = "" if self.data else "str"
        casts[TEXT] = casts[ID]
        dtypes = self.dtypes or [casts[_kind(columns[c])] for c in self.columns]
        values = list(zip(*self.data, strict=True)) or [()] * len(self.columns)
        arrays = {
            # numpy reads null as NaN in a float column; text stays a list for pandas to type
            c: np.array(v, dtype=d) if d in ("float64", "int64", "bool") else list(v)
            for c, v, d in zip(self.columns, values, dtypes, strict=True)
        }
        out = pd.DataFrame(arrays, columns=self.columns)
        retype = {
            c: d for c, d in zip(self.columns, dtypes, strict=True) if d and out[c].dtype != d
        }
        if retype:  # text columns declared "object" (or "str") where pandas chose the other
            out = out.astype(retype)
        if self.index != list(range(len(self.index))):
            out.index = pd.Index(self.index)
        return out


def table(
    name: str,
    columns: dict[str, str],
    *,
    dtypes: bool = False,
    prefix: str | None = None,
    bare: bool = False,
    key: tuple[str, ...] = (),
) -> Any:
    """A :class:`SplitFrame` type checked against ``columns`` (column → kind, see ``ID``...).

    Parameters
    ----------
    name : str
        The table's name, for messages.
    columns : dict of str to str
        Its columns and their kinds, in order.
    dtypes : bool
        The table carries pandas dtypes (as :meth:`Allocation.to_json` writes them).
    prefix : str, optional
        Further number columns whose names start so may follow (``covered_usd_<FUND>``).
    bare : bool
        An empty table may have no columns at all (an evaluation of a case without funds).
    key : tuple of str
        Columns whose values no two rows may share (readers look rows up by them).
    """

    def check(table: SplitFrame) -> SplitFrame:
        got = list(table.columns)
        if bare and not got and not table.data and not table.index:
            return table
        extra = [c for c in got if c not in columns and not (prefix and c.startswith(prefix))]
        missing = [c for c, k in columns.items() if c not in got and not k.endswith("?")]
        if missing or extra or len(set(got)) != len(got):
            raise ValueError(
                f"columns {got} are not those of the {name} table (missing {missing}, "
                f"unexpected {extra}, or repeated)"
            )
        if len(table.index) != len(table.data):
            raise ValueError(f"{len(table.index)} index labels for {len(table.data)} rows")
        if (table.dtypes is not None) != dtypes:
            raise ValueError("dtypes: " + ("missing" if dtypes else "unexpected"))
        if table.dtypes is not None and len(table.dtypes) != len(got):
            raise ValueError(f"{len(table.dtypes)} dtypes for {len(got)} columns")
        kinds = [_kind(columns.get(c, NUMBER)) for c in got]
        declared = table.dtypes or [None] * len(got)
        for col, kind, dtype in zip(got, kinds, declared, strict=True):
            if dtype is not None and dtype not in DTYPES[kind]:
                raise ValueError(f"dtype of column {col!r} is {dtype!r}; expected {_what(kind)}")
        for i, row in enumerate(table.data):
            if len(row) != len(got):
                raise ValueError(f"row {i} has {len(row)} values for {len(got)} columns")
            for col, kind, dtype, value in zip(got, kinds, declared, row, strict=True):
                if not _cell_ok(kind, value, dtype):
                    what = _what(INT if dtype == "int64" else kind)
                    raise ValueError(f"row {i}, column {col!r}: {show(value)} is not {what}")
        if key and table.data:
            at = [got.index(c) for c in key]
            rows = [tuple(row[j] for j in at) for row in table.data]
            if len(set(rows)) != len(rows):
                raise ValueError(f"rows repeat a {'/'.join(key)}")
        return table

    return Annotated[SplitFrame, AfterValidator(check)]


def _what(kind: str) -> str:
    return {
        ID: "text",
        TEXT: "text or null",
        NUMBER: "a finite number or null",
        VALUE: "a finite number",
        AMOUNT: f"a number >= -{AMOUNT_TOLERANCE:g}",
        LEVEL: "a number in (0, 1)",
        INT: "an integer",
        BOOL: "true or false",
    }[kind]


def wrapped(
    name: str,
    columns: dict[str, str],
    rows: Any = None,
    bare: bool = False,
    key: tuple[str, ...] = (),
) -> type[StrictModel]:
    """A table as :func:`to_plain` writes it, ``{"__frame__": split}``; ``rows`` an extra
    check of the :class:`SplitFrame` (raising ``ValueError``)."""
    inner = table(name, columns, bare=bare, key=key)
    if rows is not None:
        inner = Annotated[inner, AfterValidator(rows)]

    class Wrapped(StrictModel):
        frame_: inner = Field(alias="__frame__")  # type: ignore[valid-type]

    return Wrapped


# --- reading files a person may have edited ----------------------------------------------------
def parse_saved(
    model: type[M], text: str, source: str, fix: str, version: int, kind: str | None = None
) -> M:
    """``text`` validated as ``model``; every failure is one :class:`SavedRunError`.

    Parameters
    ----------
    model : pydantic model class
        The file's layout (:mod:`optimizer.saved`).
    text : str
        The file's JSON text.
    source : str
        How messages name the file (its path).
    fix : str
        What to do about a bad file, e.g. ``"re-run `ppcfin run`"``.
    version : int
        The ``format_version`` this ppcfin reads, checked before anything else.
    kind : str, optional
        What the file should be, e.g. ``"result.json"``; default the name of ``source``.
    """
    kind = kind or Path(source).name
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SavedRunError(f"{source}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(raw, dict):
        raise SavedRunError(
            f"{source}: holds a JSON {type(raw).__name__}, not an object: not a {kind} "
            f"written by ppcfin; {fix}"
        )
    found = raw.get("format_version", "missing")
    if found != version or isinstance(found, bool):
        raise SavedRunError(
            f"{source}: format version {show(found)}, this ppcfin reads version {version} (not "
            f"a {kind} of this ppcfin's format: older ones do not record the case they were "
            f"made from); {fix}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SavedRunError(f"{source}: {describe(exc)}; {fix}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def describe(exc: ValidationError) -> str:
    """The first problems of a validation error, each as ``field.path: what is wrong``."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:MAX_PROBLEMS_SHOWN]:
        where = field_path(err["loc"]) or "(top level)"
        if err["type"] == "missing":
            parts.append(f"{where}: missing")
        elif err["type"] == "value_error":
            parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        else:
            parts.append(f"{where}: {err['msg']} (got {show(err.get('input'))})")
    more = len(errors) - MAX_PROBLEMS_SHOWN
    return "; ".join(parts) + (f" (and {more} more problem(s))" if more > 0 else "")


def field_path(loc: tuple[Any, ...]) -> str:
    """``("stresses", 2, "evaluation")`` → ``"stresses[2].evaluation"`` (tables' wrapper key
    ``__frame__`` left out)."""
    out = ""
    for part in loc:
        if part == "__frame__":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def show(value: Any) -> str:
    """A value as a short text for a message (JSON for non-strings, at most 40 characters)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_saved_text(path: Path, fix: str) -> str:
    """A saved file's text; a missing or unreadable file is a :class:`SavedRunError`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SavedRunError(f"{path}: cannot read it ({reason}); {fix}") from None
