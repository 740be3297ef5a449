"""A fixed allocation on any scenario set: each funder's losses and each fund's claims.

The report draws loss distributions from these; :func:`optimizer.analysis.evaluate.evaluate` gives
the risk figures and limit checks of the same allocation on the same set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.holdings import holdings_of
from optimizer.formulation.exposures import check_cells, fund_claims
from optimizer.result import Allocation


@dataclass(frozen=True, eq=False)
class FixedExposures:
    """Scenario losses of a fixed allocation, US$.

    Attributes
    ----------
    source_losses : dict of str to ndarray of shape (n_scenarios,)
        Each source's whole loss: on its lending after the claims its funds paid, and on
        the capital it put in funds.
    fund_claims : dict of str to ndarray of shape (n_scenarios,)
        Claims on each fund.
    capital_losses : dict of str to ndarray of shape (n_scenarios,)
        The part of each source's loss that is on fund capital.
    """

    source_losses: dict[str, np.ndarray]
    fund_claims: dict[str, np.ndarray]
    capital_losses: dict[str, np.ndarray]


def scenario_exposures(
    case: Case, allocation: Allocation, scenarios: ScenarioSet
) -> FixedExposures:
    """Each source's losses and each fund's claims on ``scenarios``."""
    holdings = holdings_of(case, allocation, check_cells(case, scenarios))
    claims = fund_claims(case, scenarios)
    att = holdings.attribution(case, claims, scenarios.losses)
    total = att.total
    return FixedExposures(
        source_losses={s.id: total[:, i] for i, s in enumerate(case.sources)},
        fund_claims={f.id: att.claims[:, g] for g, f in enumerate(case.funds)},
        capital_losses={s.id: att.capital[:, i] for i, s in enumerate(case.sources)},
    )
