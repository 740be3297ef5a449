"""Checks inside each entity of a case: fields that must agree with each other.

A segment's supply against its need, a product's LGD spread against its mean, a fund's
structure against its first-loss cap and its per-product coverage, a source's CVaR limit, its
confidence level, PD caps, senior cap, return hurdle and minimum deployment, and the copula's
total correlation. Like the checks across the case (:mod:`models.crosscheck`) they collect every
problem as ``(loc, value, message)``, for :class:`~models.crosscheck.CrossFieldProblems`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models.crosscheck import Loc, Problem

if TYPE_CHECKING:
    from models.schema import Case


def entity_problems(case: Case) -> list[Problem]:
    """Consistency inside each entity (supply vs need, LGD spread, CVaR limits...)."""
    out: list[Problem] = []
    for i, seg in enumerate(case.segments):
        if seg.supply_usd > seg.need_usd:
            out.append(
                (
                    ("segments", i, "supply_usd"),
                    seg.supply_usd,
                    f"current supply exceeds the need of {seg.need_usd:,.0f}; it must be <= need",
                )
            )
    for i, prod in enumerate(case.products):
        m, sd = prod.lgd_mean, prod.lgd_sd
        if 0.0 < m < 1.0 and sd * sd >= m * (1.0 - m):
            out.append(
                (
                    ("products", i, "lgd_sd"),
                    sd,
                    f"too wide for a Beta LGD with mean {m}: need lgd_sd < {np.sqrt(m * (1 - m)):.4f}",
                )
            )
        elif m in (0.0, 1.0) and sd > 0.0:
            out.append((("products", i, "lgd_sd"), sd, f"must be 0 when lgd_mean is {m}"))
    for i, fund in enumerate(case.funds):
        if fund.structure == "first_loss" and fund.first_loss_cap_share is None:
            out.append(
                (
                    ("funds", i, "first_loss_cap_share"),
                    None,
                    "required for a first_loss fund: the share of covered volume it absorbs, e.g. 0.10",
                )
            )
        if fund.structure == "pari_passu" and fund.first_loss_cap_share is not None:
            out.append(
                (
                    ("funds", i, "first_loss_cap_share"),
                    fund.first_loss_cap_share,
                    "only a first_loss fund has a cap; remove it or set structure: first_loss",
                )
            )
        for prod_id in fund.coverage_by_product:
            if prod_id not in fund.eligible_products:
                out.append(
                    (
                        ("funds", i, "coverage_by_product", prod_id),
                        prod_id,
                        "coverage given for a product the fund does not cover; eligible_products: "
                        + ", ".join(fund.eligible_products),
                    )
                )
    for i, src in enumerate(case.sources):
        out += _source_problems(i, src)
    copula = case.risk_model.copula
    if copula.rho_total >= 1.0:
        out.append(
            (
                ("risk_model", "copula"),
                round(copula.rho_total, 6),
                "rho_macro + rho_chain + rho_region must be < 1",
            )
        )
    return out


def _source_problems(i: int, src: Any) -> list[Problem]:
    out = _limit_problems(i, src)
    if src.min_deploy_usd is not None and src.min_deploy_usd > src.amount_usd:
        out.append(
            (
                ("sources", i, "min_deploy_usd"),
                src.min_deploy_usd,
                f"more than the source's amount_usd of {src.amount_usd:,.0f}; a source cannot "
                "place more than it has",
            )
        )
    return out


def _limit_problems(i: int, src: Any) -> list[Problem]:
    out: list[Problem] = []
    loc: Loc = ("sources", i)
    has_limit = src.cvar_limit_usd is not None or src.cvar_limit_share is not None
    if src.cvar_limit_usd is not None and src.cvar_limit_share is not None:
        out.append(
            (
                loc + ("cvar_limit_share",),
                src.cvar_limit_share,
                "give the CVaR limit either in US$ (cvar_limit_usd) or as a share, not both",
            )
        )
    if has_limit and src.cvar_alpha is None:
        out.append(
            (
                loc + ("cvar_alpha",),
                None,
                "a CVaR limit needs its confidence level cvar_alpha in (0, 1), e.g. 0.95",
            )
        )
    if src.cvar_alpha is not None and not has_limit:
        out.append(
            (
                loc + ("cvar_alpha",),
                src.cvar_alpha,
                "cvar_alpha without a limit; add cvar_limit_usd or cvar_limit_share",
            )
        )
    if src.cvar_limit_usd is not None and src.cvar_limit_usd > src.amount_usd:
        out.append(
            (
                loc + ("cvar_limit_usd",),
                src.cvar_limit_usd,
                f"exceeds the source's amount of {src.amount_usd:,.0f}; it must be <= amount_usd",
            )
        )
    if (
        src.max_pd_unguaranteed is not None
        and src.max_pd_guaranteed is not None
        and src.max_pd_unguaranteed > src.max_pd_guaranteed
    ):
        out.append(
            (
                loc + ("max_pd_unguaranteed",),
                src.max_pd_unguaranteed,
                f"must be <= max_pd_guaranteed ({src.max_pd_guaranteed})",
            )
        )
    if not (src.products or src.funds or src.technical_assistance):
        out.append(
            (
                loc + ("products",),
                "[]",
                "the source can finance nothing: give products, funds or technical_assistance",
            )
        )
    if src.max_multiple_of_concessional is not None and src.kind != "private":
        out.append(
            (
                loc + ("max_multiple_of_concessional",),
                src.max_multiple_of_concessional,
                f"only private senior money is capped by concessional money; kind is {src.kind}",
            )
        )
    if src.return_hurdle_rate is not None and src.kind != "private":
        out.append(
            (
                loc + ("return_hurdle_rate",),
                src.return_hurdle_rate,
                f"a return hurdle applies to private sources; kind is {src.kind}",
            )
        )
    return out
