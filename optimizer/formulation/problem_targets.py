"""Money the programme must place and reach: minimum deployments, a climate earmark in US$,
targets on the gap closed and the households reached.

Each is a family of ``lhs <= rhs`` rows like every other (US$m; the households row in thousands
of households, :data:`HOUSEHOLDS_PER_UNIT`), so an unreachable one makes stage 1 infeasible and
the elastic diagnosis names it with the smallest relaxation
(:mod:`optimizer.analysis.relaxations`).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from models.schema import SourceKind
from optimizer.formulation.problem_rows import USD_PER_UNIT, RowBuilder, _stack

HOUSEHOLDS_PER_UNIT = 1_000.0
"""The households target's row counts thousands of households: a slack of one unit weighs
in the elastic diagnosis as US$1m does (about 300 households' average need on the default
case), not a millionth of it."""


def add_targets(b: RowBuilder) -> None:
    """Register the minimum deployments, the climate earmark in US$ and the programme
    targets the case sets (nothing for those it leaves out)."""
    case, e, pol = b.case, b.e, b.case.policy
    placed, ids = b.where(case.sources, lambda s: s.min_deploy_usd is not None)
    if placed:
        floor = np.array([case.sources[s].min_deploy_usd for s in placed]) / USD_PER_UNIT
        b.add(
            "min_deploy",
            floor,
            b.spend[placed],
            b.spend[placed],
            ids,
            "minimum deployment of {} (lending, fund capital and technical assistance)",
            "US$1 less deployment required of {}",
        )
    if pol.climate_earmark_min_usd is not None:
        climate = np.array([s.kind is SourceKind.climate for s in case.sources])[e.x_source]
        pressure = b.cells["deforestation_pressure"].to_numpy()[e.x_cell]
        high = _stack([(climate & (pressure >= pol.climate_earmark_min_pressure)) @ b.x])
        b.add(
            "climate_earmark_usd",
            np.array([pol.climate_earmark_min_usd / USD_PER_UNIT]),
            high,
            high,
            ["programme"],
            "climate lending to high-deforestation-pressure segments, in US$ ({} earmark)",
            "US$1 less high-pressure climate lending required by the {} earmark",
        )
    if pol.min_gap_closed_usd is not None:
        closed = _stack([cp.sum(b.y)])
        b.add(
            "min_gap_closed",
            np.array([pol.min_gap_closed_usd / USD_PER_UNIT]),
            closed,
            closed,
            ["programme"],
            "credit gap closed ({} target)",
            "US$1 less gap closed required by the {} target",
        )
    if pol.min_households is not None:
        # y in US$m: households per US$m, counted in thousands
        per_usd = np.array([s.households_per_usd for s in case.segments])
        per_unit = per_usd * USD_PER_UNIT / HOUSEHOLDS_PER_UNIT
        reached = _stack([per_unit @ b.y])
        b.add(
            "min_households",
            np.array([pol.min_households / HOUSEHOLDS_PER_UNIT]),
            reached,
            reached,
            ["programme"],
            "households reached ({} target, thousands)",
            "1,000 fewer households required by the {} target",
        )
