"""The tail oracle's VaR and tail excess against the reference selection, in one process.

A pass of the cutting plane gives an (S, K) matrix of every measure's scenario losses; each
iteration then needs every measure's VaR and tail excess. ``TailOracle.var_and_excess`` copies
each column contiguous before selecting (equal weights, S >= 65,536); the reference is
``models.risk_measures.var_and_excess_by_column``. Squared standard normals stand in for the
losses (seeded); the levels are the default case's (three at 0.99, six at 0.95). CPU seconds
(``time.process_time``), best of ``--repeat``, alternating the two.

Usage::

    python benchmarks/bench_var.py                      # 10^6 x 9, float32
    python benchmarks/bench_var.py --scenarios 100000 --dtype float64
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=1_000_000)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from models.risk_measures import var_and_excess_by_column
    from optimizer.formulation.tail_oracle import TailOracle

    rng = np.random.default_rng(7)
    n = args.scenarios
    losses = (rng.standard_normal((n, 9)) ** 2).astype(args.dtype)
    alphas = np.array([0.99, 0.99, 0.95, 0.95, 0.99, 0.95, 0.95, 0.95, 0.95])
    p = np.full(n, 1.0 / n)
    oracle = TailOracle.__new__(TailOracle)  # only the weights matter here
    oracle.p, oracle.equal_weights = p, True
    best = {"reference": np.inf, "oracle": np.inf}
    for _ in range(args.repeat):
        start = time.process_time()
        ref = var_and_excess_by_column(losses, p, alphas)
        best["reference"] = min(best["reference"], time.process_time() - start)
        start = time.process_time()
        got = oracle.var_and_excess(losses, alphas)
        best["oracle"] = min(best["oracle"], time.process_time() - start)
    same_var = bool(np.array_equal(ref[0], got[0]))
    excess_diff = float(np.max(np.abs(ref[1] - got[1]) / np.abs(ref[1])))
    print(f"{n:,} x 9 {args.dtype}: reference {best['reference']:.3f} s, oracle "
          f"{best['oracle']:.3f} s CPU ({best['reference'] / best['oracle']:.1f}x); "
          f"same VaR: {same_var}; excess max rel. diff {excess_diff:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
