"""Cutting plane against the one-LP formulation on the default case: time ratio, same optimum.

The one-LP formulation (one variable and one row per scenario and CVaR, Rockafellar–Uryasev) is
built straight into HiGHS (:func:`optimizer.formulation.scenario_rows.solve_one_lp`), which needs about half
the memory of cvxpy's model of it (``optimize(..., method="lp")``, 2.6 GiB at 10^4 scenarios and
~26 GiB at 10^5) and none of its compile time, so the comparison is against the strongest
version of the baseline. Both solve stage 1 (the least weighted gap) of the same scenarios;
their optima must agree to 1e-6. Each side runs in a fresh subprocess, so peak memory is its
own. The cutting plane's full ``optimize`` (both stages and the result tables) is timed too.

Usage::

    python benchmarks/bench_one_lp.py                        # 10^3 and 10^4 scenarios
    python benchmarks/bench_one_lp.py --scenarios 100000 --lp-time-limit 3600

A one-LP solve stopped by ``--lp-time-limit`` prints its ratio as a lower bound (``>=``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _common import WorkerFailed, append_csv, maxrss_mib, run_worker

CSV_PATH = Path(__file__).resolve().parent / "results_one_lp.csv"


def _scenarios(n: int, seed: int):
    from models import load_case, simulate

    case = load_case()
    return case, simulate(case, n, seed=seed)


def one_lp(n: int, seed: int, time_limit_s: float) -> dict[str, Any]:
    from optimizer.formulation.problem import build_problem
    from optimizer.formulation.scenario_rows import solve_one_lp

    case, scen = _scenarios(n, seed)
    t0 = time.perf_counter()
    prob = build_problem(case, scen, "cuts")
    status, _ = solve_one_lp(prob, time_limit_s)
    seconds = time.perf_counter() - t0
    optimal = status == "optimal"
    return {
        "stage1_s": seconds,
        "status": status,
        "optimum": float(prob.problem.value) if optimal else float("nan"),
        "peak_mib": maxrss_mib(resource.RUSAGE_SELF),
    }


def cutting_plane(n: int, seed: int) -> dict[str, Any]:
    from optimizer import optimize
    from optimizer.formulation.problem import build_problem
    from optimizer.solve import solve_stage

    case, scen = _scenarios(n, seed)
    t0 = time.perf_counter()
    optimize(case, scen, method="cutting_plane")
    optimize_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # second: the first run paid the one-off imports and set-up
    prob = build_problem(case, scen, "cuts")
    log = solve_stage(prob, 1, "HIGHS", None)
    stage1_s = time.perf_counter() - t0
    return {
        "stage1_s": stage1_s,
        "optimum": float(prob.problem.value),
        "iterations": int(log.timings["stage1_iterations"]),
        "optimize_s": optimize_s,
        "peak_mib": maxrss_mib(resource.RUSAGE_SELF),
    }


def _run(*args: str) -> dict[str, Any]:
    try:
        return run_worker(__file__, args)
    except WorkerFailed as exc:
        raise SystemExit(f"worker {args} failed: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, n, seed = argv[1], int(argv[2]), int(argv[3])
        row = one_lp(n, seed, float(argv[4])) if kind == "lp" else cutting_plane(n, seed)
        print(json.dumps(row))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", type=int, default=[1_000, 10_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lp-time-limit", type=float, default=3600.0, help="seconds")
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="append rows to this CSV")
    args = parser.parse_args(argv)
    header = (
        f"{'scenarios':>9} {'cuts stage1 s':>13} {'iters':>5} {'cuts optimize s':>15} "
        f"{'one-LP stage1 s':>15} {'one-LP status':>13} {'ratio':>8} {'rel. diff':>9} "
        f"{'cuts MiB':>8} {'one-LP MiB':>10}"
    )
    print(header)
    for n in args.scenarios:
        cuts = _run("cuts", str(n), str(args.seed))
        lp = _run("lp", str(n), str(args.seed), str(args.lp_time_limit))
        solved = lp["status"] == "optimal"
        ratio = lp["stage1_s"] / cuts["stage1_s"]
        diff = abs(lp["optimum"] - cuts["optimum"]) / abs(lp["optimum"]) if solved else None
        row = {
            "scenarios": n,
            "seed": args.seed,
            "cuts_stage1_s": round(cuts["stage1_s"], 3),
            "cuts_iterations": cuts["iterations"],
            "cuts_optimize_s": round(cuts["optimize_s"], 3),
            "one_lp_stage1_s": round(lp["stage1_s"], 3),
            "one_lp_status": lp["status"],
            "ratio": round(ratio, 2),
            "ratio_is_lower_bound": not solved,
            "optimum_rel_diff": diff,
            "cuts_peak_mib": round(cuts["peak_mib"]),
            "one_lp_peak_mib": round(lp["peak_mib"]),
        }
        append_csv(args.csv, list(row), [row])
        print(
            f"{n:>9,} {cuts['stage1_s']:>13.2f} {cuts['iterations']:>5d} "
            f"{cuts['optimize_s']:>15.2f} {lp['stage1_s']:>15.2f} {lp['status']:>13} "
            f"{('>=' if not solved else '') + f'{ratio:.1f}x':>8} "
            f"{'–' if diff is None else f'{diff:.1e}':>9} {cuts['peak_mib']:>8,.0f} "
            f"{lp['peak_mib']:>10,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
