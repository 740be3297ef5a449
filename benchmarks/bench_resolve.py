"""Re-solving a changed problem from a base's cuts, against re-solving it from no cut.

The default case is built once (cutting plane) and its stage 1 solved: the base. Its cut pool
(:meth:`optimizer.formulation.cutting_plane.CutMaster.snapshot`) is taken, then each CVaR-limited funder's
limit is relaxed by US$1m in turn (its ``cvar_scale`` parameter, so the problem is not
recompiled) and stage 1 solved twice: from no cut (``CutMaster.reset``) and from the base's
pool (``CutMaster.start``). Both run in this one process, alternately, so a busy machine slows
both alike; seconds are wall and CPU (``time.process_time``), the ratio is cold over warm.

Usage::

    python benchmarks/bench_resolve.py                     # 20,000 scenarios
    python benchmarks/bench_resolve.py --scenarios 100000
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _solve(prob, scale: np.ndarray, pool) -> dict[str, float]:
    from optimizer.solve import solve_stage

    prob.cvar_scale.value = scale
    if pool is None:
        prob.cut_master.reset()
    else:
        prob.cut_master.start(pool)
    wall, cpu = time.perf_counter(), time.process_time()
    log = solve_stage(prob, 1)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "iterations": log.timings["stage1_iterations"],
        "gap": float(prob.weighted_gap.value),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--relax-usd-m", type=float, default=1.0, help="US$m added to a limit")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from models import load_case, simulate
    from optimizer.formulation.blas_threads import one_blas_thread
    from optimizer.formulation.problem import build_problem

    case = load_case()
    dtype = "float32" if args.scenarios >= 500_000 else "float64"
    jobs = 2 if args.scenarios >= 500_000 else 1
    scenarios = simulate(case, args.scenarios, seed=args.seed, dtype=dtype, n_jobs=jobs)
    with one_blas_thread():  # the same digits whatever the machine's BLAS threads
        prob = build_problem(case, scenarios, "cuts")
        base_scale = np.array(prob.cvar_scale.value, dtype=float)
        base = _solve(prob, base_scale, None)
        pool = prob.cut_master.snapshot()
        print(f"Default case, {args.scenarios:,} scenarios: base stage 1 {base['iterations']:.0f} "
              f"iterations, {base['wall']:.2f} s ({base['cpu']:.2f} s CPU); pool: "
              f"{len(pool.rows)} binding cut rows, {len(pool.pool)} pooled\n")  # fmt: skip
        print(
            "| limit relaxed by US$1m | cold iterations | cold s (CPU) | warm iterations "
            "| warm s (CPU) | x faster (CPU) | optimum rel. diff |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        measures = {m.name: m for m in prob.cut_measures}
        for i, source in enumerate(prob.cvar_limited):
            limit = float(measures[source].limit.value) / base_scale[i]  # US$m at scale 1
            scale = base_scale.copy()
            scale[i] = (base_scale[i] * limit + args.relax_usd_m) / limit
            cold = _solve(prob, scale, None)
            warm = _solve(prob, scale, pool)
            diff = abs(warm["gap"] - cold["gap"]) / max(abs(cold["gap"]), 1.0)
            print(f"| {source} | {cold['iterations']:.0f} | {cold['wall']:.2f} "
                  f"({cold['cpu']:.2f}) | {warm['iterations']:.0f} | {warm['wall']:.2f} "
                  f"({warm['cpu']:.2f}) | {cold['cpu'] / max(warm['cpu'], 1e-9):.1f} | "
                  f"{diff:.1e} |")  # fmt: skip
        prob.cvar_scale.value = base_scale


if __name__ == "__main__":
    main()
