"""Optimisation speed and memory on the shipped default case, split by where the time goes.

Each point (number of scenarios, method) runs in a fresh subprocess, so its peak resident memory
is its own: ``resource.getrusage`` ``ru_maxrss`` of the process plus that of its children (an
upper bound when both peak). The time of ``optimize`` is split, from ``Allocation.timings_s``,
into model building (``build_s``: loss coefficients and cvxpy expressions), cvxpy
canonicalization (``stage{1,2}_canonicalize_s``: cvxpy's wall time minus the solver's own) and
solver time (``stage{1,2}_solve_s``); the cutting-plane method adds its tail-oracle passes
(``stage{1,2}_oracle_s``) and iterations. ``optimize_cpu_s`` is the CPU time of the call, less
exposed than its wall time to other jobs on the machine. Simulating the scenarios is timed apart (on two workers from 500,000 scenarios);
``--dtype float32`` simulates the loss matrix in float32.

Usage::

    python benchmarks/bench_optimize.py                     # 10^3 and 10^4 scenarios
    python benchmarks/bench_optimize.py --method cutting_plane
    python benchmarks/bench_optimize.py --full              # adds 10^5 (lp: ~26 GiB)
    python benchmarks/bench_optimize.py --scenarios 2000 5000 --method lp auto
    python benchmarks/bench_optimize.py --scenarios 1000000 --method cutting_plane --dtype float32

``--method`` is passed to ``optimize(..., method=...)`` when ``optimize`` accepts it; otherwise
only the one-LP formulation exists and the column says ``lp``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import sys
import time
from typing import Any

from _common import WorkerFailed, maxrss_mib, run_worker

DEFAULT_SIZES = (1_000, 10_000)
FULL_SIZES = (*DEFAULT_SIZES, 100_000)
METHODS = ("lp", "cutting_plane", "auto")
COLUMNS = (  # key, width, format spec
    ("scenarios", 9, ",d"),
    ("method", 13, "s"),
    ("simulate_s", 10, ".2f"),
    ("build_s", 8, ".2f"),
    ("canon_s", 8, ".2f"),
    ("solve_s", 8, ".2f"),
    ("oracle_s", 8, ".2f"),
    ("iters", 5, "d"),
    ("optimize_s", 10, ".2f"),
    ("optimize_cpu_s", 14, ".2f"),
    ("peak_mib", 8, ",.0f"),
    ("matrix_mib", 10, ",.1f"),
    ("gap_closed_musd", 15, ",.3f"),
)


def worker(n_scenarios: int, method: str, seed: int, dtype: str) -> dict[str, Any]:
    """One point, in this (fresh) process."""
    from models import load_case, simulate
    from optimizer import optimize

    case = load_case()
    t0 = time.perf_counter()
    # two workers pay loky's ~1.5 s start-up, which only pays off at large counts
    jobs = 2 if n_scenarios >= 500_000 else 1
    scen = simulate(case, n_scenarios, seed=seed, dtype=dtype, n_jobs=jobs)
    simulate_s = time.perf_counter() - t0
    kwargs = {}
    if "method" in inspect.signature(optimize).parameters:
        kwargs["method"] = method
    t0, c0 = time.perf_counter(), time.process_time()
    res = optimize(case, scen, **kwargs)
    optimize_s = time.perf_counter() - t0
    # CPU seconds of this process: on a machine shared with other jobs they move far less
    # than the wall time (the optimizer runs on one thread; BLAS is held to one in the oracle)
    optimize_cpu_s = time.process_time() - c0
    tm = res.timings_s

    def both(key: str) -> float:
        return sum(float(tm.get(f"stage{k}_{key}", 0.0)) for k in (1, 2))

    return {
        "scenarios": n_scenarios,
        "method": getattr(res, "method", "lp"),
        "simulate_s": simulate_s,
        "build_s": float(tm.get("build_s", 0.0)),
        "canon_s": both("canonicalize_s"),
        "solve_s": both("solve_s"),
        "oracle_s": both("oracle_s"),
        "iters": int(both("iterations")),
        "optimize_s": optimize_s,
        "optimize_cpu_s": optimize_cpu_s,
        "peak_mib": maxrss_mib(resource.RUSAGE_SELF) + maxrss_mib(resource.RUSAGE_CHILDREN),
        "matrix_mib": scen.losses.nbytes / 2**20,
        "gap_closed_musd": res.gap_closed_usd / 1e6,
        "status": res.status,
        "solver": res.solver,
        "fallbacks": list(res.fallbacks),
        "timings_s": dict(tm),
    }


def run_point(n_scenarios: int, method: str, seed: int, dtype: str) -> dict[str, Any]:
    try:
        return run_worker(__file__, [str(n_scenarios), method, str(seed), dtype])
    except WorkerFailed as exc:
        return {"scenarios": n_scenarios, "method": method, "error": str(exc)}


def format_row(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['scenarios']:>9,} {row['method']:>13}  FAILED: {row['error']}"
    return " ".join(f"{row[key]:>{width}{spec}}" for key, width, spec in COLUMNS)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        n, method, seed, dtype = int(argv[1]), argv[2], int(argv[3]), argv[4]
        print(json.dumps(worker(n, method, seed, dtype)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", nargs="+", choices=METHODS, default=["lp"])
    parser.add_argument("--full", action="store_true", help="add 10^5 scenarios (very slow)")
    parser.add_argument("--scenarios", nargs="+", type=int, help="scenario counts to run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="loss matrix dtype"
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sizes = args.scenarios or (FULL_SIZES if args.full else DEFAULT_SIZES)
    if max(sizes) >= 100_000 and "lp" in args.method:
        print(
            "warning: cvxpy's one-LP model grows by ~260 MiB per 1,000 scenarios (~26 GiB at "
            "10^5); benchmarks/bench_one_lp.py builds the same LP in HiGHS in ~10 GiB",
            file=sys.stderr,
        )
    print(" ".join(f"{key:>{width}}" for key, width, _ in COLUMNS))
    rows = []
    for n in sizes:
        for method in args.method:
            row = run_point(n, method, args.seed, args.dtype)
            rows.append(row)
            print(format_row(row), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
