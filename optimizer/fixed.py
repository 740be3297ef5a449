"""A fixed allocation on any scenario set: each funder's losses and each fund's claims.

The allocation's tables name cells by product and segment, so it can be laid on another
scenario set of the same case (out of sample) or of a stressed case (same cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.errors import ScenarioMismatch
from optimizer.exposures import fund_claims, source_losses
from optimizer.result import Allocation


@dataclass(frozen=True, eq=False)
class FixedExposures:
    """Scenario losses of a fixed allocation, US$.

    Attributes
    ----------
    source_losses : dict of str to ndarray of shape (n_scenarios,)
        Each lending source's loss after guarantee claims.
    fund_claims : dict of str to ndarray of shape (n_scenarios,)
        Claims on each fund.
    """

    source_losses: dict[str, np.ndarray]
    fund_claims: dict[str, np.ndarray]


def allocation_matrices(
    case: Case, allocation: Allocation, scenarios: ScenarioSet
) -> tuple[np.ndarray, np.ndarray]:
    """Lending (n_cells, n_sources) and cover (n_funds, n_cells, n_sources) in US$.

    Raises
    ------
    ScenarioMismatch
        A cell the allocation lends to is not a column of the scenario set.
    """
    labels = scenarios.cells["cell"].tolist()
    position = {label: j for j, label in enumerate(labels)}
    sources = [s.id for s in case.sources]
    funds = [f.id for f in case.funds]
    lending = np.zeros((len(labels), len(sources)))
    covered = np.zeros((len(funds), len(labels), len(sources)))
    for row in allocation.allocation.itertuples(index=False):
        cell = f"{row.product}|{row.segment}"
        if cell not in position:
            raise ScenarioMismatch(
                f"the allocation lends to cell {cell}, which the scenario set does not have; "
                "simulate the scenarios from the same case (or a stress overlay of it)"
            )
        j, s = position[cell], sources.index(row.source)
        lending[j, s] += row.amount_usd
        for g, fund in enumerate(funds):
            covered[g, j, s] += getattr(row, f"covered_usd_{fund}", 0.0) or 0.0
    return lending, covered


def scenario_exposures(
    case: Case, allocation: Allocation, scenarios: ScenarioSet
) -> FixedExposures:
    """Each lending source's losses and each fund's claims on ``scenarios``."""
    lending, covered = allocation_matrices(case, allocation, scenarios)
    claims = fund_claims(case, scenarios)
    per_source = source_losses(scenarios.losses, claims, lending, covered)
    sources = [s.id for s in case.sources]
    fund_totals = {
        f.id: claims[g].claims(scenarios.losses, covered[g].sum(axis=1))
        for g, f in enumerate(case.funds)
    }
    return FixedExposures(
        source_losses={sid: per_source[:, s] for s, sid in enumerate(sources)},
        fund_claims=fund_totals,
    )
