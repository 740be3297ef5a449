"""Who may be exposed to which loss, and the loss and claim coefficients of every exposure.

Two things shared by the allocation problem and by every later evaluation of an allocation:

* :class:`Eligibility` — the index sets of the decision variables: lending ``x[s, j]`` by source
  s into cell j, capital ``c[s, g]``, technical assistance ``t[s]``, guarantee cover
  ``z[g, s, j]``. Variables exist only where the case allows them.
* :class:`FundClaims` — a fund's claim per covered dollar, ``κ_gj(ω)``; with the cells' losses per
  dollar lent ``ℓ_j(ω)`` it gives each source's loss ``L_s = Σ_j ℓ_j x_sj − Σ_gj κ_gj z_gsj`` and
  each fund's claims ``C_g = Σ_sj κ_gj z_gsj``.

Money here is in whatever unit the caller's amounts are in (US$ millions inside the problem,
US$ in result tables); loss and claim rates are per dollar.

This module holds the third thing they share, the LP's net exposure columns
(:class:`ExposureColumns`), and is the public face of the other two: the index sets live in
:mod:`optimizer.formulation.eligibility`, the claim model and the scenario losses it gives in
:mod:`optimizer.formulation.claims`; every name is importable from here, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.formulation.claims import (
    DEPLETION_ATOL_USD,
    DEPLETION_RTOL,
    FundClaims,
    cell_contributions,
    expected_rates,
    fund_claims,
    fund_table,
    owner_losses,
)
from optimizer.formulation.eligibility import Eligibility, check_cells, eligibility

__all__ = [
    "DEPLETION_ATOL_USD",
    "DEPLETION_RTOL",
    "Eligibility",
    "ExposureColumns",
    "FundClaims",
    "cell_contributions",
    "check_cells",
    "eligibility",
    "expected_rates",
    "exposure_columns",
    "fund_claims",
    "fund_table",
    "owner_losses",
]


@dataclass(frozen=True, eq=False)
class ExposureColumns:
    """Net exposures that carry the scenario losses in the LP, with fewer non-zeros than x, z.

    Each column is an (owner, cell, claim shape) with a scenario coefficient
    ``r(ω) = a(ω) f(ℓ_j(ω))`` shared by every fund of that shape (``f`` identity or a first-loss
    cap, ``a`` an event trigger). A lender's column of the plain shape nets its lending against
    the cover of always-paying pari-passu funds (``x_sj − Σ_g cov_gj z_gsj``); a fund's column
    adds up its cover of the cell over all lenders (``cov_gj Σ_s z_gsj``). Then
    ``L_s(ω) = Σ_{cols of s} r_col(ω) e_col`` and ``C_g(ω) = Σ_{cols of g} r_col(ω) e_col``.

    Attributes
    ----------
    owner : ndarray of shape (n_cols,), int
        Source position (``is_fund`` False) or fund position (``is_fund`` True).
    is_fund : ndarray of shape (n_cols,), bool
    cell : ndarray of shape (n_cols,), int
        The cell (0 on a capital column).
    shape : ndarray of shape (n_cols,), int
        Index into ``shapes`` (0 on a capital column).
    shapes : tuple of FundClaims
        One representative per claim shape; index 0 is the plain loss ``ℓ`` (no cap, always).
    from_x, from_z, from_c : scipy.sparse.csr_matrix of shape (n_cols, n_x), (n_cols, n_z)
        and (n_cols, n_c)
        ``e = from_x @ x + from_z @ z + from_c @ c``.
    is_capital : ndarray of shape (n_cols,), bool
        Capital columns, the last ones: one per capital variable ``c[s, g]`` (owner the
        fund), carrying no scenario loss; they hold what a fund can pay (see
        :mod:`optimizer.formulation.attribution`).
    capital_source : ndarray of shape (n_cols,), int
        The source of a capital column (-1 elsewhere).
    """

    owner: np.ndarray
    is_fund: np.ndarray
    cell: np.ndarray
    shape: np.ndarray
    shapes: tuple[FundClaims, ...]
    from_x: sp.csr_matrix
    from_z: sp.csr_matrix
    from_c: sp.csr_matrix
    is_capital: np.ndarray
    capital_source: np.ndarray

    def owned(self, position: int, *, fund: bool) -> np.ndarray:
        """The loss columns of one source (claim columns of one fund if ``fund``)."""
        return np.flatnonzero((self.owner == position) & (self.is_fund == fund) & ~self.is_capital)

    def capital_of(self, fund: int, sources: np.ndarray | None = None) -> np.ndarray:
        """The capital columns of one fund, of every source or of the given ones."""
        mine = self.is_capital & (self.owner == fund)
        if sources is not None:
            mine &= np.isin(self.capital_source, sources)
        return np.flatnonzero(mine)

    def scenario_matrix(self, losses: np.ndarray, position: int, *, fund: bool) -> sp.csc_matrix:
        """Loss (claims if ``fund``) coefficients of one source (fund) on every column.

        Returns
        -------
        scipy.sparse.csc_matrix of shape (n_scenarios, n_cols)
            ``r_col(ω)`` in the owner's columns, nothing elsewhere: ``L_s = M @ e``.
        """
        return self.matrix_of(losses, self.owned(position, fund=fund))

    def matrix_of(self, losses: np.ndarray, cols: np.ndarray) -> sp.csc_matrix:
        """Scenario coefficients ``r_col(ω)`` of the given loss columns, shape (n_scenarios,
        n_cols), nothing elsewhere (a column given twice counts twice)."""
        # CSC lays columns out in index order: the blocks must follow it
        cols, times = np.unique(np.asarray(cols, dtype=np.int64), return_counts=True)
        n_scen, n_cols = losses.shape[0], self.owner.size
        block = np.empty((n_scen, cols.size))
        for k in np.unique(self.shape[cols]):
            mine = self.shape[cols] == k
            block[:, mine] = self.shapes[k].rates(
                losses, self.cell[cols[mine]], with_coverage=False
            )
        block *= times[None, :]
        counts = np.zeros(n_cols, dtype=np.int64)
        counts[cols] = n_scen
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.tile(np.arange(n_scen), cols.size)
        mat = sp.csc_matrix((block.ravel(order="F"), indices, indptr), shape=(n_scen, n_cols))
        mat.eliminate_zeros()  # a contingent fund pays nothing in most scenarios
        return mat


def exposure_columns(
    elig: Eligibility, claims: Sequence[FundClaims], n_cells: int
) -> ExposureColumns:
    """Group lending and cover into the net exposure columns of :class:`ExposureColumns`."""
    plain = FundClaims("loss", np.ones(n_cells), None, None)
    keys: dict[tuple, int] = {plain.shape_key: 0}
    shapes = [plain]
    for fc in claims:
        if fc.shape_key not in keys:
            keys[fc.shape_key] = len(shapes)
            shapes.append(fc)
    cols: dict[tuple[bool, int, int, int], int] = {}

    def col(is_fund: bool, owner: int, cell: int, shape: int) -> int:
        return cols.setdefault((is_fund, int(owner), int(cell), shape), len(cols))

    x_entries = [
        (col(False, s, j, 0), i, 1.0)
        for i, (s, j) in enumerate(zip(elig.x_source, elig.x_cell, strict=True))
    ]
    z_entries = []
    for i, (g, s, j) in enumerate(zip(elig.z_fund, elig.z_source, elig.z_cell, strict=True)):
        k = keys[claims[g].shape_key]
        cov = float(claims[g].coverage[j])
        z_entries.append((col(False, s, j, k), i, -cov))
        z_entries.append((col(True, g, j, k), i, cov))
    # then one capital column per capital variable: (fund, its position), no loss of its own
    n_loss, n_c = len(cols), elig.c_fund.size
    c_entries = [(n_loss + i, i, 1.0) for i in range(n_c)]
    n = n_loss + n_c
    capital_meta = np.zeros((n_c, 4), dtype=np.int64)
    capital_meta[:, 0], capital_meta[:, 1] = 1, elig.c_fund
    meta = np.vstack([np.array(list(cols), dtype=np.int64).reshape(n_loss, 4), capital_meta])

    def matrix(entries: list, n_vars: int) -> sp.csr_matrix:
        r, c, v = (np.array(a) for a in zip(*entries, strict=True)) if entries else ([], [], [])
        return sp.csr_matrix((v, (r, c)), shape=(n, n_vars))

    return ExposureColumns(
        owner=meta[:, 1],
        is_fund=meta[:, 0].astype(bool),
        cell=meta[:, 2],
        shape=meta[:, 3],
        shapes=tuple(shapes),
        from_x=matrix(x_entries, elig.x_source.size),
        from_z=matrix(z_entries, elig.z_fund.size),
        from_c=matrix(c_entries, elig.c_fund.size),
        is_capital=np.arange(n) >= n_loss,
        capital_source=np.concatenate(
            [np.full(n_loss, -1, dtype=np.int64), np.asarray(elig.c_source, dtype=np.int64)]
        ),
    )
