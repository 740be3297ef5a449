"""A case as pandas tables: what the CLI prints and the reports show. Money in US$."""

from __future__ import annotations

import re

import pandas as pd

from models.schema import Case


def segments_frame(case: Case) -> pd.DataFrame:
    """One row per segment: region, value chain, households, need, supply, gap, risk and priority.

    Returns
    -------
    DataFrame indexed by segment id with columns ``region, value_chain, households, need_usd,
    supply_usd, gap_usd, pd_multiplier, deforestation_pressure, remote``.
    """
    rows = [
        {
            "segment": s.id,
            "region": s.region,
            "value_chain": s.value_chain,
            "households": s.households,
            "need_usd": s.need_usd,
            "supply_usd": s.supply_usd,
            "gap_usd": s.gap_usd,
            "pd_multiplier": s.pd_multiplier,
            "deforestation_pressure": s.deforestation_pressure,
            "remote": s.remote,
        }
        for s in case.segments
    ]
    return pd.DataFrame(rows).set_index("segment")


def gap_by_region_and_chain(case: Case) -> pd.DataFrame:
    """Unmet gap (US$) pivoted: regions down, value chains across, with totals."""
    frame = segments_frame(case)
    pivot = frame.pivot_table(
        index="region", columns="value_chain", values="gap_usd", aggfunc="sum", fill_value=0.0
    )
    pivot = pivot.reindex(
        index=[r.id for r in case.regions if r.id in pivot.index],
        columns=[c.id for c in case.value_chains if c.id in pivot.columns],
    )
    pivot["total"] = pivot.sum(axis=1)
    pivot.loc["total"] = pivot.sum(axis=0)
    return pivot


def sources_frame(case: Case) -> pd.DataFrame:
    """One row per finance source: kind, amount, cost, what it may finance and its limits."""
    rows = []
    for s in case.sources:
        if s.cvar_limit_usd is not None:
            limit = f"CVaR{s.cvar_alpha:.0%} <= US${s.cvar_limit_usd / 1e6:,.1f}m"
        elif s.cvar_limit_share is not None:
            limit = f"CVaR{s.cvar_alpha:.1%} <= {s.cvar_limit_share:.1%} of commitment"
        else:
            limit = ""
        rows.append(
            {
                "source": s.id,
                "kind": s.kind.value,
                "concessional": s.is_concessional,
                "amount_usd": s.amount_usd,
                "cost_of_funds_rate": s.cost_of_funds_rate,
                "finances": ", ".join(
                    [*s.products, *s.funds, *(["TA"] if s.technical_assistance else [])]
                ),
                "cvar_limit": limit,
                "expected_loss_limit_rate": s.expected_loss_limit_rate,
                "return_hurdle_rate": s.return_hurdle_rate,
            }
        )
    return pd.DataFrame(rows).set_index("source")


def funds_frame(case: Case) -> pd.DataFrame:
    """One row per guarantee fund: structure, coverage, leverage, fee, epsilon, uptake, cap."""
    rows = [
        {
            "fund": f.id,
            "structure": f.structure.value,
            "coverage_ratio": f.coverage_ratio,
            "first_loss_cap_share": f.first_loss_cap_share,
            "leverage_cap": f.leverage_cap,
            "fee_rate": f.fee_rate,
            "max_depletion_probability": f.max_depletion_probability,
            "uptake_share": f.uptake_share,
            "capital_cap_usd": f.capital_cap_usd,
            "eligible_products": ", ".join(f.eligible_products),
            "contingent_on": ", ".join(f.active_only_in_events),
        }
        for f in case.funds
    ]
    return pd.DataFrame(rows).set_index("fund") if rows else pd.DataFrame()


def products_frame(case: Case) -> pd.DataFrame:
    """One row per loan product: pricing, tenor, ticket, PD, LGD, cost, eligible chains."""
    rows = [
        {
            "product": p.id,
            "rate": p.rate,
            "tenor_months": p.tenor_months,
            "avg_ticket_usd": p.avg_ticket_usd,
            "base_pd": p.base_pd,
            "lgd_mean": p.lgd_mean,
            "transaction_cost_rate": p.transaction_cost_rate,
            "state_run": p.state_run,
            "eligible_chains": "all" if p.eligible_chains is None else ", ".join(p.eligible_chains),
        }
        for p in case.products
    ]
    return pd.DataFrame(rows).set_index("product")


def _resolve(case: Case, path: str) -> object:
    """The value at a field path such as ``segments[SM-COF].need_usd`` (None if absent)."""
    node: object = case
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part.startswith("["):
            key = part[1:-1]
            items = node if isinstance(node, tuple) else ()
            match = [x for x in items if getattr(x, "id", None) == key]
            node = match[0] if match else (items[int(key)] if key.isdigit() and items else None)
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            node = getattr(node, part, None)
        if node is None:
            return None
    return node


def assumptions_frame(case: Case) -> pd.DataFrame:
    """The assumptions register: every tagged figure with its field path, value and source.

    Returns
    -------
    DataFrame with columns ``field, value, tag, source``: one row per figure tagged on its own
    and one per entity carrying a tag for all its figures (value ``"(entity)"``).
    """
    rows = []
    for path, tag in case.field_sources.items():
        value = _resolve(case, path)
        if isinstance(value, tuple | list):
            value = ", ".join(map(str, value))
        rows.append(
            {
                "field": path,
                "value": value if value is not None else "",
                "tag": tag[: tag.index("]") + 1],
                "source": tag,
            }
        )
    for group, items in [
        ("regions", case.regions),
        ("value_chains", case.value_chains),
        ("segments", case.segments),
        ("products", case.products),
        ("funds", case.funds),
        ("sources", case.sources),
        ("risk_model.events", case.risk_model.events),
    ]:
        for item in items:
            if item.source:
                tag = item.source
                rows.append(
                    {
                        "field": f"{group}[{item.id}]",
                        "value": "(entity)",
                        "tag": tag[: tag.index("]") + 1],
                        "source": tag,
                    }
                )
    return pd.DataFrame(rows, columns=["field", "value", "tag", "source"])
