"""A case's CSV tables: which entity lists may live in a CSV file, and their rows as fields.

``segments: {csv: segments.csv}`` names a table beside the YAML, relative to the folder of the
file that names it. Its rows replace the reference, converted to the schema's field shapes:
``a;b`` cells become lists, ``k:v;k:v`` cells mappings, and a ``field.source`` column the
provenance tag of that field (a ``{value: …, source: …}`` tag, lifted by the loader). Each row
is attributed to its file and line, for messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from models.csv_io import read_csv_rows
from models.errors import CaseError, CaseProblem
from models.file_io import ReadProblem
from models.problems import Origins, dotted, show
from models.schema import (
    FinanceSource,
    GuaranteeFund,
    LoanProduct,
    Region,
    Segment,
    ValueChain,
)
from models.schema_risk import ShockEvent

# Tables that may live in a CSV file next to the YAML: ``segments: {csv: segments.csv}``.
TABLES: dict[tuple[str, ...], type[BaseModel]] = {
    ("regions",): Region,
    ("value_chains",): ValueChain,
    ("segments",): Segment,
    ("products",): LoanProduct,
    ("funds",): GuaranteeFund,
    ("sources",): FinanceSource,
    ("risk_model", "events"): ShockEvent,
}


def expand_tables(
    tree: dict[str, Any], folder: Path, origins: Origins, hasher: Any, record: bool = True
) -> None:
    """Replace ``{csv: file}`` tables by their rows, converted to the schema's field shapes.

    Parameters
    ----------
    tree : dict
        A case or an overlay's ``changes`` as plain data; changed in place.
    folder : Path
        The folder of the file that names the tables: their paths are relative to it.
    origins : Origins
        Where each part of the case came from; each row is set to its file and line.
    hasher : hashlib hash
        The case's content hash; each table's name and bytes are added to it.
    record : bool
        Whether to set the rows' origins (an overlay's rows are attributed by the merge, at
        their merged positions).

    Raises
    ------
    CaseError
        A table that cannot be read or is not the table named, naming file, column and why.
    """
    for keys, model in TABLES.items():
        parent: Any = tree
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        ref = parent.get(keys[-1])
        if not (isinstance(ref, dict) and set(ref) == {"csv"}):
            continue
        csv_path = folder / str(ref["csv"])
        try:
            rows = read_csv_rows(csv_path, _table_columns(model), dotted(keys))
        except ReadProblem as exc:
            raise CaseError(
                [
                    CaseProblem(
                        str(csv_path),
                        f"{dotted(keys)}.csv"
                        + (f" ({exc.field})" if exc.field != "(file)" else ""),
                        show(ref["csv"]),
                        exc.message,
                    )
                ]
            ) from None
        hasher.update(os.fsencode(csv_path.name) + b"\0" + csv_path.read_bytes())
        parent[keys[-1]] = [_row_to_fields(cells, model) for _, cells in rows]
        if record:  # overlay tables are attributed by the merge, at their merged positions
            for n, (line, _) in enumerate(rows):
                origins.set(keys + (n,), f"{csv_path} line {line}")


def _table_columns(model: type[BaseModel]) -> list[str]:
    """Columns a CSV table of ``model`` may have: its fields, and ``field.source`` tags."""
    names = list(model.model_fields)
    return names + [f"{name}.source" for name in names if name != "source"]


def _row_to_fields(cells: dict[str, str], model: type[BaseModel]) -> dict[str, Any]:
    """CSV cells to field values: ``a;b`` lists, ``k:v;k:v`` mappings, ``field.source`` tags."""
    row: dict[str, Any] = {}
    for column, text in cells.items():
        if column.endswith(".source"):
            field = column[: -len(".source")]
            row[field] = {"value": row.pop(field, None), "source": text}
            continue
        shape = _field_shape(model, column)
        if shape == "list":
            value: Any = [part.strip() for part in text.split(";") if part.strip()]
        elif shape == "dict":
            value = dict(
                (k.strip(), v.strip())
                for k, _, v in (part.partition(":") for part in text.split(";") if part.strip())
            )
        else:
            value = text
        if isinstance(row.get(column), dict) and "source" in row[column]:
            row[column]["value"] = value
        else:
            row[column] = value
    return row


def _field_shape(model: type[BaseModel], name: str) -> str:
    field = model.model_fields.get(name)
    if field is None:
        return "scalar"
    text = str(field.annotation)
    if text.startswith("dict") or "dict[" in text:
        return "dict"
    if "tuple[" in text:
        return "list"
    return "scalar"
