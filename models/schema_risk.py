"""The case's risk model: the copula's factors, commodity prices, value-chain correlations, shocks.

:class:`RiskModel` is what the loss model (:mod:`models.loss_model`) draws from: the factor
loadings of the asset-value copula (:class:`Copula`), each value chain's factor read as a
commodity price (:class:`PriceFactor`), correlations between value chains
(:class:`ChainCorrelation`) and discrete annual shocks (:class:`ShockEvent`). Frozen pydantic
models like the rest of the schema (:mod:`models.schema`); the checks that span them (ids the
events name, a valid correlation matrix) are in :mod:`models.crosscheck`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.schema_types import (
    Correlation,
    EventProbability,
    FrozenDict,
    Identifier,
    Mapping,
    Multiplier,
    Name,
    Number,
    Share,
    Tagged,
)


class ShockEvent(Tagged):
    """A discrete annual shock: drought, coffee rust, lender failure, pandemic."""

    id: Identifier
    name: Name
    probability: EventProbability
    pd_multiplier: Multiplier = 1.0
    pd_multiplier_by_chain: Mapping[Identifier, Multiplier] = Field(default_factory=FrozenDict)
    chains: tuple[Identifier, ...] | None = Field(None, description="Chains hit; omitted = all.")
    regions: tuple[Identifier, ...] | None = Field(None, description="Regions hit; omitted = all.")
    region_intensity: Mapping[Identifier, Share] = Field(
        default_factory=FrozenDict,
        description="Scales the PD effect: 1 + (m − 1)·w; default w = 1.",
    )
    lgd_add: Share = Field(0.0, description="Added to LGD in the cells hit (capped at 1).")
    default_rate_add: Share = Field(0.0, description="Added to the default rate of cells hit.")
    state_run_only: bool = Field(False, description="Hits only state-run products.")


class Copula(Tagged):
    """Factor loadings of the asset-value model: √ρ_macro·Z_m + √ρ_chain·Z_c + √ρ_region·Z_r."""

    rho_macro: Correlation
    rho_chain: Correlation
    rho_region: Correlation
    t_degrees_of_freedom: Annotated[Number, Field(gt=2.0, le=1e6)] | None = Field(
        None, description="Student-t copula through a common chi-square mixing; omitted = Gaussian."
    )

    @property
    def rho_total(self) -> float:
        """Asset correlation of two loans in the same region and value chain."""
        return self.rho_macro + self.rho_chain + self.rho_region


class PriceFactor(Tagged):
    """Reads a value chain's factor as its commodity's standardised annual log price return."""

    volatility: Annotated[Number, Field(gt=0.0, le=5.0)]
    shock_share: Annotated[Number, Field(gt=-1.0, le=5.0)] = Field(
        0.0, description="Deterministic price move applied in every scenario (stress), e.g. -0.30."
    )


class ChainCorrelation(Tagged):
    """Correlation of two value chains' factors; pairs not given are uncorrelated."""

    chains: tuple[Identifier, Identifier]
    correlation: Annotated[Number, Field(gt=-1.0, lt=1.0)]


class RiskModel(Tagged):
    """Systematic factors, shock events and LGD behaviour of the loan book."""

    copula: Copula
    price_factors: Mapping[Identifier, PriceFactor] = Field(default_factory=FrozenDict)
    chain_correlations: tuple[ChainCorrelation, ...] = ()
    events: tuple[ShockEvent, ...] = ()
    lgd_downturn_correlation: Correlation = Field(
        0.0,
        description="How much pool LGDs rise with the cell's systematic factor (0 = independent).",
    )
    state_lender_pd_uplift: Annotated[Number, Field(ge=1.0, le=10.0)] = 1.0
    basel_benchmark: Literal["other_retail", "none"] = "other_retail"
