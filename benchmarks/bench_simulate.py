"""Simulation speed and memory on the shipped default case, against the raw limit.

The raw limit is what any simulator of this loss matrix must at least do: draw S x J standard
normals and evaluate the normal CDF (scipy.special.ndtr) on them. Each configuration runs in a
fresh subprocess, so its peak resident memory (parent + workers) is its own.

Usage::

    python benchmarks/bench_simulate.py            # 10^5 and 10^6 scenarios, 1 and 2 jobs
    python benchmarks/bench_simulate.py --quick    # 10^5 only

Targets: 10^6 scenarios within 3x of the raw limit; peak memory near one copy of the loss matrix.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from scipy import special
    from models import load_case, simulate
    kind, n, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    case = load_case()
    n_cells = simulate(case, 10, seed=1).n_cells
    t0 = time.perf_counter()
    if kind == "raw":
        rng = np.random.default_rng(1)
        z = rng.standard_normal((n, n_cells))
        special.ndtr(z, out=z)
    else:
        scen = simulate(case, n, seed=7, n_jobs=jobs)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "n_cells": n_cells}))
    """
)


def run(kind: str, n: int, jobs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(n), str(jobs)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^5 scenarios only")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    print(
        f"{'scenarios':>10} {'jobs':>4} {'seconds':>8} {'scen/s':>10} {'peak MiB':>9} "
        f"{'matrix MiB':>10} {'raw s':>7} {'x raw':>6}"
    )
    for n in sizes:
        raw = run("raw", n, 1)
        matrix_mib = n * raw["n_cells"] * 8 / 2**20
        for jobs in (1, 2):
            res = run("simulate", n, jobs)
            print(
                f"{n:>10,} {jobs:>4} {res['seconds']:>8.2f} {n / res['seconds']:>10,.0f} "
                f"{res['peak_mib']:>9,.0f} {matrix_mib:>10,.0f} {raw['seconds']:>7.2f} "
                f"{res['seconds'] / raw['seconds']:>6.2f}"
            )


if __name__ == "__main__":
    main()
