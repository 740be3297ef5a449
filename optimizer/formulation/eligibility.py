"""Which decision variables exist: their index sets, and the check that scenarios fit the case.

:class:`Eligibility` holds the index sets of lending ``x[s, j]`` by source s into cell j,
capital ``c[s, g]``, technical assistance ``t[s]`` and guarantee cover ``z[g, s, j]``: variables
exist only where the case allows them (:func:`eligibility`). :func:`check_cells` makes sure a
scenario set's loss columns are the case's cells, in the case's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.cells import build_cells
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.errors import ScenarioMismatch

_INT = np.int64


@dataclass(frozen=True, eq=False)
class Eligibility:
    """Index sets of the decision variables (positions into the case's sources, funds, cells).

    Attributes
    ----------
    x_source, x_cell : ndarray of shape (n_x,), int
        Source and cell of each lending variable ``x``.
    c_source, c_fund : ndarray of shape (n_c,), int
        Source and fund of each capital variable ``c``.
    t_source : ndarray of shape (n_t,), int
        Source of each technical-assistance variable ``t``.
    z_fund, z_x : ndarray of shape (n_z,), int
        Fund of each cover variable ``z`` and the position in ``x`` of the lending it covers.
    must_cover : ndarray of shape (n_must,), int
        Positions in ``x`` whose cell PD exceeds the source's ``max_pd_unguaranteed``: that
        lending must be fully covered.
    """

    x_source: np.ndarray
    x_cell: np.ndarray
    c_source: np.ndarray
    c_fund: np.ndarray
    t_source: np.ndarray
    z_fund: np.ndarray
    z_x: np.ndarray
    must_cover: np.ndarray

    @property
    def z_source(self) -> np.ndarray:
        """Source of each cover variable ``z`` (that of the lending it covers), shape (n_z,)."""
        return self.x_source[self.z_x]

    @property
    def z_cell(self) -> np.ndarray:
        """Cell of each cover variable ``z`` (that of the lending it covers), shape (n_z,)."""
        return self.x_cell[self.z_x]

    @property
    def sizes(self) -> dict[str, int]:
        """Number of variables of each kind."""
        return {
            "x": self.x_source.size,
            "c": self.c_source.size,
            "t": self.t_source.size,
            "z": self.z_fund.size,
        }


def check_cells(case: Case, scenarios: ScenarioSet) -> pd.DataFrame:
    """The scenario set's cells, after checking they are the case's cells in the case's order.

    Raises
    ------
    ScenarioMismatch
        If the loss columns belong to another case (or an edited version of this one).
    """
    expected = build_cells(case)["cell"].tolist()
    got = scenarios.cells["cell"].tolist()
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        raise ScenarioMismatch(
            f"the scenario set's {len(got)} cells are not the {len(expected)} cells of case "
            f"{case.name!r} (missing {missing}, unexpected {extra}, or another order); "
            "re-simulate the scenarios for this case"
        )
    return scenarios.cells


def eligibility(case: Case, cells: pd.DataFrame) -> Eligibility:
    """Build the variable index sets of a case.

    Lending ``x[s, j]`` exists when the cell's product is among ``s.products``, the cell's
    deforestation pressure reaches ``s.min_deforestation_pressure`` and its PD is at most
    ``s.max_pd_guaranteed``. Cover ``z[g, s, j]`` exists when ``s.kind`` is among the fund's
    covered kinds, the product is eligible and some source may capitalise the fund. Lending
    that must be covered (PD above ``max_pd_unguaranteed``) but that no fund can cover is
    dropped, since it could only ever be zero.
    """
    fund_pos = {f.id: g for g, f in enumerate(case.funds)}
    c_source = [s for s, src in enumerate(case.sources) for _ in src.funds]
    c_fund = [fund_pos[f] for src in case.sources for f in src.funds]
    capitalised = set(c_fund)
    product = cells["product"].to_numpy()
    pd_ = cells["pd"].to_numpy()
    pressure = cells["deforestation_pressure"].to_numpy()

    x_source: list[int] = []
    x_cell: list[int] = []
    z_fund: list[int] = []
    z_x: list[int] = []
    must: list[int] = []
    for s, src in enumerate(case.sources):
        ok = np.isin(product, src.products)
        if src.min_deforestation_pressure is not None:
            ok &= pressure >= src.min_deforestation_pressure
        if src.max_pd_guaranteed is not None:
            ok &= pd_ <= src.max_pd_guaranteed
        for j in np.flatnonzero(ok):
            covering = [
                g
                for g, fund in enumerate(case.funds)
                if g in capitalised
                and src.kind in fund.covered_source_kinds
                and product[j] in fund.eligible_products
            ]
            needs_cover = src.max_pd_unguaranteed is not None and pd_[j] > src.max_pd_unguaranteed
            if needs_cover and not covering:
                continue
            pos = len(x_source)
            x_source.append(s)
            x_cell.append(int(j))
            if needs_cover:
                must.append(pos)
            z_fund += covering
            z_x += [pos] * len(covering)
    return Eligibility(
        x_source=np.asarray(x_source, dtype=_INT),
        x_cell=np.asarray(x_cell, dtype=_INT),
        c_source=np.asarray(c_source, dtype=_INT),
        c_fund=np.asarray(c_fund, dtype=_INT),
        t_source=np.asarray(
            [s for s, src in enumerate(case.sources) if src.technical_assistance], dtype=_INT
        ),
        z_fund=np.asarray(z_fund, dtype=_INT),
        z_x=np.asarray(z_x, dtype=_INT),
        must_cover=np.asarray(must, dtype=_INT),
    )
