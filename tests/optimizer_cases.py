"""Small cases and synthetic scenario sets for the optimizer tests.

The Monte Carlo simulator lives elsewhere; these scenario sets are built directly: a one-factor-
per-level Vasicek pool loss per cell with Bernoulli shock events, optionally importance-sampled
(macro factor shifted into the tail, normalised likelihood-ratio probabilities), so that every
test also exercises unequal scenario probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from models.cells import build_cells
from models.scenarios import ScenarioSet
from models.schema import Case

_COPULA = {"rho_macro": 0.05, "rho_chain": 0.1, "rho_region": 0.05}


def scenario_set(
    case: Case,
    losses: np.ndarray,
    probabilities: np.ndarray | None = None,
    events: np.ndarray | None = None,
) -> ScenarioSet:
    """Wrap a loss matrix (n_scenarios, n_cells) as the case's ScenarioSet."""
    losses = np.asarray(losses, dtype=np.float64).reshape(len(losses), -1)
    n = losses.shape[0]
    ids = tuple(e.id for e in case.risk_model.events)
    return ScenarioSet(
        losses=losses,
        probabilities=np.full(n, 1.0 / n) if probabilities is None else probabilities,
        cells=build_cells(case),
        factors=np.zeros((n, 0), dtype=np.float32),
        factor_names=(),
        events=np.zeros((n, len(ids)), dtype=bool) if events is None else events,
        event_ids=ids,
        seed=0,
        method="synthetic",
    )


def synthetic_scenarios(
    case: Case, n_scenarios: int, seed: int, *, importance: bool = False
) -> ScenarioSet:
    """Vasicek-like pool losses per cell with shock events, seeded.

    Parameters
    ----------
    importance : bool
        Shift the macro factor by −1.5 (toward defaults) and weight scenarios by the normalised
        likelihood ratio, giving unequal probabilities.
    """
    rng = np.random.default_rng(seed)
    cells = build_cells(case)
    cop = case.risk_model.copula
    chains = sorted({c.id for c in case.value_chains})
    regions = sorted({r.id for r in case.regions})
    shift = -1.5 if importance else 0.0
    macro = rng.standard_normal(n_scenarios) + shift
    z_chain = rng.standard_normal((n_scenarios, len(chains)))
    z_region = rng.standard_normal((n_scenarios, len(regions)))
    ev = case.risk_model.events
    events = rng.random((n_scenarios, len(ev))) < np.array([e.probability for e in ev])
    ci = cells["value_chain"].map({c: i for i, c in enumerate(chains)}).to_numpy()
    ri = cells["region"].map({r: i for i, r in enumerate(regions)}).to_numpy()
    a = (
        np.sqrt(cop.rho_macro) * macro[:, None]
        + np.sqrt(cop.rho_chain) * z_chain[:, ci]
        + np.sqrt(cop.rho_region) * z_region[:, ri]
    )
    mult = np.ones((n_scenarios, len(cells)))
    lgd_add = np.zeros((n_scenarios, len(cells)))
    for k, e in enumerate(ev):
        hit = np.ones(len(cells), dtype=bool)
        if e.chains is not None:
            hit &= cells["value_chain"].isin(e.chains).to_numpy()
        mult[events[:, k][:, None] & hit] *= e.pd_multiplier
        lgd_add[events[:, k][:, None] & hit] += e.lgd_add
    pd_ = np.minimum(cells["pd"].to_numpy() * mult, 0.999)
    rho = cop.rho_total
    dr = stats.norm.cdf((stats.norm.ppf(pd_) - a) / np.sqrt(1.0 - rho))
    lgd = np.minimum(cells["lgd_mean"].to_numpy() + lgd_add, 1.0)
    losses = dr * lgd
    if importance:
        # Likelihood ratio of N(0,1) against N(shift,1) at the drawn macro factor.
        log_w = -shift * macro + 0.5 * shift**2
        w = np.exp(log_w - log_w.max())
        probabilities = w / w.sum()
    else:
        probabilities = np.full(n_scenarios, 1.0 / n_scenarios)
    return scenario_set(case, losses, probabilities, events)


# --- small cases built in Python -----------------------------------------------------------
def _segment(sid: str, region: str, chain: str, gap: float, pressure: float) -> dict[str, Any]:
    return {
        "id": sid,
        "region": region,
        "value_chain": chain,
        "households": 1000,
        "need_usd": gap,
        "supply_usd": 0.0,
        "deforestation_pressure": pressure,
    }


def _product(pid: str, **kw: Any) -> dict[str, Any]:
    base = {
        "id": pid,
        "name": pid,
        "rate": 0.25,
        "tenor_months": 12,
        "avg_ticket_usd": 3000.0,
        "base_pd": 0.05,
        "lgd_mean": 0.6,
        "transaction_cost_rate": 0.05,
    }
    return base | kw


def one_cell_case(amount_usd: float, gap_usd: float, **source_kw: Any) -> Case:
    """One region, chain, segment, product and private source: a case solvable by hand."""
    source = {
        "id": "S",
        "name": "S",
        "kind": "private",
        "amount_usd": amount_usd,
        "cost_of_funds_rate": 0.05,
        "products": ["P"],
    } | source_kw
    return Case(
        name="one cell",
        regions=[{"id": "R", "name": "R"}],
        value_chains=[{"id": "C", "name": "C"}],
        segments=[_segment("K", "R", "C", gap_usd, 0.5)],
        products=[_product("P")],
        sources=[source],
        risk_model={"copula": _COPULA},
    )


def random_case(seed: int) -> Case:
    """A small random case using every feature: 2 regions x 2 chains, 2 products, 4 sources,
    a pari-passu, a first-loss and a contingent fund, one shock event, every policy rule."""
    rng = np.random.default_rng(seed)

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    segments = [
        _segment(f"{r}-{c}", r, c, u(20e6, 80e6), u(0.2, 0.95))
        for r in ("R1", "R2")
        for c in ("C1", "C2")
    ]
    products = [
        _product("IND", rate=0.30, base_pd=u(0.04, 0.09), transaction_cost_rate=0.08),
        _product("GRP", rate=0.18, base_pd=u(0.02, 0.05), ta_cost_rate=0.02, lgd_mean=0.5),
    ]
    funds = [
        {
            "id": "GP",
            "name": "GP",
            "coverage_ratio": 0.7,
            "leverage_cap": 5.0,
            "fee_rate": 0.01,
            "max_depletion_probability": 0.05,
            "uptake_share": 0.6,
            "eligible_products": ["IND", "GRP"],
        },
        {
            "id": "GF",
            "name": "GF",
            "structure": "first_loss",
            "coverage_ratio": 1.0,
            "first_loss_cap_share": 0.1,
            "leverage_cap": 10.0,
            "fee_rate": 0.005,
            "max_depletion_probability": 0.05,
            "uptake_share": 0.5,
            "capital_cap_usd": u(2e6, 6e6),
            "eligible_products": ["IND"],
        },
        {
            "id": "GE",
            "name": "GE",
            "coverage_ratio": 0.9,
            "leverage_cap": 4.0,
            "fee_rate": 0.0,
            "max_depletion_probability": 0.1,
            "eligible_products": ["IND", "GRP"],
            "covered_source_kinds": ["private", "public"],
            "active_only_in_events": ["shock"],
        },
    ]
    sources = [
        {
            "id": "PUB",
            "name": "PUB",
            "kind": "public",
            "amount_usd": u(20e6, 40e6),
            "cost_of_funds_rate": 0.05,
            "products": ["GRP"],
            "funds": ["GP", "GE"],
            "expected_loss_limit_rate": 0.05,
        },
        {
            "id": "PRIV",
            "name": "PRIV",
            "kind": "private",
            "amount_usd": u(60e6, 120e6),
            "cost_of_funds_rate": 0.07,
            "products": ["IND", "GRP"],
            "max_pd_unguaranteed": 0.06,
            "cvar_alpha": 0.95,
            "cvar_limit_share": u(0.06, 0.12),
            "expected_loss_limit_rate": 0.05,
            "return_hurdle_rate": 0.02,
        },
        {
            "id": "SEN",
            "name": "SEN",
            "kind": "private",
            "amount_usd": u(30e6, 60e6),
            "cost_of_funds_rate": 0.09,
            "products": ["IND", "GRP"],
            "max_multiple_of_concessional": 3.0,
            "cvar_alpha": 0.99,
            "cvar_limit_usd": u(1e6, 3e6),
            "return_hurdle_rate": 0.0,
        },
        {
            "id": "CLIM",
            "name": "CLIM",
            "kind": "climate",
            "amount_usd": u(10e6, 20e6),
            "cost_of_funds_rate": 0.0,
            "products": ["GRP"],
            "funds": ["GF"],
            "technical_assistance": True,
            "min_deforestation_pressure": 0.3,
        },
    ]
    return Case(
        name=f"random {seed}",
        regions=[{"id": "R1", "name": "R1"}, {"id": "R2", "name": "R2"}],
        value_chains=[{"id": "C1", "name": "C1"}, {"id": "C2", "name": "C2"}],
        segments=segments,
        products=products,
        funds=funds,
        sources=sources,
        risk_model={
            "copula": _COPULA,
            "events": [{"id": "shock", "name": "shock", "probability": 0.1, "pd_multiplier": 2.0}],
        },
        policy={
            "min_private_per_concessional": 1.0,
            "max_share_per_segment": 0.4,
            "max_share_per_region": 0.7,
            "max_share_per_product": 0.8,
            "climate_earmark_min_share": 0.5,
            "climate_earmark_min_pressure": 0.6,
        },
    )


def modified(case: Case, *, sources: dict[str, dict[str, Any]] | None = None, **top: Any) -> Case:
    """A re-validated copy of ``case`` with some sources' fields (by id) or top fields changed."""
    raw = case.model_dump()
    for src in raw["sources"]:
        src.update((sources or {}).get(src["id"], {}))
    raw.update(top)
    return Case.model_validate(raw)
