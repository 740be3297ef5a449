"""Small cases for the simulator tests, built in Python with ``Case.model_validate``.

Every builder returns a plain dict (so a test can tweak it) or a validated :class:`Case`.
Defaults: one product of PD 5 % and constant LGD 50 % (``lgd_sd = 0``), loadings
ρ = 0.04 / 0.08 / 0.04 (total 0.16), no events, no price factors, no LGD downturn correlation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from models.schema import Case

PD = 0.05
LGD = 0.5
RHO = (0.04, 0.08, 0.04)  # macro, chain, region
RHO_TOTAL = sum(RHO)


def product(
    pid: str = "P1",
    *,
    pd: float = PD,
    lgd: float = LGD,
    lgd_sd: float = 0.0,
    avg_ticket_usd: float = 1_000.0,
    **extra: Any,
) -> dict[str, Any]:
    """A loan product; ``extra`` sets any other field (state_run, eligible_chains...)."""
    return {
        "id": pid,
        "name": f"product {pid}",
        "rate": 0.2,
        "tenor_months": 12,
        "avg_ticket_usd": avg_ticket_usd,
        "base_pd": pd,
        "lgd_mean": lgd,
        "lgd_sd": lgd_sd,
        "transaction_cost_rate": 0.05,
        **extra,
    }


def segment(
    region: str, chain: str, *, gap_usd: float = 1e9, pd_multiplier: float = 1.0
) -> dict[str, Any]:
    """The segment ``<region>-<chain>`` with an unmet need of ``gap_usd`` (no supply)."""
    return {
        "id": f"{region}-{chain}",
        "region": region,
        "value_chain": chain,
        "households": 1000,
        "need_usd": gap_usd,
        "supply_usd": 0.0,
        "pd_multiplier": pd_multiplier,
        "deforestation_pressure": 0.5,
    }


def event(eid: str, probability: float, **fields: Any) -> dict[str, Any]:
    """A shock event; ``fields`` are pd_multiplier, chains, regions, lgd_add..."""
    return {"id": eid, "name": f"event {eid}", "probability": probability, **fields}


def case_dict(
    *,
    regions: Sequence[str] = ("R1",),
    chains: Sequence[str] = ("C1",),
    products: Sequence[dict[str, Any]] | None = None,
    segments: Iterable[dict[str, Any]] | None = None,
    rho: tuple[float, float, float] = RHO,
    t_dof: float | None = None,
    events: Sequence[dict[str, Any]] = (),
    price_factors: dict[str, dict[str, float]] | None = None,
    chain_correlations: Sequence[tuple[str, str, float]] = (),
    lgd_gamma: float = 0.0,
    gap_usd: float = 1e9,
) -> dict[str, Any]:
    """A case as a dict: one segment per region x chain unless ``segments`` is given."""
    products = list(products) if products is not None else [product()]
    if segments is None:
        segments = [segment(r, c, gap_usd=gap_usd) for r in regions for c in chains]
    copula: dict[str, Any] = {"rho_macro": rho[0], "rho_chain": rho[1], "rho_region": rho[2]}
    if t_dof is not None:
        copula["t_degrees_of_freedom"] = t_dof
    return {
        "name": "test case",
        "regions": [{"id": r, "name": f"region {r}"} for r in regions],
        "value_chains": [{"id": c, "name": f"chain {c}"} for c in chains],
        "segments": list(segments),
        "products": products,
        "sources": [
            {
                "id": "S1",
                "name": "lender",
                "kind": "private",
                "amount_usd": 1e8,
                "cost_of_funds_rate": 0.05,
                "products": [p["id"] for p in products],
            }
        ],
        "risk_model": {
            "copula": copula,
            "price_factors": dict(price_factors or {}),
            "chain_correlations": [
                {"chains": [a, b], "correlation": c} for a, b, c in chain_correlations
            ],
            "events": [copy.deepcopy(e) for e in events],
            "lgd_downturn_correlation": lgd_gamma,
        },
    }


def make_case(**kwargs: Any) -> Case:
    """``Case.model_validate(case_dict(**kwargs))``."""
    return Case.model_validate(case_dict(**kwargs))


def one_cell_case(**kwargs: Any) -> Case:
    """One region, one chain, one product: a single Vasicek cell (PD 5 %, LGD 50 % constant)."""
    return make_case(**kwargs)


# --- closed forms ---------------------------------------------------------------------------
def vasicek_quantile(q: float, pd: float = PD, rho: float = RHO_TOTAL, lgd: float = LGD) -> float:
    """q-quantile of the large-pool loss Φ((Φ⁻¹(PD) + √ρ Φ⁻¹(q)) / √(1 − ρ)) · LGD."""
    z = (special.ndtri(pd) + np.sqrt(rho) * special.ndtri(q)) / np.sqrt(1.0 - rho)
    return float(special.ndtr(z) * lgd)


def vasicek_second_moment(pd: float = PD, rho: float = RHO_TOTAL) -> float:
    """E[DR²] = Φ₂(Φ⁻¹(PD), Φ⁻¹(PD); ρ) for the large-pool default rate."""
    c = special.ndtri(pd)
    return float(stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([c, c]))
