"""Helpers the benchmark scripts share: peak memory and appending rows to a results CSV.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import csv
import resource
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def rss_mib(ru_maxrss: int) -> float:
    """``ru_maxrss`` in MiB: bytes on macOS, KiB on Linux."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 1024


def maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or its reaped children), MiB."""
    return rss_mib(resource.getrusage(who).ru_maxrss)


def append_csv(
    path: Path,
    fields: Sequence[str],
    rows: Iterable[dict[str, Any]],
    extrasaction: str = "raise",
) -> None:
    """Append ``rows`` to ``path``, writing the header first when the file is new."""
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction=extrasaction)
        if new:
            writer.writeheader()
        writer.writerows(rows)
