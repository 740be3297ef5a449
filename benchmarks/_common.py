"""Helpers the benchmark scripts share: peak memory, appending rows to a results CSV, and
running one measurement in a fresh worker process.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
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


class WorkerFailed(Exception):
    """A worker process ended without its JSON row; ``str()`` says why (the last line it
    printed, or the timeout)."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def run_worker(script: str, args: Sequence[str], timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``python script --worker *args`` in a fresh process (so its peak memory is its own)
    and return the JSON object on the last line it prints.

    Raises
    ------
    WorkerFailed
        On a non-zero exit, no output, or ``timeout_s`` passed.
    """
    try:
        out = subprocess.run(
            [sys.executable, script, "--worker", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkerFailed(f"timeout ({timeout_s:g} s)", timed_out=True) from exc
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WorkerFailed(tail[0])
    return json.loads(lines[-1])
