"""Reading a case's CSV table safely: its header must be the table's columns, each once.

A file that is not such a table is refused by its header alone, and its columns are named by
number, so no message prints another file's text; a near miss of a column name is a typo and is
quoted with the column meant. Tables are bounded in cells (:data:`MAX_TABLE_CELLS`); the file is
read by :func:`models.file_io.read_text` (a regular file named ``.csv``, bounded, strict UTF-8).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Collection
from pathlib import Path

from models.file_io import TABLE_SUFFIXES, ReadProblem, read_text, short
from models.text import first_control

MAX_TABLE_CELLS = 200_000
"""Most cells (rows x columns) in one CSV table: the counterpart of MAX_EXPANDED_NODES."""


def read_csv_rows(
    path: Path,
    columns: Collection[str] | None = None,
    table: str = "table",
    suffixes: Collection[str] | None = TABLE_SUFFIXES,
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV table as ``(line_number, {column: text})``; blank cells are dropped.

    Parameters
    ----------
    path : Path
        The table; its name must end in one of ``suffixes`` (None: any name).
    columns : collection of str, optional
        Every column the table may have. Given, a header naming none of them is "not this
        table" and one naming others is refused, before any row is read.
    table : str
        What the table holds (``segments``), for messages.
    suffixes : collection of str, optional
        Lower-case endings allowed, :data:`TABLE_SUFFIXES` by default.

    Raises
    ------
    ReadProblem
        The file cannot be read, is not this table, or repeats a column. No message quotes a
        cell, and a header column is quoted only when it is a near miss of a valid one.
    """
    text = read_text(path, suffixes=suffixes)
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _rows(reader, columns, table)
    except csv.Error as exc:  # e.g. a cell over the csv module's 131,072-character limit
        line = reader.reader.line_num  # DictReader's own count lags on a failed row
        raise ReadProblem(f"malformed CSV at line {line}: {exc}", field=f"line {line}") from None


def _check_header(names: list[str], columns: Collection[str] | None, table: str) -> None:
    """Refuse a header with a blank, unknown or repeated column (named by number)."""
    blank = [n for n, name in enumerate(names, start=1) if not name]
    if blank:
        raise ReadProblem(f"column {blank[0]} of the header has no name", field="header")
    if columns is not None:
        main = [c for c in columns if not c.endswith(".source")]
        listing = ", ".join(main)
        unknown = [n for n, name in enumerate(names, start=1) if name not in columns]
        if len(unknown) == len(names):
            # another file altogether: say so, and quote none of it
            raise ReadProblem(
                f"not a CSV table with the columns {listing}: its header has {len(names)} "
                "column(s) and none of them is one of these",
                field="header",
            )
        if unknown:
            named = [_unknown_column(n, names[n - 1], main) for n in unknown[:10]]
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise ReadProblem(
                f"{', '.join(named)}{more} of the header "
                f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the "
                f"{table} table; valid columns: {listing} (and <column>.source for a "
                "figure's provenance tag)",
                field="header",
            )
    first: dict[str, int] = {}
    for n, name in enumerate(names, start=1):
        if name in first:
            shown = name if columns is not None else short(name)  # a known column: not file text
            raise ReadProblem(
                f"column {n} of the header repeats column {first[name]} ({shown!r}); each "
                "column may appear once (the last one would silently win)",
                field="header",
            )
        first[name] = n


def _unknown_column(number: int, name: str, valid: list[str]) -> str:
    """``column 4 ('houseolds': did you mean 'households'?)``, or ``column 4`` for a far miss."""
    close = difflib.get_close_matches(name, valid, n=1)
    if close:  # a near miss of a column name is a typo, not another file's text
        return f"column {number} ({short(name)!r}: did you mean {close[0]!r}?)"
    return f"column {number}"


def _rows(
    reader: csv.DictReader, columns: Collection[str] | None, table: str
) -> list[tuple[int, dict[str, str]]]:
    if not reader.fieldnames:
        raise ReadProblem("the CSV table is empty; it needs a header row")
    _check_header([(col or "").strip() for col in reader.fieldnames], columns, table)
    rows = []
    for n_read, row in enumerate(reader, start=1):
        if n_read * len(reader.fieldnames) > MAX_TABLE_CELLS:
            raise ReadProblem(
                f"the CSV table has more than {MAX_TABLE_CELLS:,} cells (rows x columns); "
                "a case table is at most that large",
                field=f"line {reader.line_num}",
            )
        if None in row:
            raise ReadProblem(
                f"line {reader.line_num} has more cells than the header's {len(reader.fieldnames)}",
                field=f"line {reader.line_num}",
            )
        cells = {k.strip(): _trim(v) for k, v in row.items() if v is not None and _trim(v)}
        if cells:
            rows.append((reader.line_num, cells))
    return rows


def _trim(cell: str) -> str:
    """A cell without the spaces around it; a control character there stays for the schema to
    refuse (``str.strip`` counts U+001C-U+001F and NEL as spaces and would drop it silently)."""
    trimmed = cell.strip()
    around = cell[: len(cell) - len(cell.lstrip())] + cell[len(cell.rstrip()) :]
    return cell if first_control(around) else trimmed
