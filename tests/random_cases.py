"""Random *valid* small cases, as plain dicts, for the whole-pipeline tests.

:func:`random_case_dict` starts from :data:`conftest.MINIMAL_CASE` (its product, fund and source
entries are the templates) and draws, from ``numpy.random.default_rng(seed)``, 1-3 regions and
value chains, a random subset of their segments, 1-3 products, 0-2 guarantee funds (pari passu
or first loss, sometimes contingent on an event), 1-4 sources of every kind and 0-2 shock
events, with every optional rule of the schema switched on at random: CVaR limits in US$ or as a
share, expected-loss limits, return hurdles, PD ceilings, earmarks, senior caps, concentration
caps, mobilisation. Every number stays inside the bounds of :mod:`models.schema` and every
cross-field rule of :mod:`models.crosscheck`, so ``Case.model_validate`` always accepts the dict.
A loose case has a private lender (its first source), a source that may pay technical
assistance, and concentration caps above ``1.2 / n``, so that most loose cases lend something
(about half of all seeds close part or all of their gap; the rest close nothing, for a reason
of the case: a mobilisation rule without private lending, an expected-loss limit...).

A *tight* case (about a third of the seeds, or ``tight=True``) draws its limits near zero: tiny
CVaR and expected-loss allowances, high hurdles, small caps, strict mobilisation. Such a case is
still feasible (a validated case always is: lending nothing meets every rule, see
``tests/test_optimizer_diagnose.py``) but its optimum often lends little or nothing.
:func:`broken_case` makes a case that *is* infeasible the only way one can be: a field pushed
past its schema bound with ``model_copy`` (no validation), as a hand-edited object would be.

Money: needs and amounts are log-uniform between US$100k and US$30m, so the LP (US$ millions)
sees numbers from 0.1 to 30.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
from conftest import MINIMAL_CASE

from models.schema import Case

KINDS = ("public", "private", "climate")
ALPHAS = (0.9, 0.95, 0.99)


class _Draw:
    """Small helpers over one generator: plain Python numbers, so the dict dumps to YAML."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def log_u(self, lo: float, hi: float) -> float:
        """Log-uniform in [lo, hi] (money)."""
        return float(10.0 ** self.rng.uniform(np.log10(lo), np.log10(hi)))

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def integer(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi] (both included)."""
        return int(self.rng.integers(lo, hi + 1))

    def subset(self, items: list[str], p: float = 0.5, *, nonempty: bool = False) -> list[str]:
        keep = [item for item in items if self.rng.random() < p]
        if nonempty and not keep:
            keep = [items[int(self.rng.integers(len(items)))]]
        return keep

    def choice(self, items: tuple | list) -> Any:
        return items[int(self.rng.integers(len(items)))]


def random_case_dict(seed: int, *, tight: bool | None = None) -> dict[str, Any]:
    """A random valid case as plain data (``Case.model_validate`` accepts it).

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same dict.
    tight : bool, optional
        Draw limits near zero; default: at random, about one seed in three.

    Returns
    -------
    dict
        A case named ``"random <seed>"``, built from :data:`conftest.MINIMAL_CASE`'s entries.
    """
    d = _Draw(seed)
    tight = d.coin(0.35) if tight is None else tight
    case = copy.deepcopy(MINIMAL_CASE)
    case["name"] = f"random {seed}{' (tight)' if tight else ''}"

    regions = [f"R{i + 1}" for i in range(d.integer(1, 3))]
    chains = [f"C{i + 1}" for i in range(d.integer(1, 3))]
    case["regions"] = [{"id": r, "name": f"Region {r}"} for r in regions]
    case["value_chains"] = [{"id": c, "name": f"Chain {c}"} for c in chains]
    pairs = list(itertools.product(regions, chains))
    picked = d.subset([f"{r}|{c}" for r, c in pairs], 0.7, nonempty=True)
    case["segments"] = [_segment(d, *pair.split("|")) for pair in picked]
    seg_ids = [s["id"] for s in case["segments"]]

    n_products = d.integer(1, 3)
    case["products"] = [_product(d, f"P{i + 1}", chains, seg_ids) for i in range(n_products)]
    # at least one cell: the first product serves every segment
    case["products"][0].pop("eligible_chains", None)
    case["products"][0]["excluded_segments"] = []
    products = [p["id"] for p in case["products"]]

    events = [_event(d, f"E{i + 1}", regions, chains) for i in range(d.integer(0, 2))]
    event_ids = [e["id"] for e in events]
    case["funds"] = [
        _fund(d, f"G{i + 1}", products, event_ids, tight) for i in range(d.integer(0, 2))
    ]
    funds = [f["id"] for f in case["funds"]]
    # a loose case has a private lender (mobilisation rules then mean something)
    kinds = [d.choice(KINDS) for _ in range(d.integer(1, 4))]
    kinds[0] = kinds[0] if tight else "private"
    case["sources"] = [
        _source(d, f"S{i + 1}", kind, products, funds, tight) for i, kind in enumerate(kinds)
    ]
    if not tight and not case["sources"][0]["products"]:
        case["sources"][0]["products"] = [products[0]]
    case["risk_model"] = _risk_model(d, chains, events)
    if not tight and not any(s["technical_assistance"] for s in case["sources"]):
        # loans that need technical assistance nobody may pay for can never be made
        case["sources"][0]["technical_assistance"] = True
    counts = {"segment": len(seg_ids), "region": len(regions), "product": n_products}
    case["policy"] = _policy(d, tight, counts)
    return case


def random_case(seed: int, *, tight: bool | None = None) -> Case:
    """:func:`random_case_dict` validated."""
    return Case.model_validate(random_case_dict(seed, tight=tight))


def broken_case(case: Case, seed: int) -> tuple[Case, str]:
    """``case`` with one figure pushed below zero WITHOUT validation: an infeasible case.

    One of: a source's amount, a source's CVaR limit in US$ (when it has one), a segment's
    supply above its need (a negative gap), or a fund's capital cap (when it has one); each is
    a row ``lhs <= rhs`` whose right-hand side is then negative while its left-hand side cannot
    be. Returns the case and the field path changed (``"sources[S1].amount_usd"``).
    """
    d = _Draw(seed)
    options: list[tuple[str, str, str, float]] = []
    for s in case.sources:
        options.append(("sources", s.id, "amount_usd", -d.log_u(1e4, 1e6)))
        if s.cvar_limit_usd is not None:
            options.append(("sources", s.id, "cvar_limit_usd", -d.log_u(1e4, 1e6)))
    for f in case.funds:
        if f.capital_cap_usd is not None:
            options.append(("funds", f.id, "capital_cap_usd", -d.log_u(1e4, 1e6)))
    for k in case.segments:
        options.append(("segments", k.id, "supply_usd", k.need_usd + d.log_u(1e4, 1e6)))
    group, item_id, attr, value = d.choice(options)
    items = tuple(
        i.model_copy(update={attr: value}) if i.id == item_id else i for i in getattr(case, group)
    )
    return case.model_copy(update={group: items}), f"{group}[{item_id}].{attr}"


# --- entities -------------------------------------------------------------------------------
def _segment(d: _Draw, region: str, chain: str) -> dict[str, Any]:
    template = copy.deepcopy(MINIMAL_CASE["segments"][0])
    need = d.log_u(1e5, 3e7)
    share = d.choice((0.0, 0.0, d.u(0.0, 0.6), 1.0))  # 1.0: need met already (zero gap)
    template.update(
        id=f"{region}-{chain}",
        region=region,
        value_chain=chain,
        households=d.integer(0, 50_000),
        need_usd=need,
        supply_usd=need * share,
        pd_multiplier=d.choice((1.0, d.u(0.5, 2.5))),
        deforestation_pressure=d.u(0.0, 1.0),
        remote=d.coin(0.3),
    )
    return template


def _product(d: _Draw, pid: str, chains: list[str], segments: list[str]) -> dict[str, Any]:
    template = copy.deepcopy(MINIMAL_CASE["products"][d.integer(0, 1)])
    lgd = d.u(0.1, 0.9)
    out = template | {
        "id": pid,
        "name": f"Product {pid}",
        "rate": d.u(0.08, 0.45),
        "tenor_months": d.integer(3, 60),
        "avg_ticket_usd": d.log_u(200, 20_000),
        "base_pd": d.u(0.005, 0.15),
        "lgd_mean": lgd,
        "lgd_sd": d.choice((0.0, d.u(0.0, 0.9) * min(float(np.sqrt(lgd * (1 - lgd))), 0.49))),
        "transaction_cost_rate": d.u(0.01, 0.15),
        "remote_cost_uplift_share": d.choice((0.0, d.u(0.0, 1.0))),
        "ta_cost_rate": d.choice((0.0, 0.0, d.u(0.0, 0.03))),
        "state_run": d.coin(0.2),
        "excluded_segments": d.subset(segments, 0.15),
    }
    out.pop("eligible_chains", None)
    if d.coin(0.5):
        out["eligible_chains"] = d.subset(chains, 0.6, nonempty=True)
    return out


def _event(d: _Draw, eid: str, regions: list[str], chains: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": eid,
        "name": f"Event {eid}",
        "probability": d.choice((d.u(0.01, 0.2), d.u(0.01, 0.2), 1.0)),
        "pd_multiplier": d.u(1.0, 6.0),
        "lgd_add": d.choice((0.0, d.u(0.0, 0.2))),
        "default_rate_add": d.choice((0.0, 0.0, d.u(0.0, 0.05))),
    }
    if d.coin(0.5):
        out["chains"] = d.subset(chains, 0.6, nonempty=True)
    if d.coin(0.3):
        out["regions"] = d.subset(regions, 0.6, nonempty=True)
    if d.coin(0.3):
        out["pd_multiplier_by_chain"] = {c: d.u(1.0, 4.0) for c in d.subset(chains, 0.5)}
    return out


def _fund(
    d: _Draw, gid: str, products: list[str], events: list[str], tight: bool
) -> dict[str, Any]:
    out = copy.deepcopy(MINIMAL_CASE["funds"][0])
    eligible = d.subset(products, 0.7, nonempty=True)
    out.update(
        id=gid,
        name=f"Fund {gid}",
        coverage_ratio=d.u(0.3, 1.0),
        leverage_cap=d.u(1.0, 12.0),
        fee_rate=d.u(0.0, 0.03),
        max_depletion_probability=d.u(0.005, 0.03) if tight else d.u(0.01, 0.2),
        uptake_share=d.choice((1.0, d.u(0.2, 1.0))),
        eligible_products=eligible,
        covered_source_kinds=d.choice((["private"], ["private"], ["private", "public"])),
    )
    if d.coin(0.4):
        out["structure"] = "first_loss"
        out["first_loss_cap_share"] = d.u(0.05, 0.3)
    if d.coin(0.3):
        out["coverage_by_product"] = {p: d.u(0.2, 1.0) for p in d.subset(eligible, 0.5)}
    if d.coin(0.3):
        out["capital_cap_usd"] = d.log_u(1e4, 1e6) if tight else d.log_u(1e5, 1e7)
    if events and d.coin(0.25):
        out["active_only_in_events"] = d.subset(events, 0.6, nonempty=True)
    return out


def _source(
    d: _Draw, sid: str, kind: str, products: list[str], funds: list[str], tight: bool
) -> dict[str, Any]:
    template = copy.deepcopy(next(s for s in MINIMAL_CASE["sources"] if s["kind"] == kind))
    amount = d.log_u(1e5, 3e7)
    out: dict[str, Any] = {
        k: v for k, v in template.items() if k in ("kind", "cost_of_funds_rate", "concessional")
    }
    out.update(
        id=sid,
        name=f"Source {sid}",
        amount_usd=amount,
        cost_of_funds_rate=d.u(0.0, 0.1),
        products=d.subset(products, 0.6),
        funds=d.subset(funds, 0.5),
        technical_assistance=d.coin(0.4),
    )
    if not (out["products"] or out["funds"] or out["technical_assistance"]):
        out["products"] = [d.choice(products)]
    if d.coin(0.15):
        out["concessional"] = d.coin(0.5)
    if d.coin(0.6):
        out["cvar_alpha"] = d.choice(ALPHAS)
        if d.coin(0.5):
            out["cvar_limit_share"] = d.u(0.0, 0.02) if tight else d.u(0.02, 0.3)
        else:
            out["cvar_limit_usd"] = amount * (d.u(0.0, 0.01) if tight else d.u(0.01, 0.3))
    if d.coin(0.4):  # loss rates PD x LGD run from 0.05 % to 13 %
        out["expected_loss_limit_rate"] = d.u(0.0, 0.01) if tight else d.u(0.02, 0.15)
    if d.coin(0.3):
        high = d.u(0.01, 0.3)
        out["max_pd_guaranteed"] = high
        if d.coin(0.7):
            out["max_pd_unguaranteed"] = high * d.u(0.2, 1.0)
    if d.coin(0.25):
        out["min_deforestation_pressure"] = d.u(0.0, 0.8)
    if kind == "private":
        if d.coin(0.5):
            out["return_hurdle_rate"] = d.u(0.05, 0.3) if tight else d.u(-0.05, 0.03)
        if d.coin(0.3):
            out["max_multiple_of_concessional"] = d.u(0.0, 1.0) if tight else d.u(0.5, 10.0)
    return out


def _risk_model(d: _Draw, chains: list[str], events: list[dict[str, Any]]) -> dict[str, Any]:
    copula: dict[str, Any] = {
        "rho_macro": d.u(0.0, 0.15),
        "rho_chain": d.u(0.0, 0.15),
        "rho_region": d.u(0.0, 0.15),
    }
    if d.coin(0.3):
        copula["t_degrees_of_freedom"] = d.u(3.0, 30.0)
    out: dict[str, Any] = {
        "copula": copula,
        "events": events,
        "lgd_downturn_correlation": d.choice((0.0, d.u(0.0, 0.5))),
        "state_lender_pd_uplift": d.choice((1.0, d.u(1.0, 2.0))),
        "price_factors": {
            c: {"volatility": d.u(0.1, 0.5), "shock_share": d.choice((0.0, d.u(-0.4, 0.2)))}
            for c in d.subset(chains, 0.4)
        },
    }
    # |ρ| <= 0.3 among at most 3 chains is diagonally dominant, hence positive definite
    out["chain_correlations"] = [
        {"chains": [a, b], "correlation": d.u(-0.3, 0.3)}
        for a, b in itertools.combinations(chains, 2)
        if d.coin(0.5)
    ]
    return out


def _policy(d: _Draw, tight: bool, counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"deforestation_priority": d.u(0.0, 3.0)}
    if d.coin(0.4 if tight else 0.25):
        out["min_private_per_concessional"] = d.u(1.0, 10.0) if tight else d.u(0.0, 2.0)
    for what, n in counts.items():
        # a cap below 1/n forbids any lending at all; loose cases stay above it
        if d.coin(0.3 if tight else 0.15):
            out[f"max_share_per_{what}"] = d.u(0.1, 1.0) if tight else d.u(min(1.2 / n, 1.0), 1.0)
    if d.coin(0.3):
        out["climate_earmark_min_share"] = d.u(0.8, 1.0) if tight else d.u(0.0, 0.8)
        out["climate_earmark_min_pressure"] = d.u(0.2, 0.8)
    return out


def large_case_dict(
    seed: int, *, n_regions: int = 25, n_chains: int = 20, n_sources: int = 40
) -> dict[str, Any]:
    """A large valid case whose optimum is known: ``n_regions x n_chains`` segments.

    Product ``P1`` serves every chain and every source may lend it, ``P2`` serves every other
    chain and every other source may lend it; there are no funds, no events, no policy caps and
    the only risk limits are CVaR limits of 100 % of commitment (8 sources): a source's loss
    never exceeds its lending, so they never bind. Money is about 60 % of the gap. The optimum
    is then the fractional knapsack: fill segments in decreasing objective weight
    ``1 + deforestation_pressure`` until the money runs out. ``gap_tolerance_share`` is 0, so
    the returned allocation closes exactly that much.
    """
    d = _Draw(seed)
    regions = [f"R{i + 1}" for i in range(n_regions)]
    chains = [f"C{i + 1}" for i in range(n_chains)]
    case = copy.deepcopy(MINIMAL_CASE)
    case["name"] = f"large {seed}"
    case["regions"] = [{"id": r, "name": r} for r in regions]
    case["value_chains"] = [{"id": c, "name": c} for c in chains]
    case["segments"] = []
    for r, c in itertools.product(regions, chains):
        seg = _segment(d, r, c)
        seg["supply_usd"] = seg["need_usd"] * d.u(0.0, 0.3)
        case["segments"].append(seg)
    gap = sum(s["need_usd"] - s["supply_usd"] for s in case["segments"])
    base = {k: v for k, v in MINIMAL_CASE["products"][0].items() if k != "eligible_chains"}
    case["products"] = [
        base | {"id": "P1", "name": "P1", "base_pd": 0.03},
        base | {"id": "P2", "name": "P2", "base_pd": 0.05, "eligible_chains": chains[::2]},
    ]
    case["funds"] = []
    weights = np.array([d.u(0.5, 1.5) for _ in range(n_sources)])
    amounts = 0.6 * gap * weights / weights.sum()
    case["sources"] = []
    for i, amount in enumerate(amounts):
        src: dict[str, Any] = {
            "id": f"S{i + 1}",
            "name": f"Source {i + 1}",
            "kind": KINDS[i % 3],
            "amount_usd": float(amount),
            "cost_of_funds_rate": d.u(0.0, 0.1),
            "products": ["P1", "P2"] if i % 2 else ["P1"],
        }
        if i % 5 == 0:
            src |= {"cvar_alpha": 0.95, "cvar_limit_share": 1.0}
        case["sources"].append(src)
    case["risk_model"] = {"copula": MINIMAL_CASE["risk_model"]["copula"]}
    case["policy"] = {"deforestation_priority": 1.0, "gap_tolerance_share": 0.0}
    return case
