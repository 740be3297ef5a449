"""The report's risk sections: a funder's losses and risk figures, a guarantee fund's claims.

:class:`FunderRisk` (with its figures as :class:`RiskEstimate`) and :class:`GuaranteeFundRisk`
hold scenario arrays, weighted by their probabilities and checked once here; money is US$.
They are parts of :class:`~reports.context.ReportContext`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports._frozen import _array
from reports._svg import check_weighted

__all__ = ["FunderRisk", "GuaranteeFundRisk", "RiskEstimate"]


@dataclass(frozen=True)
class RiskEstimate:
    """One risk figure (US$) in sample and, when evaluated, out of sample; with MC std errors."""

    in_sample_usd: float
    in_sample_se_usd: float | None = None
    out_of_sample_usd: float | None = None
    out_of_sample_se_usd: float | None = None


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class FunderRisk:
    """A funder's scenario losses and its risk figures against its limits.

    ``losses_usd`` and ``probabilities`` have shape (n_scenarios,) (in sample). ``alpha`` is the
    VaR/CVaR level. ``euler_usd`` (optional) maps segment or product labels (index) to their
    contribution to the CVaR (US$); ``euler_by`` names what the labels are. The losses are all
    the funder's: on its lending after what its funds pay, and on the capital it put in funds;
    ``el_on_capital_usd`` is the part of the expected loss on fund capital (in sample).
    """

    name: str
    kind: str
    committed_usd: float
    alpha: float
    losses_usd: np.ndarray
    probabilities: np.ndarray
    el: RiskEstimate
    var: RiskEstimate
    cvar: RiskEstimate
    el_limit_usd: float | None = None
    cvar_limit_usd: float | None = None
    euler_usd: pd.Series | None = None
    euler_by: str = "segment"
    el_on_capital_usd: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"{self.name}: alpha must be in (0, 1), got {self.alpha}")
        check_weighted(self.losses_usd, self.probabilities, f"{self.name} losses_usd")
        _array(self, "losses_usd")
        _array(self, "probabilities")


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class GuaranteeFundRisk:
    """A guarantee fund's capital, use and scenario claims (shape (n_scenarios,))."""

    name: str
    capital_usd: float
    guaranteed_usd: float
    leverage_cap: float
    max_depletion_probability: float
    claims_usd: np.ndarray
    probabilities: np.ndarray
    depletion_probability_oos: float | None = None

    def __post_init__(self) -> None:
        check_weighted(self.claims_usd, self.probabilities, f"{self.name} claims_usd")
        _array(self, "claims_usd")
        _array(self, "probabilities")

    @property
    def leverage_used(self) -> float:
        """Guaranteed volume per dollar of capital; NaN when the fund has no capital."""
        return self.guaranteed_usd / self.capital_usd if self.capital_usd > 0 else float("nan")

    @property
    def depletion_probability(self) -> float:
        """In-sample ``P_π(claims > capital)``."""
        return float(self.probabilities[self.claims_usd > self.capital_usd].sum())
