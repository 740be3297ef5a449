"""The shipped default case and its stress overlays: figures, provenance, immutability, hashing.

Reference figures are those of the domain notes (shared/DOMAIN.md §10): the segment table of
§10.1 with its totals (US$2,380.1 m, 545,000 households) and its "Totals by chain" table, the
products of §10.2, the guarantee funds of §10.3 and the finance sources of §10.4.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from models import DEFAULT_CASE, Case, CaseError, SourceKind, load_case

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "inputs"
STRESS = INPUTS / "stress"
M = 1e6

TAG = re.compile(r"^\[[SDAU](/[SDAU])*\]")
"""A provenance tag: [S], [D], [A] or [U], or a combination such as [S/D]."""

# DOMAIN.md §10.1: id -> (value chain, households, unmet gap US$ m, pd_mult, remote)
DOMAIN_SEGMENTS: dict[str, tuple[str, int, float, float, bool]] = {
    "SM-COF": ("coffee", 32_000, 152.3, 1.1, False),
    "SM-CAC": ("cocoa", 35_000, 152.5, 1.0, False),
    "SM-PAL": ("oil_palm", 10_000, 52.1, 0.8, False),
    "SM-RIC": ("rice_annual", 25_000, 92.4, 1.2, False),
    "SM-CAT": ("cattle", 15_000, 117.5, 0.9, False),
    "JU-COF": ("coffee", 48_000, 228.5, 1.1, False),
    "JU-CAC": ("cocoa", 15_000, 65.3, 1.0, False),
    "PA-COF": ("coffee", 7_000, 33.3, 1.1, False),
    "HU-COF": ("coffee", 7_000, 33.3, 1.1, False),
    "HU-CAC": ("cocoa", 10_000, 43.6, 1.0, False),
    "HU-PAL": ("oil_palm", 2_500, 13.0, 0.8, False),
    "AM-COF": ("coffee", 25_000, 119.0, 1.1, False),
    "AM-CAT": ("cattle", 12_000, 94.0, 0.9, False),
    "CU-COF": ("coffee", 25_000, 119.0, 1.1, False),
    "CU-CAC": ("cocoa", 10_000, 43.6, 1.0, False),
    "PU-COF": ("coffee", 8_000, 38.1, 1.1, True),
    "UC-PAL": ("oil_palm", 11_000, 57.4, 0.8, False),
    "UC-CAC": ("cocoa", 10_000, 43.6, 1.0, False),
    "UC-CAT": ("cattle", 15_000, 117.5, 0.9, False),
    "UC-DIV": ("diversified", 30_000, 88.3, 1.3, True),
    "LO-DIV": ("diversified", 70_000, 206.2, 1.3, True),
    "LO-RIC": ("rice_annual", 15_000, 55.5, 1.2, True),
    "LO-PAL": ("oil_palm", 2_300, 12.0, 0.8, True),
    "MD-AGF": ("agroforestry_ntfp", 8_000, 28.1, 1.2, True),
    "MD-CAT": ("cattle", 5_000, 39.1, 0.9, True),
    "OS-CAT": ("cattle", 13_000, 101.8, 0.9, False),
    "OS-DIV": ("diversified", 79_200, 233.2, 1.3, False),
}
DOMAIN_TOTAL_GAP_M = 2_380.1
DOMAIN_TOTAL_HOUSEHOLDS = 545_000

# DOMAIN.md §10.1 "Totals by chain" (US$ m, households)
DOMAIN_CHAINS: dict[str, tuple[float, int]] = {
    "coffee": (723.5, 152_000),
    "diversified": (527.7, 179_200),
    "cattle": (469.8, 60_000),
    "cocoa": (348.5, 80_000),
    "rice_annual": (147.9, 40_000),
    "oil_palm": (134.5, 25_800),
    "agroforestry_ntfp": (28.1, 8_000),
}

# DOMAIN.md §10.2: id -> (rate, tenor months, avg ticket, base PD, LGD, lender cost)
DOMAIN_PRODUCTS: dict[str, tuple[float, int, float, float, float, float]] = {
    "IND_MFI": (0.36, 10, 2_500, 0.07, 0.65, 0.10),
    "IND_AGB": (0.20, 12, 3_600, 0.06, 0.60, 0.08),
    "GROUP": (0.15, 12, 3_500, 0.05, 0.55, 0.06),
    "VCF": (0.12, 6, 4_000, 0.025, 0.35, 0.03),
    "LT_INV": (0.15, 84, 6_000, 0.06, 0.50, 0.05),
}

# DOMAIN.md §10.3: id -> (coverage, leverage cap, fee, claim trigger days, capital US$ m)
DOMAIN_FUNDS: dict[str, tuple[float, float, float, int, float]] = {
    "G_PUB": (0.70, 5.0, 0.015, 90, 18.0),
    "G_CLIM_FL": (1.00, 10.0, 0.005, 90, 40.0),
    "G_MUTUAL": (0.50, 3.0, 0.020, 120, 10.0),
    "G_EMERG": (0.90, 4.0, 0.000, 90, 30.0),
}

# DOMAIN.md §10.4: id -> (kind, available US$ m)
DOMAIN_SOURCES: dict[str, tuple[str, float]] = {
    "PUB_AGROPERU": ("public", 200),
    "PUB_FIFPPA": ("public", 30),
    "PUB_GUAR": ("public", 18),
    "PUB_EMERG": ("public", 30),
    "PUB_GRANTS": ("public", 25),
    "PRIV_MFI": ("private", 750),
    "PRIV_BANK": ("private", 100),
    "PRIV_SOCIAL": ("private", 200),
    "PRIV_BUYERS": ("private", 150),
    "PRIV_SENIOR": ("private", 400),
    "CLIM_JDI": ("climate", 40),
    "CLIM_GCF": ("climate", 46),
    "CLIM_FIP_GEF": ("climate", 15),
}


@pytest.fixture(scope="module")
def case() -> Case:
    return load_case()


@pytest.fixture(scope="module")
def stressed() -> dict[str, Case]:
    return {path.stem: load_case(path) for path in sorted(STRESS.glob("*.yaml"))}


# --- helpers ---------------------------------------------------------------------------------
_NOT_COMPARED = {"field_sources", "source_file", "content_sha256", "stress"}


def leaves(node: Any, path: str = "") -> dict[str, Any]:
    """Flatten a ``model_dump()`` into ``{field path: value}``, naming entities by id.

    Paths read like the loader's: ``sources[CLIM_JDI].amount_usd``,
    ``risk_model.price_factors.coffee.shock_share``, ``products[VCF].eligible_chains[1]``.
    """
    if isinstance(node, dict):
        if not node:
            return {path: {}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(leaves(value, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(node, list | tuple):
        if not node:
            return {path: ()}
        out = {}
        for n, item in enumerate(node):
            label = item["id"] if isinstance(item, dict) and "id" in item else n
            out.update(leaves(item, f"{path}[{label}]"))
        return out
    return {path: node}


def changed_leaves(base: Case, other: Case) -> dict[str, tuple[Any, Any]]:
    """Leaf paths where two cases differ, with (base value, other value); missing = ``None``."""
    a = leaves(base.model_dump(exclude=_NOT_COMPARED))
    b = leaves(other.model_dump(exclude=_NOT_COMPARED))
    missing = object()
    return {
        key: (a.get(key), b.get(key))
        for key in a.keys() | b.keys()
        if a.get(key, missing) != b.get(key, missing)
    }


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- loading ---------------------------------------------------------------------------------
def test_default_case_loads_without_and_with_explicit_path(case: Case) -> None:
    explicit = load_case(INPUTS / "peru_amazon.yaml")
    as_text = load_case(str(INPUTS / "peru_amazon.yaml"))
    assert Path(DEFAULT_CASE) == INPUTS / "peru_amazon.yaml"
    assert Path(case.source_file) == INPUTS / "peru_amazon.yaml"
    assert explicit.model_dump(exclude={"source_file"}) == case.model_dump(exclude={"source_file"})
    assert as_text.content_sha256 == explicit.content_sha256 == case.content_sha256
    assert case.stress is None
    assert case.name == "Peruvian Amazon PPC — default case"
    assert case.programme_years == 5
    assert case.horizon_years == 1
    assert case.fx_pen_per_usd == pytest.approx(3.3)


def test_default_case_entity_counts(case: Case) -> None:
    assert len(case.regions) == 11
    assert len(case.value_chains) == 7
    assert len(case.segments) == 27
    assert len(case.products) == 5
    assert len(case.funds) == 4
    assert len(case.sources) == 13
    assert len(case.risk_model.events) == 4
    assert [p.id for p in case.products] == list(DOMAIN_PRODUCTS)
    assert [f.id for f in case.funds] == list(DOMAIN_FUNDS)
    assert [s.id for s in case.sources] == list(DOMAIN_SOURCES)
    assert {s.id for s in case.segments} == set(DOMAIN_SEGMENTS)


def test_total_gap_and_households_match_domain_notes(case: Case) -> None:
    assert case.total_gap_usd == pytest.approx(2.38e9, rel=0.005)
    assert abs(case.total_gap_usd / M - DOMAIN_TOTAL_GAP_M) <= 0.1
    # the §10.1 total agrees with its rows (each rounded to 0.1 US$ m)
    assert sum(row[2] for row in DOMAIN_SEGMENTS.values()) == pytest.approx(2_380.2)
    assert case.total_households == DOMAIN_TOTAL_HOUSEHOLDS == 545_000
    assert case.total_need_usd == pytest.approx(2_720_530_000.0)


@pytest.mark.parametrize("segment_id", list(DOMAIN_SEGMENTS))
def test_segment_matches_domain_table(case: Case, segment_id: str) -> None:
    chain, households, gap_m, pd_mult, remote = DOMAIN_SEGMENTS[segment_id]
    seg = case.segment(segment_id)
    assert seg.region == segment_id[:2]
    assert seg.value_chain == chain
    assert seg.households == households
    assert abs(seg.gap_usd / M - gap_m) <= 0.05 + 1e-9  # the table rounds to 0.1 US$ m
    assert seg.pd_multiplier == pytest.approx(pd_mult)
    assert seg.remote is remote
    assert 0.0 <= seg.supply_usd <= seg.need_usd


def test_gap_by_value_chain_matches_domain_totals(case: Case) -> None:
    gap: dict[str, float] = {}
    households: dict[str, int] = {}
    for seg in case.segments:
        gap[seg.value_chain] = gap.get(seg.value_chain, 0.0) + seg.gap_usd
        households[seg.value_chain] = households.get(seg.value_chain, 0) + seg.households
    assert set(gap) == set(DOMAIN_CHAINS) == {c.id for c in case.value_chains}
    for chain, (gap_m, hh) in DOMAIN_CHAINS.items():
        assert abs(gap[chain] / M - gap_m) <= 0.1, chain
        assert households[chain] == hh, chain
    assert sum(gap.values()) / M == pytest.approx(DOMAIN_TOTAL_GAP_M, abs=0.1)
    assert sum(g for g, _ in DOMAIN_CHAINS.values()) == pytest.approx(2_380.0)  # rounded rows


def test_money_by_source_kind(case: Case) -> None:
    by_kind = case.amount_by_kind_usd()
    assert set(by_kind) == set(SourceKind)
    assert by_kind[SourceKind.public] == pytest.approx(303e6)
    assert by_kind[SourceKind.private] == pytest.approx(1_600e6)
    assert by_kind[SourceKind.climate] == pytest.approx(101e6)
    assert case.finance_source("PRIV_SENIOR").amount_usd == pytest.approx(400e6)
    assert case.finance_source("PRIV_SENIOR").kind is SourceKind.private
    non_senior_private = sum(
        s.amount_usd for s in case.sources if s.kind is SourceKind.private and s.id != "PRIV_SENIOR"
    )
    assert non_senior_private == pytest.approx(1_200e6)  # "≈1,600 + senior" counts senior apart
    assert sum(by_kind.values()) == pytest.approx(2_004e6)
    assert sum(by_kind.values()) < case.total_gap_usd  # the gap cannot be fully closed


@pytest.mark.parametrize("source_id", list(DOMAIN_SOURCES))
def test_source_matches_domain_table(case: Case, source_id: str) -> None:
    kind, amount_m = DOMAIN_SOURCES[source_id]
    src = case.finance_source(source_id)
    assert src.kind.value == kind
    assert src.amount_usd == pytest.approx(amount_m * M)
    assert src.is_concessional is (kind != "private")


@pytest.mark.parametrize("product_id", list(DOMAIN_PRODUCTS))
def test_product_matches_domain_table(case: Case, product_id: str) -> None:
    rate, tenor, ticket, pd, lgd, cost = DOMAIN_PRODUCTS[product_id]
    prod = case.product(product_id)
    assert (prod.rate, prod.tenor_months, prod.avg_ticket_usd) == pytest.approx(
        (rate, tenor, ticket)
    )
    assert (prod.base_pd, prod.lgd_mean, prod.transaction_cost_rate) == pytest.approx(
        (pd, lgd, cost)
    )
    assert prod.state_run is (product_id == "IND_AGB")


@pytest.mark.parametrize("fund_id", list(DOMAIN_FUNDS))
def test_fund_matches_domain_table(case: Case, fund_id: str) -> None:
    coverage, leverage, fee, trigger, capital_m = DOMAIN_FUNDS[fund_id]
    fund = case.fund(fund_id)
    assert fund.coverage_ratio == pytest.approx(coverage)
    assert fund.leverage_cap == pytest.approx(leverage)
    assert fund.fee_rate == pytest.approx(fee)
    assert fund.claim_trigger_days == trigger
    assert fund.capital_cap_usd == pytest.approx(capital_m * M)
    assert fund.uptake_share == pytest.approx(0.35)


def test_fund_details(case: Case) -> None:
    assert case.fund("G_PUB").coverage_by_product == {"LT_INV": 0.80}
    clim = case.fund("G_CLIM_FL")
    assert clim.structure == "first_loss"
    assert clim.first_loss_cap_share == pytest.approx(0.10)
    assert case.fund("G_EMERG").active_only_in_events == ("amazon_climate_shock", "macro_pandemic")


# --- provenance ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "start"),
    [
        ("products[IND_MFI].rate", "[S] cajas rurales"),
        ("sources[CLIM_GCF].amount_usd", "[D] 1/6 x US$279 m GCF"),
        ("funds[G_PUB].coverage_ratio", "[S] CRECER 70-85%"),
        ("sources[PRIV_SENIOR].max_multiple_of_concessional", "[S] Convergence"),
        ("segments[SM-COF].need_usd", "[D] 32000 households x US$5600"),
        ("segments[OS-DIV].deforestation_pressure", "[A] region frontier score"),
        ("risk_model.events[coffee_rust].probability", "[A] calibrated to the 2012-2014 roya"),
        ("risk_model.state_lender_pd_uplift", "[A] Beck, Klapper & Mendoza"),
        ("policy.min_private_per_concessional", "[A] programme rule"),
        ("fx_pen_per_usd", "[A] 2017-2019 average"),
    ],
)
def test_key_figures_carry_their_tag(case: Case, path: str, start: str) -> None:
    assert case.field_sources[path].startswith(start)


def test_entity_level_tags(case: Case) -> None:
    assert case.product("IND_AGB").source.startswith("[S] Law 30893")
    assert case.product("VCF").source == "[A] only chains with offtake contracts"
    assert case.segment("SM-COF").source == (
        "[S] households: inforegion 2013 (32k San Martín coffee producers)"
    )
    assert case.event("coffee_rust").source.startswith("[A] north weighted 0.8")
    assert case.risk_model.copula.source.startswith("[A] multi-factor copula")


@pytest.mark.parametrize("group", ["products", "funds", "sources", "segments"])
def test_every_entity_has_a_provenance_tag(case: Case, group: str) -> None:
    untagged = [
        item.id
        for item in getattr(case, group)
        if not item.source
        and not any(k.startswith(f"{group}[{item.id}].") for k in case.field_sources)
    ]
    assert untagged == []


def test_every_money_figure_of_sources_is_tagged(case: Case) -> None:
    assert [
        s.id for s in case.sources if f"sources[{s.id}].amount_usd" not in case.field_sources
    ] == []


def test_every_tag_is_well_formed(case: Case) -> None:
    tags = list(case.field_sources.values())
    groups = [case.regions, case.value_chains, case.segments, case.products, case.funds]
    groups += [case.sources, case.risk_model.events]
    tags += [item.source for group in groups for item in group if item.source]
    assert len(tags) > 150
    assert [t for t in tags if not TAG.match(t)] == []
    # every figure path names something that exists: an entity id or a top-level field
    ids = {
        f"{g}[{i.id}]"
        for g in ("segments", "products", "funds", "sources")
        for i in getattr(case, g)
    }
    ids |= {f"risk_model.events[{e.id}]" for e in case.risk_model.events}
    for path in case.field_sources:
        head = path.rsplit(".", 1)[0]
        assert head in ids or head.split(".")[0] in Case.model_fields, path


# --- immutability and hashing ----------------------------------------------------------------
def test_case_is_frozen(case: Case) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        case.name = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        case.sources[0].amount_usd = 0.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        case.risk_model.copula.rho_macro = 0.5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        case.segments[0].supply_usd = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        case.segments.append(case.segments[0])  # type: ignore[attr-defined]
    assert case.sources[0].amount_usd == pytest.approx(200e6)


def test_dict_fields_of_a_frozen_case_cannot_be_mutated() -> None:
    fresh = load_case()
    with pytest.raises(TypeError):
        fresh.funds[0].coverage_by_product["LT_INV"] = 7.0  # way above the 1.0 bound
    with pytest.raises(TypeError):
        fresh.risk_model.price_factors.pop("coffee")


def test_content_hash_is_stable_and_content_addressed(case: Case, inputs_copy: Path) -> None:
    again = load_case()
    assert re.fullmatch(r"[0-9a-f]{64}", case.content_sha256)
    assert again.content_sha256 == case.content_sha256
    copied = load_case(inputs_copy / "peru_amazon.yaml")
    assert copied.content_sha256 == case.content_sha256  # same bytes elsewhere: same hash
    assert copied.source_file == str(inputs_copy / "peru_amazon.yaml")


def test_content_hash_changes_with_one_csv_byte(case: Case, inputs_copy: Path) -> None:
    replace_once(inputs_copy / "segments.csv", "inforegion 2013", "Inforegion 2013")
    changed = load_case(inputs_copy / "peru_amazon.yaml")
    assert changed.content_sha256 != case.content_sha256
    assert changed.segment("SM-COF").source.startswith("[S] households: Inforegion")
    # the figures themselves did not change
    assert changed.total_gap_usd == case.total_gap_usd
    reverted = inputs_copy / "segments.csv"
    replace_once(reverted, "Inforegion 2013", "inforegion 2013")
    assert load_case(inputs_copy / "peru_amazon.yaml").content_sha256 == case.content_sha256


def test_content_hash_changes_with_a_yaml_comment(case: Case, inputs_copy: Path) -> None:
    yaml_path = inputs_copy / "peru_amazon.yaml"
    yaml_path.write_text(yaml_path.read_text(encoding="utf-8") + "# a comment\n", "utf-8")
    assert load_case(yaml_path).content_sha256 != case.content_sha256


# --- stress overlays -------------------------------------------------------------------------
EXPECTED_STRESS_CHANGES: dict[str, dict[str, float]] = {
    "roya_2013": {
        "risk_model.events[coffee_rust].probability": 1.0,
        "risk_model.price_factors.coffee.shock_share": -0.30,
    },
    "el_nino_strong": {
        "risk_model.events[amazon_climate_shock].probability": 1.0,
        "risk_model.events[amazon_climate_shock].default_rate_add": 0.036,
    },
    "guarantee_non_uptake": {
        "funds[G_PUB].uptake_share": 0.10,
        "funds[G_CLIM_FL].uptake_share": 0.10,
        "funds[G_MUTUAL].uptake_share": 0.10,
        "funds[G_EMERG].uptake_share": 0.10,
    },
    "roya_el_nino": {  # the two above in one year
        "risk_model.events[coffee_rust].probability": 1.0,
        "risk_model.price_factors.coffee.shock_share": -0.30,
        "risk_model.events[amazon_climate_shock].probability": 1.0,
        "risk_model.events[amazon_climate_shock].default_rate_add": 0.036,
    },
    "governance_failure": {
        "risk_model.events[lender_or_policy_shock].probability": 1.0,
        "risk_model.state_lender_pd_uplift": 1.5,
    },
    "concessional_shortfall": {
        "sources[CLIM_JDI].amount_usd": 20e6,
        "sources[CLIM_GCF].amount_usd": 23e6,
        "sources[CLIM_FIP_GEF].amount_usd": 7.5e6,
    },
}


def test_the_six_stress_overlays_ship(stressed: dict[str, Case]) -> None:
    assert set(stressed) == set(EXPECTED_STRESS_CHANGES)


@pytest.mark.parametrize("stem", list(EXPECTED_STRESS_CHANGES))
def test_stress_overlay_changes_exactly_what_it_says(
    case: Case, stressed: dict[str, Case], stem: str
) -> None:
    stress_case = stressed[stem]
    assert stress_case.stress is not None
    assert stress_case.stress.id == stem
    assert stress_case.stress.name
    assert stress_case.source_file == str(STRESS / f"{stem}.yaml")
    assert stress_case.content_sha256 != case.content_sha256
    diff = changed_leaves(case, stress_case)
    expected = EXPECTED_STRESS_CHANGES[stem]
    assert set(diff) == set(expected)
    for path, value in expected.items():
        assert diff[path][1] == pytest.approx(value), path


def test_concessional_shortfall_halves_the_climate_money(
    case: Case, stressed: dict[str, Case]
) -> None:
    short = stressed["concessional_shortfall"]
    for sid in ("CLIM_JDI", "CLIM_GCF", "CLIM_FIP_GEF"):
        assert short.finance_source(sid).amount_usd == pytest.approx(
            case.finance_source(sid).amount_usd / 2
        )
    assert short.amount_by_kind_usd()[SourceKind.climate] == pytest.approx(50.5e6)
    assert short.field_sources["sources[CLIM_GCF].amount_usd"] == "[A] -50%"


def test_overlay_tags_replace_the_base_tags(stressed: dict[str, Case]) -> None:
    roya = stressed["roya_2013"]
    assert roya.field_sources["risk_model.events[coffee_rust].probability"].startswith(
        "[S] 2013 roya hit 51%"
    )
    assert roya.field_sources["risk_model.price_factors.coffee.shock_share"].startswith("[A]")
    nino = stressed["el_nino_strong"]
    assert nino.field_sources[
        "risk_model.events[amazon_climate_shock].default_rate_add"
    ].startswith("[S] Collier, Katchova & Skees 2011")
    # an untagged replacement drops the stale tag of the base figure
    assert "risk_model.events[amazon_climate_shock].probability" not in nino.field_sources


def test_overlay_of_an_overlay(case: Case, tmp_path: Path) -> None:
    outer = tmp_path / "roya_and_drought.yaml"
    outer.write_text(
        f"base_case: {STRESS / 'roya_2013.yaml'}\n"
        "stress: {id: roya_and_drought, name: Roya plus drought}\n"
        "changes:\n"
        "  risk_model:\n"
        "    events:\n"
        "      - {id: amazon_climate_shock, probability: {value: 1.0, source: '[A] both'}}\n",
        encoding="utf-8",
    )
    both = load_case(outer)
    assert both.stress is not None
    assert both.stress.id == "roya_and_drought"
    assert both.stress.name == "Roya plus drought"
    diff = changed_leaves(case, both)
    assert set(diff) == {
        "risk_model.events[coffee_rust].probability",
        "risk_model.price_factors.coffee.shock_share",
        "risk_model.events[amazon_climate_shock].probability",
    }
    assert both.event("coffee_rust").probability == 1.0
    assert both.event("amazon_climate_shock").probability == 1.0
    assert both.risk_model.price_factors["coffee"].shock_share == pytest.approx(-0.30)
    assert both.field_sources["risk_model.events[amazon_climate_shock].probability"] == "[A] both"
    assert both.field_sources["risk_model.events[coffee_rust].probability"].startswith("[S] 2013")
    assert both.content_sha256 != load_case(STRESS / "roya_2013.yaml").content_sha256


def test_overlay_naming_a_missing_base_is_a_case_error(tmp_path: Path) -> None:
    overlay = tmp_path / "orphan.yaml"
    overlay.write_text("base_case: ../nowhere/base.yaml\nchanges: {}\n", encoding="utf-8")
    with pytest.raises(CaseError) as info:
        load_case(overlay)
    [problem] = info.value.problems
    assert Path(problem.file) == overlay
    assert problem.field == "base_case"
    assert str((tmp_path / "../nowhere/base.yaml").resolve()) in problem.message


def test_overlay_adds_a_new_event_by_new_id(case: Case, tmp_path: Path) -> None:
    overlay = tmp_path / "locust.yaml"
    overlay.write_text(
        f"base_case: {INPUTS / 'peru_amazon.yaml'}\n"
        "stress: {id: locust, name: Locust swarm}\n"
        "changes:\n"
        "  risk_model:\n"
        "    events:\n"
        "      - id: locust\n"
        "        name: Locust swarm\n"
        "        probability: {value: 0.02, source: '[U] hypothetical'}\n"
        "        pd_multiplier: 1.5\n"
        "        chains: [rice_annual]\n",
        encoding="utf-8",
    )
    with_locust = load_case(overlay)
    assert [e.id for e in with_locust.risk_model.events] == [
        "amazon_climate_shock",
        "coffee_rust",
        "lender_or_policy_shock",
        "macro_pandemic",
        "locust",
    ]
    locust = with_locust.event("locust")
    assert (locust.probability, locust.pd_multiplier, locust.chains) == (
        0.02,
        1.5,
        ("rice_annual",),
    )
    assert with_locust.field_sources["risk_model.events[locust].probability"] == "[U] hypothetical"
    diff = changed_leaves(case, with_locust)
    assert diff  # only the new event's fields are new
    assert all(path.startswith("risk_model.events[locust].") for path in diff)
    assert all(old is None for old, _ in diff.values())
