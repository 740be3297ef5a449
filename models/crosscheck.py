"""Checks that span fields and entities of a case: references, ids, consistency of limits.

They run once, after every field has passed its own bounds, and collect every problem instead of
stopping at the first, so an analyst fixes a case in one round.

This module holds the problems' form (:class:`CrossFieldProblems`), the checks across the case
(unique ids, references that resolve, capital layers, the value-chain correlation matrix) and
the warnings about a valid case; the checks inside each entity (supply against need, LGD
spread, a source's limits) are in :mod:`models.entity_checks`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import InputError

if TYPE_CHECKING:
    from models.schema import Case

Loc = tuple[str | int, ...]
Problem = tuple[Loc, Any, str]
MAX_IDS_LISTED = 30
"""Valid ids named in one message; a case with thousands of ids would print megabytes each."""


class CrossFieldProblems(InputError, ValueError):
    """Problems found across fields, each ``(loc, value, message)`` with loc a tuple path.

    A ``ValueError`` so that pydantic, which raises it inside a validator, reports it.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p[0]))}: {p[2]}" for p in problems))


class _Known(frozenset):
    """The ids of one kind of entity, with the list that messages show (built once, capped)."""

    listing: str

    @classmethod
    def of(cls, ids: Iterable[str]) -> _Known:
        known = cls(ids)
        ordered = sorted(known)
        shown = ", ".join(ordered[:MAX_IDS_LISTED]) or "(none defined)"
        if len(ordered) > MAX_IDS_LISTED:
            shown += f", … ({len(ordered):,} in all)"
        known.listing = shown
        return known


def _dangling(loc: Loc, refs: Iterable[str] | None, known: _Known, what: str) -> list[Problem]:
    """One problem per reference in ``refs`` that is not among the ``known`` ids."""
    if refs is None:
        return []
    return [
        (loc + (i,), ref, f"unknown {what} id; valid ids: {known.listing}")
        for i, ref in enumerate(refs)
        if ref not in known
    ]


def _duplicates(loc: Loc, ids: list[str], what: str) -> list[Problem]:
    first: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        first.setdefault(item_id, i)
    return [
        (loc + (i, "id"), item_id, f"duplicate {what} id; ids must be unique")
        for i, item_id in enumerate(ids)
        if first[item_id] != i
    ]


def case_problems(case: Case) -> list[Problem]:
    """Unique ids and references that must resolve across the case."""
    regions = _Known.of(r.id for r in case.regions)
    chains = _Known.of(c.id for c in case.value_chains)
    segments = _Known.of(s.id for s in case.segments)
    products = _Known.of(p.id for p in case.products)
    funds = _Known.of(f.id for f in case.funds)
    events = _Known.of(e.id for e in case.risk_model.events)
    out: list[Problem] = []
    for name, items, what in [
        ("regions", case.regions, "region"),
        ("value_chains", case.value_chains, "value chain"),
        ("segments", case.segments, "segment"),
        ("products", case.products, "product"),
        ("funds", case.funds, "fund"),
        ("sources", case.sources, "source"),
    ]:
        out += _duplicates((name,), [x.id for x in items], what)
    out += _duplicates(("risk_model", "events"), [e.id for e in case.risk_model.events], "event")

    pairs = Counter((s.region, s.value_chain) for s in case.segments)
    for i, seg in enumerate(case.segments):
        if seg.region not in regions:
            out.append(
                (
                    ("segments", i, "region"),
                    seg.region,
                    f"unknown region id; valid ids: {regions.listing}",
                )
            )
        if seg.value_chain not in chains:
            out.append(
                (
                    ("segments", i, "value_chain"),
                    seg.value_chain,
                    f"unknown value chain id; valid ids: {chains.listing}",
                )
            )
        if pairs[(seg.region, seg.value_chain)] > 1:
            out.append(
                (
                    ("segments", i, "value_chain"),
                    seg.value_chain,
                    f"a second segment for region {seg.region} and this chain; "
                    "each region x value chain appears once",
                )
            )
    for i, prod in enumerate(case.products):
        out += _dangling(
            ("products", i, "eligible_chains"), prod.eligible_chains, chains, "value chain"
        )
        out += _dangling(
            ("products", i, "excluded_segments"), prod.excluded_segments, segments, "segment"
        )
    for i, fund in enumerate(case.funds):
        out += _dangling(
            ("funds", i, "eligible_products"), fund.eligible_products, products, "product"
        )
        out += _dangling(
            ("funds", i, "active_only_in_events"), fund.active_only_in_events, events, "event"
        )
    for i, fund in enumerate(case.funds):
        out += _layer_problems(i, fund, case)
    for i, src in enumerate(case.sources):
        out += _dangling(("sources", i, "products"), src.products, products, "product")
        out += _dangling(("sources", i, "funds"), src.funds, funds, "fund")
    for i, ev in enumerate(case.risk_model.events):
        loc: Loc = ("risk_model", "events", i)
        out += _dangling(loc + ("chains",), ev.chains, chains, "value chain")
        out += _dangling(loc + ("regions",), ev.regions, regions, "region")
        out += _dangling(
            loc + ("pd_multiplier_by_chain",),
            list(ev.pd_multiplier_by_chain),
            chains,
            "value chain",
        )
        out += _dangling(loc + ("region_intensity",), list(ev.region_intensity), regions, "region")
    out += _dangling(
        ("risk_model", "price_factors"), list(case.risk_model.price_factors), chains, "value chain"
    )
    out += _correlation_problems(case, chains)
    return out


def _layer_problems(i: int, fund: Any, case: Case) -> list[Problem]:
    """A fund's capital layers name each source that may capitalise it exactly once."""
    if not fund.capital_layers:
        return []
    loc: Loc = ("funds", i, "capital_layers")
    providers = _Known.of(s.id for s in case.sources if fund.id in s.funds)
    out: list[Problem] = []
    seen: set[str] = set()
    for k, layer in enumerate(fund.capital_layers):
        if not layer:
            out.append((loc + (k,), [], "an empty layer; list at least one source"))
        for m, src_id in enumerate(layer):
            if src_id not in providers:
                out.append(
                    (
                        loc + (k, m),
                        src_id,
                        f"not a source that may capitalise {fund.id} (one listing it in its "
                        f"funds); valid ids: {providers.listing}",
                    )
                )
            elif src_id in seen:
                out.append((loc + (k, m), src_id, "named in two layers; name each source once"))
            seen.add(src_id)
    missing = sorted(providers - seen)
    if missing:
        out.append(
            (
                loc,
                [list(layer) for layer in fund.capital_layers],
                f"leaves out {', '.join(missing)}, which may capitalise {fund.id}: put each "
                "in a layer",
            )
        )
    return out


def _correlation_problems(case: Case, chains: _Known) -> list[Problem]:
    out: list[Problem] = []
    seen: set[frozenset[str]] = set()
    for i, cc in enumerate(case.risk_model.chain_correlations):
        loc: Loc = ("risk_model", "chain_correlations", i, "chains")
        out += _dangling(loc, cc.chains, chains, "value chain")
        a, b = cc.chains
        if a == b:
            out.append((loc, f"{a}, {b}", "a correlation needs two different value chains"))
        key = frozenset(cc.chains)
        if key in seen:
            out.append((loc, f"{a}, {b}", "this pair is given twice"))
        seen.add(key)
    if out:
        return out
    matrix = chain_correlation_matrix(case)
    smallest = float(np.linalg.eigvalsh(matrix).min()) if matrix.size else 1.0
    if smallest < -1e-10:
        out.append(
            (
                ("risk_model", "chain_correlations"),
                f"min eigenvalue {smallest:.4f}",
                "the value-chain correlations do not form a valid correlation matrix "
                "(not positive semi-definite); lower the largest correlations",
            )
        )
    return out


def chain_correlation_matrix(case: Case) -> np.ndarray:
    """Correlation matrix of the value-chain factors, ordered as ``case.value_chains``.

    Returns
    -------
    ndarray of shape (n_chains, n_chains)
        Identity plus the given pairs; unlisted pairs are uncorrelated.
    """
    index = {c.id: n for n, c in enumerate(case.value_chains)}
    matrix = np.eye(len(case.value_chains))  # not len(index): ids may repeat (reported apart)
    for cc in case.risk_model.chain_correlations:
        a, b = (index.get(c) for c in cc.chains)
        if a is not None and b is not None:
            matrix[a, b] = matrix[b, a] = cc.correlation
    return matrix


def case_warnings(case: Case) -> list[str]:
    """Plain-language warnings about a valid case: parts that can never take part.

    A case with such parts is still valid (an analyst may be sketching it), but the optimizer
    would silently leave them empty; these sentences say so before it runs.

    Parameters
    ----------
    case : Case
        A loaded case.

    Returns
    -------
    list of str
        One sentence per loan product that no finance source lists in ``products`` (no money
        can reach it) and per guarantee fund that no source lists in ``funds`` (nothing can
        capitalise it), in the case's order; empty when there is none.
    """
    lent = {product_id for src in case.sources for product_id in src.products}
    capitalised = {fund_id for src in case.sources for fund_id in src.funds}
    out = [
        f"loan product {prod.id} ({prod.name}) is in no finance source's products, so no money "
        "can reach it; add its id to the products of a source that may lend it, or remove it"
        for prod in case.products
        if prod.id not in lent
    ]
    out += [
        f"guarantee fund {fund.id} ({fund.name}) is in no finance source's funds, so nothing "
        "can capitalise it and it guarantees nothing; add its id to the funds of a source, or "
        "remove it"
        for fund in case.funds
        if fund.id not in capitalised
    ]
    return out
