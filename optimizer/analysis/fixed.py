"""A fixed allocation on any scenario set: each funder's losses and each fund's claims.

The report draws loss distributions from these; :func:`optimizer.analysis.evaluate.evaluate` gives
the risk figures and limit checks of the same allocation on the same set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.evaluate import holdings_of
from optimizer.formulation.exposures import check_cells, fund_claims, owner_losses
from optimizer.result import Allocation


@dataclass(frozen=True, eq=False)
class FixedExposures:
    """Scenario losses of a fixed allocation, US$.

    Attributes
    ----------
    source_losses : dict of str to ndarray of shape (n_scenarios,)
        Each source's loss after guarantee claims.
    fund_claims : dict of str to ndarray of shape (n_scenarios,)
        Claims on each fund.
    """

    source_losses: dict[str, np.ndarray]
    fund_claims: dict[str, np.ndarray]


def scenario_exposures(
    case: Case, allocation: Allocation, scenarios: ScenarioSet
) -> FixedExposures:
    """Each source's losses and each fund's claims on ``scenarios``."""
    holdings = holdings_of(case, allocation, check_cells(case, scenarios))
    claims = fund_claims(case, scenarios)
    per_source, per_fund = owner_losses(
        scenarios.losses, claims, holdings.lending, holdings.covered
    )
    return FixedExposures(
        source_losses={s.id: per_source[:, i] for i, s in enumerate(case.sources)},
        fund_claims={f.id: per_fund[:, g] for g, f in enumerate(case.funds)},
    )
