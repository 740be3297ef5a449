"""The pieces every CLI view is made of: plain-text rows, money and share cells, a progress bar.

User text (ids, names, paths, reasons) reaches the terminal through :func:`shown` or
:func:`add_row`, so that markup in it stays text and control characters are escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from models.text import printable


def shown(value: object) -> str:
    """User text (a path, a name) as the terminal may show it: control characters escaped,
    rich markup inert."""
    return escape(printable(str(value)))


def add_row(table: Table, *cells: str, style: str | None = None) -> None:
    """Add a row whose cells are plain text (ids and names are user input, never markup)."""
    table.add_row(*(Text(c) for c in cells), style=style)


def usd_m(value: float | None) -> str:
    """US$ as millions with one decimal: ``152.3``; blank for missing."""
    if value is None or pd.isna(value):
        return ""
    return f"{value / 1e6:,.1f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage with ``digits`` decimals: ``12.5%``; blank for missing."""
    if value is None or pd.isna(value):
        return ""
    return f"{value:.{digits}%}"


def usd_m_signed(value: float) -> str:
    """US$ as signed millions, ``+12.3``; ``n/a`` for missing."""
    return "n/a" if pd.isna(value) else f"{value / 1e6:+,.1f}"


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``advance(done, what=None)``: items done so far, and
    optionally what is being done now (replaces the label)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
    )
    label = escape(label)  # may hold user input (a sweep); the description is read as markup
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, what: str | None = None) -> None:
            if what:
                bar.update(task, completed=done, description=f"{label}: {escape(what)}")
            else:
                bar.update(task, completed=done)

        yield advance
