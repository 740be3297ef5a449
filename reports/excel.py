"""Every report table as an Excel workbook: one sheet per table, numbers kept as numbers."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from models.atomic_file import write_atomically
from reports.formats import EXCEL_FORMATS, ColumnFormat, Table, format_value

__all__ = ["sheet_names", "write_workbook"]

MAX_SHEET_NAME = 31
_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_RESERVED = {"history"}  # Excel refuses a sheet named "History"
MAX_COLUMN_WIDTH = 60


def sheet_names(names: Sequence[str]) -> list[str]:
    """Excel-safe, unique sheet names for ``names``, in order.

    Excel allows at most 31 characters, none of ``[ ] : * ? / \\``, no leading or trailing
    apostrophe, and compares names case-insensitively. Clashes get " (2)", " (3)" … within the
    length limit.
    """
    out: list[str] = []
    seen: set[str] = set()
    for raw in names:
        base = _FORBIDDEN.sub("_", ILLEGAL_CHARACTERS_RE.sub("", str(raw))).strip().strip("'")
        base = base[:MAX_SHEET_NAME].strip() or "Sheet"
        if base.lower() in _RESERVED:
            base = f"{base}_"
        name, n = base, 1
        while name.lower() in seen:
            n += 1
            suffix = f" ({n})"
            name = base[: MAX_SHEET_NAME - len(suffix)].rstrip() + suffix
        seen.add(name.lower())
        out.append(name)
    return out


def _guess_format(column: str, series: pd.Series) -> ColumnFormat:
    """Format for a bare DataFrame column, read from its name (``*_usd``, ``*share``…)."""
    if pd.api.types.is_bool_dtype(series):
        return ColumnFormat.YESNO
    if not pd.api.types.is_numeric_dtype(series):
        return ColumnFormat.TEXT
    name = column.lower()
    if "usd" in name or "us$" in name:
        return ColumnFormat.USD
    if any(k in name for k in ("share", "probability", "pct", "percent", "rate")):
        return ColumnFormat.PCT
    if pd.api.types.is_integer_dtype(series):
        return ColumnFormat.INT
    return ColumnFormat.FLOAT


def _as_table(name: str, value: Table | pd.DataFrame) -> Table:
    if isinstance(value, Table):
        return value
    if not isinstance(value, pd.DataFrame):
        raise TypeError(
            f"table {name!r}: expected a DataFrame or Table, got {type(value).__name__}"
        )
    frame = value
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    frame = frame.rename(columns=str)
    formats = {c: _guess_format(c, frame[c]) for c in frame.columns}
    return Table(frame, formats, caption=name)


def _cell_value(value: object) -> object:
    """A value openpyxl stores faithfully: Python numbers, bools, text; blanks for NaN/None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return ILLEGAL_CHARACTERS_RE.sub("", str(value))


def _write_sheet(ws, table: Table) -> None:
    header_font = Font(bold=True)
    widths = []
    for j, col in enumerate(table.columns, start=1):
        cell = ws.cell(row=1, column=j, value=_cell_value(col))
        cell.data_type = "s"
        cell.font = header_font
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        widths.append(max((len(w) for w in col.split()), default=4) + 2)
    for i, row in enumerate(table.frame.itertuples(index=False, name=None), start=2):
        for j, (col, raw) in enumerate(zip(table.frame.columns, row, strict=True), start=1):
            fmt = table.formats[col]
            value = _cell_value(raw)
            cell = ws.cell(row=i, column=j, value=value)
            if isinstance(value, str):
                # A name like "=HYPERLINK(…)" must stay text, never become a formula.
                cell.data_type = "s"
            elif EXCEL_FORMATS[fmt] and value is not None and not isinstance(value, bool):
                cell.number_format = EXCEL_FORMATS[fmt]
            shown = format_value(raw, fmt)
            if fmt in (ColumnFormat.USD_M, ColumnFormat.USD_M2):
                shown = f"US$ {shown} m"
            widths[j - 1] = max(widths[j - 1], len(shown) + 2)
    for j, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(j)].width = min(max(width, 8), MAX_COLUMN_WIDTH)
    ws.freeze_panes = "A2"


def write_workbook(
    tables: Mapping[str, Table | pd.DataFrame],
    path: str | os.PathLike[str],
    notes: str | Sequence[str] | None = None,
) -> Path:
    """Write each table to its own sheet of an ``.xlsx`` workbook at ``path``; return the path.

    Parameters
    ----------
    tables : mapping of name to Table or DataFrame
        Sheet name → table, in sheet order. A :class:`~reports.formats.Table` brings its number
        formats; for a bare DataFrame they are guessed from column names (``*_usd`` → US$,
        ``*share``/``*probability``/``*rate`` → percent) and a non-default index becomes
        columns. Names are made Excel-safe and unique (see :func:`sheet_names`).
    path : path-like
        Written to a temporary file beside it, then renamed into place.
    notes : str or sequence of str, optional
        Lines for a first sheet named "Notes" (e.g. units, case and generation time).

    Cells hold numbers, not text: money stays in full US$ with an Excel number format (US$
    millions where the report shows millions), shares stay fractions formatted as percent.
    """
    if not tables:
        raise ValueError("write_workbook needs at least one table")
    items = [(str(name), _as_table(str(name), t)) for name, t in tables.items()]
    names = sheet_names((["Notes"] if notes else []) + [n for n, _ in items])
    wb = Workbook()
    wb.remove(wb.active)
    if notes:
        ws = wb.create_sheet(names.pop(0))
        lines = [notes] if isinstance(notes, str) else list(notes)
        for i, line in enumerate(lines, start=1):
            cell = ws.cell(row=i, column=1, value=_cell_value(line))
            cell.data_type = "s"
        ws.column_dimensions["A"].width = min(max((len(x) for x in lines), default=10), 120)
    for sheet, (_, table) in zip(names, items, strict=True):
        _write_sheet(wb.create_sheet(sheet), table)
    return write_atomically(path, lambda tmp: wb.save(tmp))
