"""The plain minimum-CVaR portfolio: our engine against Riskfolio-Lib, skfolio and PyPortfolioOpt.

The problem every one of them solves: S scenarios x 50 assets of returns, minimise the CVaR at
α = 0.95 of the portfolio loss over weights ``w >= 0`` summing to 1, each at most 0.1, with the
expected return (the sample mean, equal scenario weights) at least the 75th percentile of the
assets' mean returns, so that the floor and some caps bind.

Return model (``numpy.random.default_rng(seed)``, documented so anyone can rebuild it): drifts
``μ_j ~ N(5e-4, 3e-4²)``, a mixing matrix ``A ~ N(0, 0.01²) / √50`` (50 x 50), and returns
``R = μ + T A`` with ``T`` i.i.d. Student-t with 4 degrees of freedom: daily-sized, correlated,
fat-tailed returns. The same seed and S give the same matrix in every process.

Each (S, solver) point runs in a fresh subprocess (``--worker``) with a timeout: it builds the
matrix, imports the solver's package (timed apart, not counted), then times the call that goes
from the returns to the weights (for the peers: the DataFrame, the model object and its
optimisation, with each package's default solver; for ours: ``min_cvar_portfolio``, validation
and the exact CVaR of the answer included). Peak memory is the worker's ``ru_maxrss``, data and
imports included. Back in this process the CVaR of every answer is recomputed from its weights
with ``models.risk_measures.conditional_value_at_risk`` (the peers report CVaR in their own
conventions) and compared with ours (``method="auto"``): equal within 1e-5 relative, or the row
says FAIL. ``max viol`` is the answer's largest breach of the budget, caps or floor (the floor in
return units). A package that does not import is reported as "not installed".

The machine is shared: the 1-minute load average is printed with every row and written to
``benchmarks/results_peers.csv``, to which every row is appended.

Usage::

    pip install -e ".[bench]"                       # the three peers (never a runtime need)
    python benchmarks/bench_peers.py                # 10^4 and 10^5 scenarios, everything
    python benchmarks/bench_peers.py --scenarios 10000 --peers skfolio --ours auto dual
    python benchmarks/bench_peers.py --timeout 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from _common import WorkerFailed, append_csv, maxrss_mib, run_worker

ASSETS = 50
ALPHA = 0.95
MAX_WEIGHT = 0.1
FLOOR_QUANTILE = 0.75
"""The return floor: this quantile of the assets' mean returns."""
REL_TOL = 1e-5
PEERS = ("riskfolio", "skfolio", "pypfopt")
OURS = ("auto", "column_generation", "dual", "cutting_plane", "lp")
DEFAULT_OURS = ("auto", "dual", "cutting_plane", "lp")
CSV_PATH = Path(__file__).resolve().parent / "results_peers.csv"
CSV_FIELDS = (
    "timestamp", "host", "scenarios", "assets", "solver", "version", "backend", "status",
    "seconds", "import_s", "peak_mib", "cvar", "rel_diff", "max_violation", "x_ours",
    "iterations", "load_1m",
)  # fmt: skip


def make_problem(n_scenarios: int, seed: int):
    """Returns (S, 50) and the return floor, from the documented model."""
    import numpy as np

    rng = np.random.default_rng(seed)
    drift = rng.normal(5e-4, 3e-4, ASSETS)
    mixing = rng.normal(0.0, 0.01, (ASSETS, ASSETS)) / np.sqrt(ASSETS)
    returns = drift + rng.standard_t(4, (n_scenarios, ASSETS)) @ mixing
    return returns, float(np.quantile(returns.mean(axis=0), FLOOR_QUANTILE))


def _riskfolio(returns, floor):
    import pandas as pd
    import riskfolio as rp

    start = time.perf_counter()
    frame = pd.DataFrame(returns, columns=[f"a{j}" for j in range(ASSETS)])
    port = rp.Portfolio(returns=frame, alpha=1.0 - ALPHA, upperlng=MAX_WEIGHT, lowerret=floor)
    port.assets_stats(method_mu="hist", method_cov="hist")
    w = port.optimization(model="Classic", rm="CVaR", obj="MinRisk", rf=0, l=0, hist=True)
    seconds = time.perf_counter() - start
    weights = None if w is None else w.to_numpy().ravel()
    return weights, seconds, rp.__version__, "/".join(port.solvers[:1]) + " (first tried)", None


def _skfolio(returns, floor):
    import skfolio
    from skfolio import RiskMeasure
    from skfolio.optimization import MeanRisk, ObjectiveFunction

    start = time.perf_counter()
    model = MeanRisk(
        risk_measure=RiskMeasure.CVAR,
        objective_function=ObjectiveFunction.MINIMIZE_RISK,
        cvar_beta=ALPHA,
        min_weights=0.0,
        max_weights=MAX_WEIGHT,
        min_return=floor,
    )
    model.fit(returns)
    seconds = time.perf_counter() - start
    return model.weights_, seconds, skfolio.__version__, model.solver, None


def _pypfopt(returns, floor):
    import pandas as pd
    import pypfopt
    from pypfopt import EfficientCVaR

    start = time.perf_counter()
    frame = pd.DataFrame(returns, columns=[f"a{j}" for j in range(ASSETS)])
    ef = EfficientCVaR(frame.mean(), frame, beta=ALPHA, weight_bounds=(0.0, MAX_WEIGHT))
    ef.efficient_return(floor)
    seconds = time.perf_counter() - start
    stats = ef._opt.solver_stats if ef._opt is not None else None
    return ef.weights, seconds, pypfopt.__version__, getattr(stats, "solver_name", "?"), None


def _ours(method: str):
    def solve(returns, floor):
        from importlib.metadata import version

        from optimizer.formulation.portfolio import min_cvar_portfolio

        start = time.perf_counter()
        sol = min_cvar_portfolio(
            returns, ALPHA, max_weight=MAX_WEIGHT, min_return=floor, method=method
        )
        seconds = time.perf_counter() - start
        backend = f"{sol.method}, HiGHS {version('highspy')}"
        return sol.weights, seconds, version("ppc-finance"), backend, sol.iterations

    return solve


def worker(solver: str, n_scenarios: int, seed: int) -> dict[str, Any]:
    """One point, in this (fresh) process."""
    returns, floor = make_problem(n_scenarios, seed)
    solve = {"riskfolio": _riskfolio, "skfolio": _skfolio, "pypfopt": _pypfopt}.get(solver)
    solve = solve or _ours(solver)
    start = time.perf_counter()
    try:
        # imports happen inside `solve`, before its clock starts; timed here as a whole
        weights, seconds, ver, backend, iterations = solve(returns, floor)
    except ImportError as exc:
        return {"status": "not installed", "detail": str(exc)}
    total = time.perf_counter() - start
    return {
        "status": "ok" if weights is not None else "no solution",
        "weights": None if weights is None else [float(x) for x in weights],
        "seconds": seconds,
        "import_s": max(total - seconds, 0.0),
        "version": ver,
        "backend": backend,
        "iterations": iterations,
        "peak_mib": maxrss_mib(),
    }


def run_point(solver: str, n_scenarios: int, seed: int, timeout_s: float) -> dict[str, Any]:
    try:
        return run_worker(__file__, [solver, str(n_scenarios), str(seed)], timeout_s)
    except WorkerFailed as exc:
        return {"status": str(exc) if exc.timed_out else f"failed: {str(exc)[:120]}"}


def check(row: dict[str, Any], returns, floor, reference_cvar: float | None) -> None:
    """Adds the CVaR recomputed from the weights, its difference from ours and the largest
    constraint breach."""
    import numpy as np

    from models.risk_measures import conditional_value_at_risk

    w = np.asarray(row["weights"], dtype=float)
    row["cvar"] = float(conditional_value_at_risk(-(returns @ w), ALPHA).value)
    row["max_violation"] = float(
        max(abs(w.sum() - 1.0), (w - MAX_WEIGHT).max(), (-w).max(), floor - returns.mean(0) @ w)
    )
    if reference_cvar is not None:
        row["rel_diff"] = abs(row["cvar"] - reference_cvar) / abs(reference_cvar)


def machine() -> str:
    """One line describing the machine and the versions that matter."""
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{p} {version(p)}" for p in ("numpy", "scipy", "cvxpy", "highspy", "clarabel")
    )
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB RAM, Python "
        f"{platform.python_version()}, {versions}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        solver, n, seed = argv[1], int(argv[2]), int(argv[3])
        print(json.dumps(worker(solver, n, seed)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=list(PEERS))
    parser.add_argument("--ours", nargs="+", choices=OURS, default=list(DEFAULT_OURS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per point")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="rows are appended here")
    args = parser.parse_args(argv)
    ours = ["auto", *[m for m in args.ours if m != "auto"]]  # "auto" is the reference

    print(f"Machine: {machine()}")
    print(f"Problem: {ASSETS} assets, CVaR at {ALPHA}, caps {MAX_WEIGHT}, floor at the "
          f"{FLOOR_QUANTILE:.0%} quantile of mean returns; seed {args.seed}\n")  # fmt: skip
    print("| S | solver | version | backend | seconds | peak MiB | CVaR | rel. diff "
          "| max viol | x ours | load |")  # fmt: skip
    print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records = []
    for n in args.scenarios:
        returns, floor = make_problem(n, args.seed)
        reference_cvar = ours_s = None
        for solver in [*ours, *args.peers]:
            load = os.getloadavg()[0]
            row = run_point(solver, n, args.seed, args.timeout)
            if row["status"] == "ok":
                check(row, returns, floor, reference_cvar)
                if solver == "auto":
                    reference_cvar, ours_s, row["rel_diff"] = row["cvar"], row["seconds"], 0.0
                row["x_ours"] = row["seconds"] / ours_s if ours_s else None
                if row.get("rel_diff") is not None and row["rel_diff"] > REL_TOL:
                    row["status"] = f"FAIL: CVaR differs by more than {REL_TOL:g}"
            name = solver if solver in PEERS else f"ours ({solver})"
            rec = {k: row.get(k) for k in CSV_FIELDS}
            rec.update(timestamp=stamp, host=platform.node(), scenarios=n, assets=ASSETS,
                       solver=name, load_1m=round(load, 2))  # fmt: skip
            records.append(rec)
            print(_markdown_row(rec), flush=True)
    append_csv(args.csv, CSV_FIELDS, records)
    print(f"\n{len(records)} row(s) appended to {args.csv}")


def _markdown_row(rec: dict[str, Any]) -> str:
    def f(key: str, spec: str) -> str:
        v = rec.get(key)
        return "–" if v is None else format(v, spec)

    if rec["status"] not in ("ok",) and rec.get("seconds") is None:
        return f"| {rec['scenarios']:,} | {rec['solver']} | {rec['status']} |||||||| {rec['load_1m']:.2f} |"
    flag = "" if rec["status"] == "ok" else f" **{rec['status']}**"
    return (
        f"| {rec['scenarios']:,} | {rec['solver']} | {rec['version']} | {rec['backend']} | "
        f"{f('seconds', ',.3f')} | {f('peak_mib', ',.0f')} | {f('cvar', '.8f')} | "
        f"{f('rel_diff', '.1e')}{flag} | {f('max_violation', '.1e')} | {f('x_ours', ',.1f')} | "
        f"{rec['load_1m']:.2f} |"
    )


if __name__ == "__main__":
    main()
