"""Load: the largest case that simulates and optimizes within a memory cap, and its extrapolation.

Synthetic cases grow from the shipped default case. Segments are replicated ``m`` times (x2, x5,
x10, x20...): copy ``k`` of a segment lives in copy ``k`` of its region (``SM_1``, ``SM_2``..., a
region x value chain appears once per case), with the same value chain, PD multiplier and
deforestation pressure and ``1/m`` of its households, need and supply, so the book's totals, the
money and the limits stay those of the default case while the cells (segments x eligible
products) grow ``m``-fold. Products keep excluding the copies of the segments they exclude and
shock events hit the copies of the regions they hit. The scenario count grows geometrically.

Each point runs in a fresh subprocess, in its own session, with its address space capped
(``RLIMIT_AS``, ``--memory-gib``, inherited by its loky workers) and a wall timeout: it simulates
(``simulate(..., n_jobs=2)``, float64 or ``--float32``) and then runs
``optimize(..., method="cutting_plane")``. Recorded: simulate and optimize seconds, cutting-plane
iterations (both stages), loss-matrix MiB (S x cells x itemsize), ``rss_mib`` (``ru_maxrss`` of
the point's process, read by ``wait4``) and ``group_mib`` (the resident memory of the process
and its workers together, sampled every 0.25 s from ``/proc``), and a status: ``ok``,
``out of memory``, ``timeout``, ``budget`` (stopped because the whole search ran out of time),
``error: ...`` or ``skipped: ...`` (not run, with the reason).

The search: for each multiplier, scenario counts in increasing order until a point fails; a
point is skipped, not run, when a no larger matrix of a no larger case already ran out of memory
or timed out, or when the fit predicts its peak above the cap. The fit, ``peak ≈ a[m] + b ·
matrix bytes`` (:func:`fit_peak`), solved for the cap and for the 24 GiB machine gives the
largest scenario count per multiplier: extrapolated figures, the table's are measured. A markdown
table is printed and the rows are appended to ``benchmarks/results_load.csv``; ``--refit``
summarises every row already there.

Usage::

    python benchmarks/bench_load.py                      # x1 x2 x5 x10 x20, 10^4 .. 10^6
    python benchmarks/bench_load.py --multipliers 1 5 --scenarios 10000 30000 --budget-s 600
    python benchmarks/bench_load.py --float32 --memory-gib 22
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import append_csv, rss_mib

CSV_PATH = Path(__file__).resolve().parent / "results_load.csv"
CSV_FIELDS = (
    "timestamp", "host", "load_1m", "multiplier", "segments", "cells", "scenarios", "dtype",
    "matrix_mib", "simulate_s", "optimize_s", "iterations", "method", "rss_mib", "group_mib",
    "status", "gap_closed_musd",
)  # fmt: skip
DEFAULT_MULTIPLIERS = (1, 2, 5, 10, 20)
DEFAULT_SCENARIOS = (10_000, 30_000, 100_000, 300_000, 1_000_000)
MACHINE_GIB = 24.0
DEFAULT_MEMORY_GIB = 22.0
"""Cap per point: the 24 GiB machine minus room for the system, so it never swaps."""
POLL_S = 0.25
FIT_MIN_SCENARIOS = 32_768
"""Points fitted for the slope: from two simulation chunks (16,384 scenarios each) on, both
loky workers start, so every fitted point carries their fixed memory (~0.4 GiB)."""
MIN_POINT_S = 10.0
"""A point is not started with less of the budget left than this."""
GIB = 2**30
MIB = 2**20
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- the synthetic cases ---------------------------------------------------------------------
def replicate_segments(case: Any, multiplier: int) -> Any:
    """The case with every segment split into ``multiplier`` copies in copies of its region.

    Copy 0 keeps the original ids (so the original provenance tags still apply); copy ``k``
    of region ``R`` is ``R_k`` and of segment ``X`` is ``X_k``. Households, need and supply are
    split evenly, so totals are unchanged. Returns a validated ``Case`` with
    ``multiplier`` x as many cells.
    """
    from models.schema import Case

    if multiplier < 1:
        raise ValueError(f"multiplier must be >= 1, got {multiplier}")
    if multiplier == 1:
        return case
    raw = case.model_dump()

    def copy_id(item_id: str, k: int) -> str:
        return item_id if k == 0 else f"{item_id}_{k}"

    ks = range(multiplier)
    raw["regions"] = [
        {**r, "id": copy_id(r["id"], k), "name": r["name"] + (f" (copy {k})" if k else "")}
        for k in ks
        for r in raw["regions"]
    ]
    segments = []
    for k in ks:
        for s in raw["segments"]:
            households = s["households"] // multiplier + (k < s["households"] % multiplier)
            segments.append(
                {
                    **s,
                    "id": copy_id(s["id"], k),
                    "region": copy_id(s["region"], k),
                    "households": households,
                    "need_usd": s["need_usd"] / multiplier,
                    "supply_usd": s["supply_usd"] / multiplier,
                }
            )
    raw["segments"] = segments
    for p in raw["products"]:
        p["excluded_segments"] = [copy_id(x, k) for k in ks for x in p["excluded_segments"]]
    for e in raw["risk_model"]["events"]:
        if e["regions"] is not None:
            e["regions"] = [copy_id(r, k) for k in ks for r in e["regions"]]
        e["region_intensity"] = {
            copy_id(r, k): w for k in ks for r, w in e["region_intensity"].items()
        }
    raw["name"] = f"{case.name} — segments x{multiplier} (load test)"
    raw["content_sha256"] = None  # no longer the files' case
    return Case.model_validate(raw)


# --- one point, in a fresh process -----------------------------------------------------------
def worker(multiplier: int, n_scenarios: int, float32: bool, seed: int, cap_bytes: int) -> None:
    """Simulate and optimize one point; prints a JSON line after each step (last one wins)."""
    resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
    row: dict[str, Any] = {"status": "error: did not start"}
    try:
        import numpy as np

        from models import load_case, simulate
        from optimizer import optimize

        case = replicate_segments(load_case(), multiplier)
        t0 = time.perf_counter()
        scen = simulate(
            case, n_scenarios, seed=seed, n_jobs=2, dtype=np.float32 if float32 else np.float64
        )
        row = {"simulate_s": time.perf_counter() - t0, "status": "error: died in optimize"}
        print(json.dumps(row), flush=True)  # kept if the optimizer is killed
        t0 = time.perf_counter()
        res = optimize(case, scen, method="cutting_plane")
        tm = res.timings_s
        row.update(
            optimize_s=time.perf_counter() - t0,
            iterations=int(sum(tm.get(f"stage{k}_iterations", 0.0) for k in (1, 2))),
            # optimize falls back to the one-LP formulation when the cut master fails
            method=res.method + (" (fallback)" if res.fallbacks else ""),
            gap_closed_musd=res.gap_closed_usd / 1e6,
            status="ok",
        )
    except MemoryError as exc:
        row["status"] = f"out of memory ({exc})"[:200]
    except Exception as exc:  # every failure is a row, not a traceback
        text = f"{type(exc).__name__}: {exc}"
        memory = "MemoryError" in text or "Unable to allocate" in text or "bad_alloc" in text
        row["status"] = ("out of memory: " if memory else "error: ") + text[:200]
    print(json.dumps(row), flush=True)


def _session_rss_bytes(session: int) -> int:
    """Resident bytes of every process in ``session`` (the point and its workers), from /proc."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone, or not ours to read
            continue
        if int(fields[3]) == session:  # fields after ")": state ppid pgrp session ...; rss 22nd
            total += int(fields[21]) * PAGE_BYTES
    return total


def run_point(
    multiplier: int, n_scenarios: int, float32: bool, seed: int, cap_bytes: int, timeout_s: float
) -> dict[str, Any]:
    """Run one point in a fresh session; kill its whole process group at ``timeout_s``."""
    cmd = [sys.executable, __file__, "--worker", str(multiplier), str(n_scenarios)]
    cmd += [str(int(float32)), str(seed), str(cap_bytes)]
    sample = Path("/proc").is_dir()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
        t0, group_peak, timed_out = time.monotonic(), 0, False
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if sample:
                group_peak = max(group_peak, _session_rss_bytes(proc.pid))
            if time.monotonic() - t0 > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)  # the point and the workers it started
                _, wait_status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(POLL_S)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here, not by Popen
        elapsed = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
        stderr_tail = err.read().strip().splitlines()[-1:]
    row = json.loads(lines[-1]) if lines else {}
    row["rss_mib"] = rss_mib(usage.ru_maxrss)
    row["group_mib"] = group_peak / MIB if sample else None
    row["elapsed_s"] = elapsed
    if timed_out:
        row["status"] = "timeout"
    elif not lines or proc.returncode != 0:
        why = stderr_tail[0] if stderr_tail else f"exit code {proc.returncode}"
        memory = proc.returncode == -signal.SIGKILL or "MemoryError" in why
        row["status"] = ("out of memory: " if memory else "error: ") + why[:200]
    return row


# --- the search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeakFit:
    """``peak bytes ≈ a[m] + b · matrix bytes``: an intercept per multiplier, one slope.

    The intercept is what a case of that size costs before any scenario (interpreter, worker
    pool, the compiled problem: it grows with the cells); the slope is the cost per loss-matrix
    byte, the matrix plus what grows with the scenario count (the (S, K) losses of the CVaR
    measures, the factor draws, temporaries). ``lower_bound``: multipliers whose intercept comes
    from points below :data:`FIT_MIN_SCENARIOS` only (no worker pool yet). ``residual``: the
    largest relative error on the points used.
    """

    intercept: dict[int, float]
    slope: float
    residual: float
    n_points: int
    lower_bound: frozenset[int]

    def max_matrix_bytes(self, multiplier: int, memory_bytes: float) -> float | None:
        a = self.intercept.get(multiplier)
        return None if a is None else (memory_bytes - a) / self.slope


def fit_peak(rows: list[dict[str, Any]], dtype: str, slope: float | None = None) -> PeakFit | None:
    """The :class:`PeakFit` of the finished points of ``dtype``, by least squares in bytes.

    The slope comes from the points of at least :data:`FIT_MIN_SCENARIOS` (or is given, e.g.
    float64's for a dtype measured at one size); each multiplier's intercept from those points,
    or from its smaller ones when it has none. None without two such sizes of one multiplier
    (and no slope given) or with a slope that is not positive.
    """
    import numpy as np

    ok = [r for r in rows if r["status"] == "ok" and r["dtype"] == dtype]
    big = [r for r in ok if r["scenarios"] >= FIT_MIN_SCENARIOS]
    intercept: dict[int, float] = {}
    if slope is None:
        ms = sorted({r["multiplier"] for r in big})
        if all(len({r["matrix_mib"] for r in big if r["multiplier"] == m}) < 2 for m in ms):
            return None
        design = [[r["multiplier"] == m for m in ms] + [r["matrix_mib"] * MIB] for r in big]
        y = [_peak_mib(r) * MIB for r in big]
        coef = np.linalg.lstsq(np.array(design, dtype=float), np.array(y), rcond=None)[0]
        intercept, slope = dict(zip(ms, map(float, coef[:-1]), strict=True)), float(coef[-1])
    if slope <= 0:
        return None
    used = []
    for m in sorted({r["multiplier"] for r in ok}):
        pts = [r for r in big if r["multiplier"] == m] or [r for r in ok if r["multiplier"] == m]
        if m not in intercept:  # least squares at a fixed slope: the mean residual
            intercept[m] = float(np.mean([_peak_mib(r) * MIB - slope * r["matrix_mib"] * MIB
                                          for r in pts]))  # fmt: skip
        used += pts
    resid = max(
        abs(intercept[r["multiplier"]] + slope * r["matrix_mib"] * MIB - _peak_mib(r) * MIB)
        / (_peak_mib(r) * MIB)
        for r in used
    )
    lower = frozenset(m for m in intercept if not any(r["multiplier"] == m for r in big))
    return PeakFit(intercept, slope, resid, len(used), lower)


def _peak_mib(row: dict[str, Any]) -> float:
    return max(row.get("rss_mib") or 0.0, row.get("group_mib") or 0.0)


def _skip_reason(
    rows: list[dict[str, Any]], multiplier: int, matrix_mib: float, dtype: str, cap: float
) -> str:
    for r in rows:  # a smaller case that failed on a no larger matrix
        if r["dtype"] == dtype and r["multiplier"] <= multiplier and r["matrix_mib"] <= matrix_mib:
            if r["status"].startswith("out of memory"):
                return f"skipped: a {r['matrix_mib']:,.0f} MiB matrix already ran out of memory"
            if r["status"] == "timeout":
                return f"skipped: a {r['matrix_mib']:,.0f} MiB matrix already timed out"
    fit = fit_peak(rows, dtype)
    a = fit.intercept.get(multiplier) if fit else None
    if a is not None and a + fit.slope * matrix_mib * MIB > cap:
        return f"skipped: predicted peak {(a + fit.slope * matrix_mib * MIB) / GIB:.1f} GiB"
    return ""


def search(args: argparse.Namespace) -> list[dict[str, Any]]:
    from models import load_case
    from models.cells import build_cells

    base = load_case()
    dtype, itemsize = ("float32", 4) if args.float32 else ("float64", 8)
    cap = int(args.memory_gib * GIB)
    t_start, rows, stop = time.monotonic(), [], False
    for m in args.multipliers:
        case = replicate_segments(base, m)
        n_cells = len(build_cells(case))
        for n in sorted(args.scenarios):
            row: dict[str, Any] = {
                "multiplier": m, "segments": len(case.segments), "cells": n_cells,
                "scenarios": n, "dtype": dtype, "matrix_mib": n * n_cells * itemsize / MIB,
            }  # fmt: skip
            left_s = args.budget_s - (time.monotonic() - t_start)
            row["status"] = _skip_reason(rows, m, row["matrix_mib"], dtype, cap)
            if not row["status"] and left_s < MIN_POINT_S:
                row["status"], stop = "skipped: budget spent", True
            if not row["status"]:
                print(f"x{m} ({n_cells:,} cells) x {n:,} scenarios, {dtype}…", file=sys.stderr)
                row.update(
                    run_point(m, n, args.float32, args.seed, cap, min(args.timeout_s, left_s))
                )
                if row["status"] == "timeout" and left_s < args.timeout_s:
                    row["status"] = "budget"  # cut by the search's budget, not its own timeout
            row["load_1m"] = os.getloadavg()[0]
            rows.append(row)
            print(format_row(row), flush=True)
            if row["status"] != "ok" or stop:
                break
        if stop:
            break
    return rows


# --- output ----------------------------------------------------------------------------------
HEADER = (
    "| segments x | cells | scenarios | dtype | matrix MiB | simulate s | optimize s | iterations "
    "| method | rss MiB | group MiB | status |\n"
    "|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|"
)


def format_row(row: dict[str, Any]) -> str:
    def f(key: str, spec: str) -> str:
        v = row.get(key)
        return "–" if v is None else format(v, spec)

    return (
        f"| {row['multiplier']} | {row['cells']:,} | {row['scenarios']:,} | {row['dtype']} "
        f"| {row['matrix_mib']:,.0f} | {f('simulate_s', '.1f')} | {f('optimize_s', '.1f')} "
        f"| {f('iterations', 'd')} | {f('method', 's')} | {f('rss_mib', ',.0f')} "
        f"| {f('group_mib', ',.0f')} "
        f"| {row['status']} |"
    )


def summary(rows: list[dict[str, Any]], memory_gib: float) -> list[str]:
    """Largest measured point per multiplier and the extrapolated limits, as text lines."""
    lines = ["", "Largest point that finished, per multiplier and dtype (measured):"]
    for key in sorted({(r["multiplier"], r["dtype"]) for r in rows}):
        ok = [r for r in rows if (r["multiplier"], r["dtype"]) == key and r["status"] == "ok"]
        if not ok:
            failed = [r for r in rows if (r["multiplier"], r["dtype"]) == key]
            why = ", ".join(f"{r['scenarios']:,}: {r['status']}" for r in failed)
            lines.append(f"  x{key[0]} {key[1]}: none ({why})")
            continue
        r = max(ok, key=lambda r: r["scenarios"])
        lines.append(
            f"  x{key[0]} {key[1]}: {r['cells']:,} cells x {r['scenarios']:,} scenarios "
            f"({r['matrix_mib']:,.0f} MiB matrix): simulate {r['simulate_s']:.1f} s, optimize "
            f"{r['optimize_s']:.1f} s ({r['iterations']} iterations), peak {_peak_mib(r):,.0f} MiB"
        )
    fit64 = fit_peak(rows, "float64")
    for dtype, itemsize in (("float64", 8), ("float32", 4)):
        if not any(r["dtype"] == dtype for r in rows):
            continue
        fit, borrowed = fit_peak(rows, dtype), ""
        if fit is None and fit64 is not None:
            # optimistic: what grows with S besides the matrix (float64 measure losses) stays
            fit, borrowed = fit_peak(rows, dtype, fit64.slope), " (float64's, optimistic)"
        if fit is None:
            lines.append(f"\nNo {dtype} fit: no multiplier finished at two sizes.")
            continue
        a = ", ".join(f"x{m} {v / MIB:,.0f}" for m, v in fit.intercept.items())
        lines += [
            f"\nFit ({dtype}, {fit.n_points} points): peak ≈ a[m] + {fit.slope:.2f}{borrowed} x "
            f"matrix bytes, a[m] in MiB: {a}; largest residual {fit.residual:.1%}",
            f"Extrapolated, not measured (largest matrix, then scenarios, at {memory_gib:g} GiB "
            f"/ {MACHINE_GIB:g} GiB):",
        ]
        cells = {r["multiplier"]: r["cells"] for r in rows}
        for m in fit.intercept:
            flag = " (intercept lacks the worker pool: high)" if m in fit.lower_bound else ""
            caps = [fit.max_matrix_bytes(m, g * GIB) or 0.0 for g in (memory_gib, MACHINE_GIB)]
            lines.append(
                f"  x{m} ({cells[m]:,} cells, {dtype}): {caps[0] / GIB:,.1f} / "
                f"{caps[1] / GIB:,.1f} GiB, {caps[0] / (cells[m] * itemsize):,.0f} / "
                f"{caps[1] / (cells[m] * itemsize):,.0f} scenarios{flag}"
            )
    return lines


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier run, typed back for :func:`summary`."""
    ints, floats = ("multiplier", "segments", "cells", "scenarios"), ("matrix_mib",)
    floats += ("simulate_s", "optimize_s", "rss_mib", "group_mib")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for key in ints + floats + ("iterations",):
            v = r.get(key)
            r[key] = None if v in (None, "") else (float(v) if key in floats else int(float(v)))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        m, n, f32, seed, cap = (int(v) for v in argv[1:6])
        worker(m, n, bool(f32), seed, cap)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multipliers", nargs="+", type=int, default=list(DEFAULT_MULTIPLIERS))
    parser.add_argument("--scenarios", nargs="+", type=int, default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--float32", action="store_true", help="simulate the losses as float32")
    parser.add_argument("--budget-s", type=float, default=1200.0, help="whole search, seconds")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per point, seconds")
    parser.add_argument("--memory-gib", type=float, default=DEFAULT_MEMORY_GIB,
                        help="address-space cap per point, GiB")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="rows are appended here")
    parser.add_argument("--refit", action="store_true",
                        help="run nothing: summarise and fit every row already in --csv")  # fmt: skip
    args = parser.parse_args(argv)
    if args.refit:
        print("\n".join(summary(_read_csv(args.csv), args.memory_gib)))
        return

    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} cores\n\n{HEADER}", flush=True)  # fmt: skip
    rows = search(args)
    print("\n".join(summary(rows, args.memory_gib)))
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stamped = ({**r, "timestamp": stamp, "host": platform.node()} for r in rows)
    append_csv(args.csv, CSV_FIELDS, stamped, extrasaction="ignore")
    print(f"{len(rows)} row(s) appended to {args.csv}")


if __name__ == "__main__":
    main()
