"""What validated confidence margins cost on the shipped case, and how often limits break.

Default mode: for each seed (7, 8, 9 unless told), draws the shipped case at 10^5 scenarios
(plain Monte Carlo, float64: ``simulate(case, n, seed=seed)``) and a validation set at
``seed + VALIDATION_SEED_OFFSET``, and holds every risk limit at 0.95 twice: with margins of
``z · SE`` in sample (no validation) and validated (:func:`optimizer.analysis.confidence.hold_limits`
with ``validation=``). Prints, per method, the margined solves, the weighted gap added and the
gap closed given up, the seconds of ``hold_limits`` and the breaches on an independent set
(``seed + 1,000,003``).

``--breach``: the small case of ``tests/test_confidence.py`` (SEN's CVaR95 binds) over seeds
``--first`` to ``--last``: how often the binding limit's true value (400,000 independent
scenarios) is above the limit without margins, with ``z · SE`` and with validated margins.

Usage::

    python benchmarks/bench_confidence.py                        # shipped case, seeds 7 8 9
    python benchmarks/bench_confidence.py --breach --first 0 --last 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def shipped(seeds: list[int], n_scenarios: int) -> None:
    from models import load_case, simulate
    from optimizer.analysis.confidence import VALIDATION_SEED_OFFSET, hold_limits
    from optimizer.analysis.evaluate import evaluate
    from optimizer.door.run import OUT_OF_SAMPLE_SEED_OFFSET

    case = load_case()
    print(f"{n_scenarios:,} scenarios; US$m")
    print("seed  margins     solves  weighted gap added  gap closed given up  seconds  breaches")
    for seed in seeds:
        scen = simulate(case, n_scenarios, seed=seed)
        validation = simulate(case, n_scenarios, seed=seed + VALIDATION_SEED_OFFSET)
        oos = simulate(case, n_scenarios, seed=seed + OUT_OF_SAMPLE_SEED_OFFSET)
        for name, v in (("z SE", None), ("validated", validation)):
            start = time.perf_counter()
            res = hold_limits(case, scen, 0.95, validation=v).allocation
            seconds = time.perf_counter() - start
            c, checks = res.confidence, evaluate(case, res, oos).checks
            print(f"{seed:>4}  {name:<10}  {c.solves:>6}  {c.cost_weighted_gap_usd / 1e6:>18.1f}  "
                  f"{c.cost_gap_closed_usd / 1e6:>19.1f}  {seconds:>7.1f}  "
                  f"{int(checks['breached'].sum()):>8}", flush=True)  # fmt: skip


def breach(first: int, last: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from optimizer_cases import modified, random_case, synthetic_scenarios

    from optimizer.analysis.confidence import VALIDATION_SEED_OFFSET, optimize_with_confidence
    from optimizer.analysis.evaluate import evaluate
    from optimizer.analysis.margins import limit_rows

    case = modified(random_case(5), sources={"SEN": {"cvar_alpha": 0.95}})
    truth = synthetic_scenarios(case, 400_000, 4242)
    counts = {"without": 0, "z SE": 0, "validated": 0}
    n = 0
    for seed in range(first, last):
        scen = synthetic_scenarios(case, 4_000, seed)
        validation = synthetic_scenarios(case, 4_000, seed + VALIDATION_SEED_OFFSET)
        off = optimize_with_confidence(case, scen, 0)
        at_limit = {
            (r.family, r.owner)
            for r in limit_rows(evaluate(case, off, scen)).itertuples()
            if r.excess > -1e-6 * abs(r.limit) - 1
        }
        n += len(at_limit)
        results = {
            "without": off,
            "z SE": optimize_with_confidence(case, scen, 0.95),
            "validated": optimize_with_confidence(case, scen, 0.95, validation=validation),
        }
        for name, res in results.items():
            rows = limit_rows(evaluate(case, res, truth)).itertuples()
            counts[name] += sum(bool(r.breached) for r in rows if (r.family, r.owner) in at_limit)
        print(f"seed {seed}: " + ", ".join(f"{k} {v} of {n}" for k, v in counts.items()),
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--breach", action="store_true", help="the small case's breach rates")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=60)
    args = parser.parse_args()
    if args.breach:
        breach(args.first, args.last)
    else:
        shipped(args.seeds, args.scenarios)


if __name__ == "__main__":
    main()
