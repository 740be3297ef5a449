"""The case schema: what a PPC financing structure is made of.

Pydantic v2 models, frozen, unknown keys forbidden, every number bounded. Rates are annual and
written as fractions (0.36 = 36 %/yr); money is US$. Field-level checks live on the fields, whose
types (numbers that refuse yes/no, bounded shares, rates and amounts, ids and names) are in
:mod:`models.schema_types`; checks that span fields or entities live in :mod:`models.crosscheck`
(across the case) and :mod:`models.entity_checks` (inside one entity), so that one pass finds
every dangling reference at once. The risk model's entities (copula, price factors, value-chain
correlations, shock events) are in :mod:`models.schema_risk`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from models.crosscheck import CrossFieldProblems, case_problems
from models.entity_checks import entity_problems
from models.schema_risk import RiskModel, ShockEvent
from models.schema_types import (
    AmountUSD,
    FreeText,
    Frozen,
    FrozenDict,
    Identifier,
    Integer,
    Mapping,
    Multiplier,
    Name,
    Number,
    PositiveShare,
    Probability,
    RateFraction,
    Share,
    Tagged,
    refuse_bool,
)
from models.schema_types import check_source_tag as check_source_tag  # re-exported

MAX_VALUE_CHAINS = 500
"""The value-chain correlation matrix is checked by an eigen-decomposition, cubic in its size."""


# --- enums ---------------------------------------------------------------------------------
class SourceKind(StrEnum):
    """Where a funder's money comes from."""

    public = "public"
    private = "private"
    climate = "climate"


class GuaranteeStructure(StrEnum):
    """How a guarantee fund shares losses with the lender."""

    pari_passu = "pari_passu"
    """Pays ``coverage_ratio`` of every loss."""
    first_loss = "first_loss"
    """Pays ``coverage_ratio`` of losses up to ``first_loss_cap_share`` of the covered volume."""


# --- entities ------------------------------------------------------------------------------
class Region(Tagged):
    """A region where segments lie; its loans share a regional systematic factor."""

    id: Identifier
    name: Name


class ValueChain(Tagged):
    """A value chain that segments produce for; its loans share a value-chain factor."""

    id: Identifier
    name: Name


class Segment(Tagged):
    """A region x value-chain group of smallholder households with an unmet credit need."""

    id: Identifier
    region: Identifier
    value_chain: Identifier
    households: Annotated[Integer, Field(ge=0, le=10**9)]
    need_usd: AmountUSD = Field(description="Total credit need of the segment, US$.")
    supply_usd: AmountUSD = Field(description="Credit already supplied, US$ (<= need).")
    pd_multiplier: Multiplier = Field(1.0, description="Value-chain multiplier on product PDs.")
    deforestation_pressure: Share = Field(
        description="0..1; weights the objective: closing the gap where forest is at risk."
    )
    remote: bool = False

    @property
    def gap_usd(self) -> float:
        """Unmet credit need, US$: need − supply."""
        return self.need_usd - self.supply_usd

    @property
    def households_per_usd(self) -> float:
        """Households reached per US$ of credit: its households times the share of its need
        financed (0 for a segment with no need)."""
        return self.households / self.need_usd if self.need_usd > 0 else 0.0


class LoanProduct(Tagged):
    """A way of lending to smallholders: individual, group, value-chain, long-term..."""

    id: Identifier
    name: Name
    rate: RateFraction = Field(description="Annual interest rate charged to borrowers (TEA).")
    tenor_months: Annotated[Integer, Field(ge=1, le=360)]
    avg_ticket_usd: Annotated[Number, Field(gt=0.0, le=1e9)]
    base_pd: Probability = Field(description="Annual probability of default before multipliers.")
    lgd_mean: Share = Field(description="Mean loss given default.")
    lgd_sd: Annotated[Number, Field(ge=0.0, lt=0.5)] = Field(
        0.0, description="Standard deviation of the Beta-distributed pool LGD."
    )
    transaction_cost_rate: RateFraction = Field(
        description="Lender's operating cost per year, fraction of principal."
    )
    remote_cost_uplift_share: Annotated[Number, Field(ge=0.0, le=5.0)] = Field(
        0.0, description="Extra transaction cost in remote segments, share of the base cost."
    )
    ta_cost_rate: RateFraction = Field(
        0.0, description="Technical assistance needed per year, fraction of principal."
    )
    state_run: bool = Field(
        False, description="Lent by a state-run lender: PDs take the risk model's state uplift."
    )
    eligible_chains: tuple[Identifier, ...] | None = Field(
        None, description="Value chains the product may serve; omitted = all."
    )
    excluded_segments: tuple[Identifier, ...] = ()


class GuaranteeFund(Tagged):
    """A partial credit guarantee fund capitalised by one or more sources."""

    id: Identifier
    name: Name
    structure: GuaranteeStructure = GuaranteeStructure.pari_passu
    coverage_ratio: PositiveShare = Field(description="Share of each covered loss the fund pays.")
    coverage_by_product: Mapping[Identifier, PositiveShare] = Field(
        default_factory=FrozenDict,
        description="Product-specific coverage overriding coverage_ratio.",
    )
    first_loss_cap_share: PositiveShare | None = Field(
        None, description="first_loss only: losses paid up to this share of covered volume."
    )
    leverage_cap: Annotated[Number, Field(ge=1.0, le=100.0)] = Field(
        description="Maximum guaranteed volume per dollar of capital."
    )
    fee_rate: RateFraction = Field(description="Annual fee paid by lenders on covered volume.")
    claim_trigger_days: Annotated[Integer, Field(ge=0, le=720)] = 90
    max_depletion_probability: Annotated[Number, Field(gt=0.0, le=0.5)] = Field(
        description="Largest acceptable probability that claims exceed capital (epsilon)."
    )
    uptake_share: PositiveShare = Field(
        1.0, description="Share of eligible lending that lenders actually put under cover."
    )
    capital_cap_usd: AmountUSD | None = Field(
        None, description="Most capital the fund can take, US$; omitted = no cap."
    )
    eligible_products: tuple[Identifier, ...] = Field(min_length=1)
    covered_source_kinds: tuple[SourceKind, ...] = (SourceKind.private,)
    active_only_in_events: tuple[Identifier, ...] = Field(
        (), description="Contingent fund: pays claims only in scenarios where one of these occurs."
    )
    capital_layers: tuple[tuple[Identifier, ...], ...] = Field(
        (),
        description=(
            "Seniority of the fund's capital, junior layer first: each layer lists sources that "
            "may capitalise the fund; a layer absorbs claims only once every layer before it is "
            "spent, pro rata to capital within a layer. Omitted = one layer, pro rata to capital."
        ),
    )


class FinanceSource(Tagged):
    """A funder: its money, what it may finance, and its risk appetite."""

    id: Identifier
    name: Name
    kind: SourceKind
    amount_usd: AmountUSD = Field(description="Money available over the programme, US$.")
    cost_of_funds_rate: RateFraction = Field(description="Annual cost of this money.")
    concessional: bool | None = Field(
        None, description="Below-market money; omitted = true for public and climate sources."
    )
    products: tuple[Identifier, ...] = Field((), description="Loan products it may lend into.")
    funds: tuple[Identifier, ...] = Field((), description="Guarantee funds it may capitalise.")
    technical_assistance: bool = Field(False, description="May pay technical assistance.")
    cvar_alpha: Annotated[Number, Field(gt=0.0, lt=1.0)] | None = None
    cvar_limit_usd: AmountUSD | None = None
    cvar_limit_share: Share | None = Field(
        None, description="CVaR limit as a share of the money it commits."
    )
    expected_loss_limit_rate: Share | None = Field(
        None,
        description=(
            "Expected annual loss, on lending and fund capital, at most this share of what it "
            "has at risk (lending plus fund capital)."
        ),
    )
    return_hurdle_rate: Annotated[Number, Field(ge=-1.0, le=2.0)] | None = Field(
        None, description="Private participation: net margin per dollar lent at least this."
    )
    max_pd_unguaranteed: Probability | None = None
    max_pd_guaranteed: Probability | None = None
    min_deforestation_pressure: Share | None = Field(
        None, description="Earmark: only segments at least this deforestation pressure."
    )
    max_multiple_of_concessional: Annotated[Number, Field(ge=0.0, le=100.0)] | None = Field(
        None, description="Senior money: at most this multiple of the concessional money used."
    )
    min_deploy_usd: AmountUSD | None = Field(
        None,
        description="Must place at least this much (lending, fund capital and technical "
        "assistance), US$; at most amount_usd.",
    )

    @property
    def is_concessional(self) -> bool:
        """Whether the money is concessional (defaults to public and climate sources)."""
        if self.concessional is not None:
            return self.concessional
        return self.kind is not SourceKind.private


MIN_CONFIDENCE, MAX_CONFIDENCE = 0.5, 0.9999
"""A confidence below 1/2 would loosen the limits; above 0.9999 the margin (z > 3.7 SEs) rests
on a normal tail the Monte Carlo error no longer follows."""


def _confidence(value: float) -> float:
    if value == 0.0 or MIN_CONFIDENCE <= value <= MAX_CONFIDENCE:
        return value
    raise ValueError(
        f"confidence must be 0 or null (off) or between {MIN_CONFIDENCE} and {MAX_CONFIDENCE}, "
        f"got {value!r}: e.g. 0.95 holds each risk limit out of sample with 95 % confidence"
    )


class Policy(Tagged):
    """Programme-level rules and objective weights."""

    min_private_per_concessional: Annotated[Number, Field(ge=0.0, le=100.0)] = Field(
        0.0, description="Private lending at least this multiple of the concessional money used."
    )
    max_share_per_segment: PositiveShare = Field(1.0, description="Of total programme lending.")
    max_share_per_region: PositiveShare = 1.0
    max_share_per_product: PositiveShare = 1.0
    deforestation_priority: Annotated[Number, Field(ge=0.0, le=100.0)] = Field(
        1.0, description="Objective weight w_k = 1 + priority · deforestation_pressure_k."
    )
    gap_tolerance_share: Annotated[Number, Field(ge=0.0, le=0.1)] = Field(
        1e-4, description="Second stage may give up this share of the optimal weighted gap."
    )
    climate_earmark_min_share: Share = Field(
        0.0, description="Share of climate lending that must reach high-pressure segments."
    )
    climate_earmark_min_pressure: Share = 0.5
    climate_earmark_min_usd: AmountUSD | None = Field(
        None,
        description="At least this much climate lending to segments with deforestation "
        "pressure >= climate_earmark_min_pressure, US$.",
    )
    min_gap_closed_usd: AmountUSD | None = Field(
        None, description="Programme target: close at least this much of the credit gap, US$."
    )
    min_households: Annotated[Number, Field(ge=0.0, le=1e9)] | None = Field(
        None,
        description="Programme target: reach at least this many households (a segment's "
        "households times the share of its credit need financed).",
    )
    confidence: Annotated[Number, AfterValidator(_confidence)] | None = Field(
        0.95,
        description="Limits hold out of sample at this confidence: each risk limit is "
        "tightened by z(confidence) Monte Carlo standard errors; 0 or null = off.",
    )


class StressInfo(Frozen):
    """What a stress overlay is; set when a case was loaded from an overlay."""

    id: Identifier
    name: Name
    description: FreeText = ""


class Case(Frozen):
    """A validated, immutable PPC financing case. Build it with :func:`models.load_case`."""

    schema_version: Annotated[Literal[1], BeforeValidator(refuse_bool)] = 1
    name: Name
    description: FreeText = ""
    currency: Literal["USD"] = "USD"
    fx_pen_per_usd: Annotated[Number, Field(gt=0.0, le=1e4)] = 3.3
    horizon_years: Annotated[Literal[1], BeforeValidator(refuse_bool)] = Field(
        1, description="Default horizon of the loss model: 1 year."
    )
    programme_years: Annotated[Integer, Field(ge=1, le=50)] = 5
    regions: tuple[Region, ...] = Field(min_length=1)
    value_chains: tuple[ValueChain, ...] = Field(min_length=1, max_length=MAX_VALUE_CHAINS)
    segments: tuple[Segment, ...] = Field(min_length=1)
    products: tuple[LoanProduct, ...] = Field(min_length=1)
    funds: tuple[GuaranteeFund, ...] = ()
    sources: tuple[FinanceSource, ...] = Field(min_length=1)
    risk_model: RiskModel
    policy: Policy = Policy()
    stress: StressInfo | None = None
    field_sources: Mapping[str, str] = Field(
        default_factory=FrozenDict, description="Provenance tag of single figures, by field path."
    )
    source_file: str | None = Field(None, description="Set by load_case.")
    content_sha256: str | None = Field(
        None, description="Hash of the case files; set by load_case."
    )

    @model_validator(mode="after")
    def _cross_check(self) -> Case:
        # One pass over the whole case, so every dangling reference is reported at once.
        problems = entity_problems(self) + case_problems(self)
        if problems:
            raise CrossFieldProblems(problems)
        return self

    # --- lookups used by every layer -------------------------------------------------------
    def segment(self, segment_id: str) -> Segment:
        """The segment with this id; KeyError if there is none."""
        return _by_id(self.segments, segment_id)

    def product(self, product_id: str) -> LoanProduct:
        """The loan product with this id; KeyError if there is none."""
        return _by_id(self.products, product_id)

    def fund(self, fund_id: str) -> GuaranteeFund:
        """The guarantee fund with this id; KeyError if there is none."""
        return _by_id(self.funds, fund_id)

    def finance_source(self, source_id: str) -> FinanceSource:
        """The finance source (funder) with this id; KeyError if there is none."""
        return _by_id(self.sources, source_id)

    def event(self, event_id: str) -> ShockEvent:
        """The risk model's shock event with this id; KeyError if there is none."""
        return _by_id(self.risk_model.events, event_id)

    @property
    def total_need_usd(self) -> float:
        """Total credit need of all segments, US$."""
        return float(sum(s.need_usd for s in self.segments))

    @property
    def total_gap_usd(self) -> float:
        """Total unmet credit need of all segments, US$: Σ (need − supply)."""
        return float(sum(s.gap_usd for s in self.segments))

    @property
    def total_households(self) -> int:
        """Number of households in all segments."""
        return int(sum(s.households for s in self.segments))

    def amount_by_kind_usd(self) -> dict[SourceKind, float]:
        """Money available by source kind, US$."""
        totals = {kind: 0.0 for kind in SourceKind}
        for src in self.sources:
            totals[src.kind] += src.amount_usd
        return totals


def _by_id(items, item_id):
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(f"no item with id {item_id!r}; known ids: {', '.join(i.id for i in items)}")
