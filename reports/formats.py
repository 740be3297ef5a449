"""Tables as the report shows them: a DataFrame plus one number format per column.

The same :class:`Table` feeds the HTML (cells formatted to text here, escaped by Jinja2) and the
Excel workbook (cells stay numbers; the format becomes an Excel number format). Money is held in
US$ and shown in US$ millions where the format says so; shares are fractions shown as percent.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

__all__ = ["ColumnFormat", "Table", "format_value", "money_m", "percent"]

MISSING = "—"
MINUS = "\u2212"


class ColumnFormat(StrEnum):
    """How a column's values are written. Money values are always US$, not millions."""

    TEXT = "text"  # as given
    USD = "usd"  # 1,234,567
    USD_M = "usd_m"  # 1.2 (header should say "US$ m")
    USD_M2 = "usd_m2"  # 1.23 (risk figures and their standard errors)
    PCT = "pct"  # 0.123 -> 12.3%
    PCT2 = "pct2"  # 0.0123 -> 1.23% (small probabilities)
    INT = "int"  # 1,234
    FLOAT = "float"  # 1.23
    RATIO = "ratio"  # 4.1 -> 4.10x
    YESNO = "yesno"  # True -> yes


EXCEL_FORMATS: dict[ColumnFormat, str | None] = {
    ColumnFormat.TEXT: None,
    ColumnFormat.USD: '"US$" #,##0',
    # Trailing commas scale by 1,000 each: the cell keeps full US$, the sheet shows millions.
    ColumnFormat.USD_M: '"US$" #,##0.0,," m"',
    ColumnFormat.USD_M2: '"US$" #,##0.00,," m"',
    ColumnFormat.PCT: "0.0%",
    ColumnFormat.PCT2: "0.00%",
    ColumnFormat.INT: "#,##0",
    ColumnFormat.FLOAT: "#,##0.00",
    ColumnFormat.RATIO: '0.00"x"',
    ColumnFormat.YESNO: None,
}


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _signed(text: str) -> str:
    return text.replace("-", MINUS, 1) if text.startswith("-") else text


def format_value(value: object, fmt: ColumnFormat | str) -> str:
    """One cell as text. Missing values (None, NaN) print as an em dash."""
    fmt = ColumnFormat(fmt)
    if _is_missing(value):
        return MISSING
    if fmt is ColumnFormat.TEXT:
        return str(value)
    if fmt is ColumnFormat.YESNO:
        return "yes" if bool(value) else "no"
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return str(value)
    x = float(value)
    if math.isinf(x):
        return "∞" if x > 0 else f"{MINUS}∞"
    text = {
        ColumnFormat.USD: lambda: f"{x:,.0f}",
        ColumnFormat.USD_M: lambda: f"{x / 1e6:,.1f}",
        ColumnFormat.USD_M2: lambda: f"{x / 1e6:,.2f}",
        ColumnFormat.PCT: lambda: f"{x * 100:.1f}%",
        ColumnFormat.PCT2: lambda: f"{x * 100:.2f}%",
        ColumnFormat.INT: lambda: f"{x:,.0f}",
        ColumnFormat.FLOAT: lambda: f"{x:,.2f}",
        ColumnFormat.RATIO: lambda: f"{x:,.2f}x",
    }[fmt]()
    return _signed(text)


def money_m(value_usd: float | None) -> str:
    """``US$ 2,380.0 m`` — how the report's prose writes money."""
    if value_usd is None or _is_missing(value_usd):
        return MISSING
    return _signed(f"US$ {value_usd / 1e6:,.1f} m").replace(f"US$ {MINUS}", f"{MINUS}US$ ")


def percent(share: float | None, digits: int = 1) -> str:
    """``41.2%`` from a fraction."""
    if share is None or _is_missing(share):
        return MISSING
    return _signed(f"{share * 100:.{digits}f}%")


@dataclass(frozen=True, eq=False)
class Table:
    """A table for the report and the workbook.

    Attributes
    ----------
    frame : DataFrame
        Rows and columns as shown; column names are the headers (put units in them, e.g.
        ``"Lending (US$ m)"``). The index is not shown: make it a column if it matters.
    formats : mapping of column name to ColumnFormat (or its value, e.g. ``"usd_m"``)
        Columns not listed are TEXT if they hold strings, FLOAT if numeric.
    caption : str
        Title line above the table, and the sheet's name in the workbook unless ``sheet`` is set.
    note : str
        Small print under the table.
    sheet : str
        Preferred worksheet name (sanitized on writing).
    """

    frame: pd.DataFrame
    formats: Mapping[str, ColumnFormat | str] = field(default_factory=dict)
    caption: str = ""
    note: str = ""
    sheet: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"Table.frame must be a DataFrame, got {type(self.frame).__name__}")
        unknown = [c for c in self.formats if c not in self.frame.columns]
        if unknown:
            raise ValueError(
                f"formats name columns {unknown} that the table lacks; "
                f"columns are {list(self.frame.columns)}"
            )
        resolved: dict[str, ColumnFormat] = {}
        for col in self.frame.columns:
            given = self.formats.get(col)
            if given is None:
                numeric = pd.api.types.is_numeric_dtype(self.frame[col]) and not (
                    pd.api.types.is_bool_dtype(self.frame[col])
                )
                resolved[col] = ColumnFormat.FLOAT if numeric else ColumnFormat.TEXT
                continue
            try:
                resolved[col] = ColumnFormat(given)
            except ValueError:
                valid = ", ".join(f.value for f in ColumnFormat)
                raise ValueError(
                    f"column {col!r}: unknown format {given!r}; valid: {valid}"
                ) from None
        object.__setattr__(self, "formats", resolved)

    @property
    def columns(self) -> list[str]:
        """Column names (the headers) as text, in order."""
        return [str(c) for c in self.frame.columns]

    def is_numeric(self, column: str) -> bool:
        """Whether ``column`` holds numbers: its format is neither TEXT nor YESNO."""
        return self.formats[column] not in (ColumnFormat.TEXT, ColumnFormat.YESNO)

    def numeric_columns(self) -> list[bool]:
        """Per column, whether it holds numbers (right-aligned in HTML)."""
        return [self.is_numeric(c) for c in self.frame.columns]

    def rows(self) -> list[list[str]]:
        """Every cell formatted to text (unescaped: the template escapes)."""
        cols = list(self.frame.columns)
        return [
            [format_value(v, self.formats[c]) for c, v in zip(cols, row, strict=True)]
            for row in self.frame.itertuples(index=False, name=None)
        ]

    def column_widths(self) -> list[float]:
        """Relative column widths (percent, summing to 100) from header and cell lengths.

        With ``table-layout: fixed`` the browser would otherwise split the width evenly, giving
        a long name column as little room as a number column.
        """
        rows = self.rows()
        weights = []
        for j, col in enumerate(self.columns):
            longest_cell = max((len(r[j]) for r in rows), default=0)
            longest_word = max((len(w) for w in col.split()), default=0)
            # Room for the longest cell on one line and the header on about two.
            # Headers are bold, hence the 1.2 on their longest word.
            need = max(longest_cell, math.ceil(1.2 * longest_word), math.ceil(len(col) / 2), 4)
            # Numbers never wrap (CSS nowrap), so their column gets a little extra room.
            weights.append(min(need, 32) + (3 if self.is_numeric(col) else 2))
        total = float(sum(weights)) or 1.0
        return [round(100.0 * w / total, 2) for w in weights]
