"""Importance sampling against plain Monte Carlo: the 99.9 % VaR of the book loss over seeds.

Five cases: one large-pool cell (PD 3 %, LGD 50 %, correlation 0.20) whose whole correlation sits
on the macro, the chain or the region factor, where the Vasicek quantile is exact, the chain cell
under a t copula (ν = 5, ``t_chain``), and the shipped case (``inputs/``, 119 cells, its
equal-weighted book). For each, ``simulate`` runs at the same scenario count and the same seeds
with ``method="mc"`` and ``method="importance"`` (the default :class:`~models.importance.TailTilt`)
in this one process, alternating, so both see the same machine load. Printed per case and method:

- the mean VaR over seeds and ``z``, its distance in printed standard errors of that mean to the
  exact value (Vasicek; for ``t_chain`` by quadrature) or, for the shipped case, to plain Monte
  Carlo's mean: unbiased if within about 3;
- ``spread``, the standard deviation of the VaR over seeds, and ``SE``, the root mean square of
  the printed standard errors (honest if the two agree);
- ``var MC/IS``, the variance ratio of the VaR over seeds (the figure asked for; with 20 seeds
  it is known to about a factor 1.6), and ``SE² MC/IS``, the same ratio from the printed errors
  (steadier);
- seconds per run of each method, and ``work MC/IS``, variance x time: how many times longer
  plain Monte Carlo must run to match importance sampling (pilots included).

The machine is shared: the 1-minute load average is printed and written with every row to
``benchmarks/results_importance.csv``, to which rows are appended.

Usage::

    python benchmarks/bench_importance.py                 # 20 seeds, 20,000 scenarios
    python benchmarks/bench_importance.py --seeds 10 --scenarios 50000
    python benchmarks/bench_importance.py --cases chain shipped
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from _common import append_csv
from scipy import integrate, optimize, special, stats

from models import load_case
from models.risk_measures import value_at_risk
from models.schema import Case
from models.simulate import simulate

ALPHA = 0.999
PD, RHO, LGD = 0.03, 0.20, 0.5
ON = {"macro": (RHO, 0.0, 0.0), "chain": (0.0, RHO, 0.0), "region": (0.0, 0.0, RHO)}
CASES = (*ON, "t_chain", "shipped")
T_DOF = 5.0
"""``t_chain``: the chain cell under a Student-t copula of 5 degrees of freedom."""
CSV_PATH = Path(__file__).resolve().parent / "results_importance.csv"
CSV_FIELDS = (
    "timestamp", "host", "load_1min", "case", "scenarios", "seeds", "exact",
    "mc_mean", "mc_spread", "mc_se", "mc_seconds",
    "is_mean", "is_spread", "is_se", "is_seconds",
    "var_ratio", "se2_ratio", "work_ratio", "is_z", "fallbacks",
)  # fmt: skip


def one_cell(where: str, t_dof: float | None = None) -> Case:
    """One region, chain and product; the whole correlation on ``where``; constant LGD."""
    product = {
        "id": "P1", "name": "product P1", "rate": 0.2, "tenor_months": 12,
        "avg_ticket_usd": 1_000.0, "base_pd": PD, "lgd_mean": LGD, "lgd_sd": 0.0,
        "transaction_cost_rate": 0.05,
    }  # fmt: skip
    segment = {
        "id": "R1-C1", "region": "R1", "value_chain": "C1", "households": 1000,
        "need_usd": 1e9, "supply_usd": 0.0, "pd_multiplier": 1.0, "deforestation_pressure": 0.5,
    }  # fmt: skip
    source = {
        "id": "S1", "name": "lender", "kind": "private", "amount_usd": 1e8,
        "cost_of_funds_rate": 0.05, "products": ["P1"],
    }  # fmt: skip
    rho_m, rho_c, rho_r = ON[where]
    copula = {"rho_macro": rho_m, "rho_chain": rho_c, "rho_region": rho_r}
    if t_dof is not None:
        copula["t_degrees_of_freedom"] = t_dof
    return Case.model_validate(
        {
            "name": f"one cell, correlation on {where}",
            "regions": [{"id": "R1", "name": "region R1"}],
            "value_chains": [{"id": "C1", "name": "chain C1"}],
            "segments": [segment],
            "products": [product],
            "sources": [source],
            "risk_model": {"copula": copula, "events": [], "lgd_downturn_correlation": 0.0},
        }
    )


def vasicek_var() -> float:
    """The large-pool 99.9 % loss quantile LGD · Φ((Φ⁻¹(PD) + √ρ Φ⁻¹(α)) / √(1 − ρ))."""
    z = (special.ndtri(PD) + np.sqrt(RHO) * special.ndtri(ALPHA)) / np.sqrt(1.0 - RHO)
    return float(LGD * special.ndtr(z))


def t_copula_var(dof: float) -> float:
    """The same cell's 99.9 % loss quantile under a t copula: P(L <= x) = E_W[Φ(·)] by quadrature
    over V = νW ~ χ²_ν, then a root in x."""
    t_pd = stats.t.ppf(PD, dof)

    def cdf(x: float) -> float:
        shift = np.sqrt(1 - RHO) * special.ndtri(x / LGD)

        def inner(v: float) -> float:
            z = -(t_pd * np.sqrt(v / dof) - shift) / np.sqrt(RHO)
            return stats.chi2.pdf(v, dof) * special.ndtr(z)

        return integrate.quad(inner, 0, np.inf, limit=400)[0]

    return float(optimize.brentq(lambda x: cdf(x) - ALPHA, 1e-4, LGD - 1e-4, xtol=1e-10))


def run(case: Case, method: str, n: int, seed: int) -> tuple[float, float, float, bool]:
    """VaR of the equal-weighted book, its printed SE, seconds, and whether IS fell back."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fallback is counted, not printed
        scen = simulate(case, n, seed=seed, method=method)
    book = np.asarray(scen.losses, dtype=np.float64).mean(axis=1)
    est = value_at_risk(book, ALPHA, scen.probabilities)
    fell_back = bool(scen.metadata.get("importance", {}).get("fallback", False))
    return est.value, est.std_error, time.perf_counter() - t0, fell_back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per method (default 20)")
    parser.add_argument("--scenarios", type=int, default=20_000, help="per run (default 20,000)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    args = parser.parse_args()
    print(
        f"99.9 % VaR of the book over {args.seeds} seeds at {args.scenarios:,} scenarios; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'case':>8} {'exact':>8} {'MC mean':>8} {'IS mean':>8} {'IS z':>5} {'MC spread':>9} "
        f"{'MC SE':>8} {'IS spread':>9} {'IS SE':>8} {'var MC/IS':>9} {'SE² MC/IS':>9} "
        f"{'MC s':>6} {'IS s':>6} {'work MC/IS':>10}"
    )
    for name in args.cases:
        if name in ON:
            case, exact = one_cell(name), vasicek_var()
        elif name == "t_chain":
            case, exact = one_cell("chain", T_DOF), t_copula_var(T_DOF)
        else:
            case, exact = load_case(), float("nan")
        res: dict[str, list[tuple[float, float, float, bool]]] = {"mc": [], "importance": []}
        for seed in range(args.seeds):
            for method in res:  # alternating: both methods see the same load
                res[method].append(run(case, method, args.scenarios, seed))
        stats = {}
        for method, rows in res.items():
            value, se, seconds, fell = (np.array(c) for c in zip(*rows, strict=True))
            stats[method] = {
                "mean": value.mean(),
                "spread": value.std(ddof=1),
                "se": np.sqrt(np.mean(se**2)),
                "seconds": seconds.mean(),
                "fallbacks": int(fell.sum()),
            }
        mc, imp = stats["mc"], stats["importance"]
        var_ratio = (mc["spread"] / imp["spread"]) ** 2
        se2_ratio = (mc["se"] / imp["se"]) ** 2
        work = var_ratio * mc["seconds"] / imp["seconds"]
        if np.isnan(exact):  # no closed form: against plain Monte Carlo's mean
            z = (imp["mean"] - mc["mean"]) / np.hypot(imp["se"], mc["se"]) * np.sqrt(args.seeds)
        else:
            z = (imp["mean"] - exact) / imp["se"] * np.sqrt(args.seeds)
        print(
            f"{name:>8} {'–' if np.isnan(exact) else f'{exact:.5f}':>8} {mc['mean']:>8.5f} "
            f"{imp['mean']:>8.5f} {z:>+5.1f} "
            f"{mc['spread']:>9.2e} {mc['se']:>8.2e} {imp['spread']:>9.2e} {imp['se']:>8.2e} "
            f"{var_ratio:>9.1f} {se2_ratio:>9.1f} {mc['seconds']:>6.2f} {imp['seconds']:>6.2f} "
            f"{work:>10.1f}" + (f"  ({imp['fallbacks']} fell back)" if imp["fallbacks"] else "")
        )
        row = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "load_1min": round(os.getloadavg()[0], 2),
            "case": name,
            "scenarios": args.scenarios,
            "seeds": args.seeds,
            "exact": exact,
            **{f"mc_{k}": v for k, v in mc.items() if k != "fallbacks"},
            **{f"is_{k}": v for k, v in imp.items() if k != "fallbacks"},
            "var_ratio": var_ratio,
            "se2_ratio": se2_ratio,
            "work_ratio": work,
            "is_z": z,
            "fallbacks": imp["fallbacks"],
        }
        append_csv(CSV_PATH, CSV_FIELDS, [row])


if __name__ == "__main__":
    main()
