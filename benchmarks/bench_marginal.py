"""Marginal values by re-solve on the shipped case: the figures a committee is told, and what
they cost against one solve.

In one process: simulate the default case (float32 losses by default), ``optimize`` it with the
cutting plane (timed: "one solve"), then :func:`optimizer.analysis.marginal.marginal_values` (timed: the
marginal-value step, every binding group relaxed and tightened, both stages each). Prints the
two lines the LP dual got wrong on this case (US$1m more money from PUB_GUAR; US$1m less net
income required of PRIV_SOCIAL), every programme lever's dual against its re-solve, and both
times; appends one row to ``benchmarks/results_marginal.csv``.

Usage::

    python benchmarks/bench_marginal.py                        # 100,000 scenarios, float32
    python benchmarks/bench_marginal.py --scenarios 10000 --jobs 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import time
from pathlib import Path

from _common import append_csv, maxrss_mib

CSV_PATH = Path(__file__).resolve().parent / "results_marginal.csv"
CSV_FIELDS = (
    "timestamp", "host", "scenarios", "dtype", "jobs", "groups", "resolves", "solve_s",
    "marginal_s", "x_one_solve", "per_resolve_s", "flagged_levers", "pub_guar_dual_m",
    "pub_guar_resolved_m", "priv_social_dual_m", "priv_social_resolved_m",
    "priv_social_resolved_gap_m", "peak_mib",
)  # fmt: skip
EXAMPLES = (("budget", "PUB_GUAR"), ("return_hurdle", "PRIV_SOCIAL"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1, help="workers of the marginal step")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()

    import numpy as np

    from models import load_case, simulate
    from optimizer import optimize
    from optimizer.analysis.marginal import committee_lines, marginal_groups, marginal_values

    case = load_case()
    scen = simulate(case, args.scenarios, seed=args.seed, dtype=np.dtype(args.dtype).type)
    start = time.perf_counter()
    base = optimize(case, scen, method="cutting_plane")
    solve_s = time.perf_counter() - start
    start = time.perf_counter()
    res = marginal_values(case, scen, base, n_jobs=args.jobs)
    marginal_s = time.perf_counter() - start
    groups = len(marginal_groups(base.binding))

    m = 1e6
    print(f"default case, {args.scenarios:,} scenarios ({args.dtype}), seed {args.seed}, "
          f"cutting plane; weighted gap US${base.objective_weighted_gap_usd / m:,.1f}m")  # fmt: skip
    rows = res.binding.set_index(["family", "subject"])
    picked = {}
    for key in EXAMPLES:
        if key not in rows.index:
            print(f"  {key[0]} {key[1]}: not binding on these scenarios")
            continue
        r = rows.loc[key]
        picked[key] = r
        print(f"  {r['relaxation'].replace('US$1 ', 'US$1m ')}: LP dual US$"
              f"{r['dual_gain_usd'] / m:,.1f}m of weighted gap; re-solve closes US$"
              f"{r['resolved_gain_usd'] / m:,.1f}m weighted, US$"
              f"{r['resolved_gain_gap_usd'] / m:,.1f}m of credit gap"
              f"{'  [dual disagrees]' if r['dual_disagrees'] else ''}")  # fmt: skip
    lines = committee_lines(res.binding)
    print(f"\n{len(lines)} levers (programme rows, one per group), US$m of weighted gap:")
    print("| lever | dual | re-solved gain | re-solved loss | credit gap gain | dual off |")
    print("|---|---:|---:|---:|---:|---|")
    for r in lines.itertuples():
        print(f"| {r.marginal_group} | {r.dual_gain_usd / m:,.1f} | {r.resolved_gain_usd / m:,.1f}"
              f" | {r.resolved_loss_usd / m:,.1f} | {r.resolved_gain_gap_usd / m:,.1f} | "
              f"{'yes' if r.dual_disagrees else ''} |")  # fmt: skip
    print(f"\none solve: {solve_s:.2f} s; marginal values: {marginal_s:.2f} s "
          f"({marginal_s / solve_s:.1f}x one solve; {groups} groups, {2 * groups} re-solves of "
          f"both stages plus the base, {args.jobs} job(s))")  # fmt: skip

    def example(key, column):
        return round(float(picked[key][column]) / m, 3) if key in picked else None

    append_csv(
        CSV_PATH,
        CSV_FIELDS,
        [
            {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "host": platform.node(),
                "scenarios": args.scenarios,
                "dtype": args.dtype,
                "jobs": args.jobs,
                "groups": groups,
                "resolves": 2 * groups,
                "solve_s": round(solve_s, 3),
                "marginal_s": round(marginal_s, 3),
                "x_one_solve": round(marginal_s / solve_s, 2),
                "per_resolve_s": round(marginal_s / max(2 * groups + 1, 1), 3),
                "flagged_levers": int(lines["dual_disagrees"].sum()),
                "pub_guar_dual_m": example(EXAMPLES[0], "dual_gain_usd"),
                "pub_guar_resolved_m": example(EXAMPLES[0], "resolved_gain_usd"),
                "priv_social_dual_m": example(EXAMPLES[1], "dual_gain_usd"),
                "priv_social_resolved_m": example(EXAMPLES[1], "resolved_gain_usd"),
                "priv_social_resolved_gap_m": example(EXAMPLES[1], "resolved_gain_gap_usd"),
                "peak_mib": round(maxrss_mib(resource.RUSAGE_SELF), 1),
            }
        ],
    )


if __name__ == "__main__":
    main()
