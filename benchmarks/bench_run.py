"""The whole default ``ppcfin run`` on the shipped case, with where its time goes.

Runs the command line in this process (``ppcfin run --out TMP``, defaults unless told: 100,000
scenarios, seed 7, every analysis on the headline's scenario set), then reads the run's own
``timings.json`` for the breakdown: simulate, optimize, the out-of-sample set and its check, the
frontier, the sensitivity sweep, the stress tests; what is left of the wall time is writing the
files and rendering the HTML, PDF and workbook. As a baseline, one ``optimize`` of the same
scenario count is timed in the same process first, so the ratio run / optimize says what the
analyses cost in solves whatever the machine's speed. Target: <= 120 s on 2 cores.

Usage::

    python benchmarks/bench_run.py                  # the default run, one worker
    python benchmarks/bench_run.py --jobs 2
    python benchmarks/bench_run.py --scenarios 20000 --float32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import maxrss_mib

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS

TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=DEFAULT_SCENARIOS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--float32", action="store_true")
    args = parser.parse_args()

    from models import load_case, simulate
    from optimizer import optimize
    from optimizer.door.cli import main as ppcfin

    case = load_case()
    dtype = "float32" if args.float32 else "float64"
    start = time.perf_counter()
    scen = simulate(case, args.scenarios, seed=args.seed, method=DEFAULT_SAMPLING,
                    n_jobs=args.jobs, dtype=dtype)  # fmt: skip
    simulate_s = time.perf_counter() - start
    start = time.perf_counter()
    optimize(case, scen)
    optimize_s = time.perf_counter() - start
    del scen
    print(f"baseline: simulate {simulate_s:.1f} s, optimize {optimize_s:.1f} s "
          f"({args.scenarios:,} scenarios, {dtype})")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = ["run", "-n", str(args.scenarios), "--seed", str(args.seed), "--jobs",
                str(args.jobs), "--out", str(out)] + (["--float32"] if args.float32 else [])  # fmt: skip
        start = time.perf_counter()
        code = ppcfin(argv)
        total_s = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"ppcfin run exited {code}")
        steps = json.loads((out / "timings.json").read_text(encoding="utf-8"))["run_s"]
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))

    shown = [a for i, a in enumerate(argv) if a != "--out" and argv[i - 1] != "--out"]
    print(f"\nppcfin {' '.join(shown)}: {total_s:.1f} s (target <= {TARGET_S:.0f} s: "
          f"{'met' if total_s <= TARGET_S else 'NOT met'}), peak {maxrss_mib():,.0f} MiB")  # fmt: skip
    for name, seconds in steps.items():
        print(f"  {name:<26} {seconds:7.1f} s  {seconds / total_s:6.1%}")
    rest = total_s - sum(steps.values())
    print(f"  {'files and reports':<26} {rest:7.1f} s  {rest / total_s:6.1%}")
    print(f"run / one optimize: {total_s / optimize_s:.1f}x")
    draws = {name: (d["n_scenarios"], d["seed"]) for name, d in run["analyses"].items()}
    print(f"scenario sets: {draws}")


if __name__ == "__main__":
    main()
