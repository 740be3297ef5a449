"""One pass over the loss matrix per cutting-plane iteration: every CVaR's losses and its cut.

For a CVaR measure k (a funder's losses or a fund's claims) with net exposures ``e`` and
threshold ``t_k``, the Künzi-Bay & Mayer aggregated cut is

    η_k  >=  Σ_{ω ∈ T_k} π_ω L_k(ω)  −  t_k Σ_{ω ∈ T_k} π_ω ,     T_k = {ω : L_k(ω) > t_k},

linear in (e, t_k) because ``L_k(ω) = Σ_col r_col(ω) e_col``. Its coefficient on an exposure
column is ``Σ_{ω ∈ T_k} π_ω r_col(ω)``: a masked product over the tail rows only, never a copy
of the rows.

The pass itself is one dense product ``ℓ @ M`` of the loss matrix with a (J, K) matrix of
exposures by cell and measure: claim shapes that always pay fold into it, since
``min(ℓ, c) = ℓ − (ℓ − c)+`` and the excess over a first-loss cap is sparse (kept once as a
sparse matrix); a contingent fund's shape pays only in its trigger scenarios, whose rates are
kept once as a small dense block. Tail rows are then gathered for the cut coefficients.

Cuts can be split by scenario group (partially aggregated multi-cut): with the scenarios cut into
``G`` contiguous blocks, ``Σ_ω π_ω (L_k(ω) − t_k)+ = Σ_g Σ_{ω ∈ block g} ...``, and each block gets
its own cut on its own share of the tail excess. The master then models the tail function ``G``
times more finely per pass (measurements in :mod:`optimizer.formulation.cutting_plane`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.risk_measures import var_and_excess_by_column
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.cut_measures import Link
from optimizer.formulation.cuts import Cut, group_bounds
from optimizer.formulation.exposures import ExposureColumns
from optimizer.formulation.tail_select import SELECT_MIN_ROWS, var_and_excess_equal

CHUNK_ROWS = 32_768
"""Rows per block of the sparse cap excess and of gathered tail rows (bounds temporaries)."""
GATHER_MAX_SHARE = 0.05
"""Up to this share of a block's rows in some tail, cut coefficients gather those rows; above
it one transposed pass over the block is cheaper."""


class TailOracle:
    """Scenario losses and cuts of several CVaR measures sharing one loss matrix.

    Parameters
    ----------
    losses : ndarray of shape (S, J), float64 or float32
        Loss per dollar lent of every cell. The pass runs in its dtype (float32 halves the bytes
        read); cut coefficients are summed in float64 over the tail rows.
    probabilities : ndarray of shape (S,)
    columns : ExposureColumns
    measures : list of ndarray of int
        For each measure, the exposure columns whose losses it adds up.
    links : list of tuple of Link, optional
        For each measure, the terms ``(C_g − K)+`` added to its loss (claims a fund cannot
        pay out of some of its capital). Each linked fund's claims ride the same pass as
        one more column.
    """

    def __init__(
        self,
        losses: np.ndarray,
        probabilities: np.ndarray,
        columns: ExposureColumns,
        measures: list[np.ndarray],
        links: list[tuple[Link, ...]] | None = None,
    ):
        self.losses = losses
        self.p = np.asarray(probabilities, dtype=np.float64)
        self.equal_weights = bool(self.p.size) and bool((self.p == self.p[0]).all())
        self.columns = columns
        self.measures = measures
        self.links = [()] * len(measures) if links is None else [tuple(x) for x in links]
        # one claims series per linked fund, after the measures' columns in the pass
        self.series: dict[int, int] = {}
        series_cols: list[np.ndarray] = []
        for link in (x for links_k in self.links for x in links_k):
            if link.fund not in self.series:
                self.series[link.fund] = len(measures) + len(series_cols)
                series_cols.append(np.asarray(link.fund_cols, dtype=np.int64))
        self._passed = [*measures, *series_cols]
        self._point: np.ndarray | None = None
        self._series_values: np.ndarray | None = None
        self.n_cells = losses.shape[1]
        self.dtype = losses.dtype if losses.dtype == np.float32 else np.dtype(np.float64)
        held = np.concatenate([*self._passed, np.zeros(0, dtype=np.int64)])
        # per claim shape, only the cells some measure holds (a fund covers few products)
        self.shape_cells = {
            int(s): np.unique(columns.cell[held[columns.shape[held] == s]])
            for s in np.unique(columns.shape[held])
        }
        self.cap_excess: dict[int, sp.csr_matrix] = {}
        self.active_rows: dict[int, np.ndarray] = {}
        self.active_rates: dict[int, np.ndarray] = {}
        for s, cells in self.shape_cells.items():
            fc = columns.shapes[s]
            if fc.active is not None:
                rows = np.flatnonzero(fc.active)
                self.active_rows[s] = rows
                self.active_rates[s] = self._rates(s, np.asarray(losses[rows]), rows)
            elif fc.cap_share is not None:
                self.cap_excess[s] = self._excess(cells, fc.cap_share)

    def _excess(self, cells: np.ndarray, cap: float) -> sp.csr_matrix:
        """``(ℓ − cap)+`` on ``cells``, shape (S, len(cells)), sparse: few losses pass a cap."""
        cap = self.dtype.type(cap)
        counts, index, value = [], [], []
        for lo in range(0, self.losses.shape[0], CHUNK_ROWS):
            block = np.asarray(self.losses[lo : lo + CHUNK_ROWS][:, cells], dtype=self.dtype)
            over = block > cap
            counts.append(over.sum(axis=1))
            index.append(np.nonzero(over)[1].astype(np.int32))  # row-major: CSR order
            value.append(block[over] - cap)
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
        shape = (self.losses.shape[0], cells.size)
        return sp.csr_matrix((np.concatenate(value), np.concatenate(index), indptr), shape=shape)

    def _rates(self, shape: int, block: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``a(ω) f(ℓ)`` of one claim shape on its cells, for the given rows of ``losses``."""
        fc = self.columns.shapes[shape]
        rates = np.asarray(block[:, self.shape_cells[shape]], dtype=self.dtype)  # a copy
        if fc.cap_share is not None:
            np.minimum(rates, self.dtype.type(fc.cap_share), out=rates)
        if fc.active is not None:
            rates *= fc.active[rows][:, None]
        return rates

    def _mapping(self, expo: np.ndarray) -> dict[int, np.ndarray]:
        """Per claim shape, the (J_s, K) matrix of exposure by its cells and measure."""
        out = {}
        for s, cells in self.shape_cells.items():
            mat = np.zeros((self.n_cells, len(self._passed)))
            for k, cols in enumerate(self._passed):
                mine = cols[self.columns.shape[cols] == s]
                np.add.at(mat[:, k], self.columns.cell[mine], expo[mine])
            out[s] = mat[cells]
        return out

    def scenario_losses(self, expo: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Losses of every measure in every scenario: one pass over the matrix.

        Parameters
        ----------
        expo : ndarray of shape (n_cols,)
        out : ndarray of shape (S, K) in the matrix's dtype, optional
            Written in place and returned. A loop re-using one buffer saves, at 10^6
            scenarios, half the time of the product (a fresh array's page faults).

        Returns
        -------
        ndarray of shape (S, K), in the matrix's dtype (float32 losses stay float32: the
        product is only that precise; sums over them are taken in float64).
        """
        with one_blas_thread():
            return self._losses(expo, out)

    def _losses(self, expo: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        mapping = self._mapping(expo)
        n_k, n_all = len(self.measures), len(self._passed)
        dense = np.zeros((self.n_cells, n_all))
        for s, mat in mapping.items():
            if s not in self.active_rows:
                dense[self.shape_cells[s]] += mat
        shape = (self.losses.shape[0], n_all)
        if out is not None and out.shape != shape:
            out = out.base if out.base is not None and out.base.shape == shape else None
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        np.matmul(self.losses, dense.astype(self.dtype), out=out)
        for s, excess in self.cap_excess.items():
            held = np.flatnonzero(mapping[s].any(axis=0))  # most measures hold no capped claim
            if held.size:
                # in the matrix's dtype: a float64 operand would widen all of ``excess``
                out[:, held] -= excess @ mapping[s][:, held].astype(self.dtype)
        for s, rows in self.active_rows.items():
            out[rows] += self.active_rates[s] @ mapping[s].astype(self.dtype)
        if n_all == n_k:
            return out
        self._point, self._series_values = np.array(expo, dtype=float), out[:, n_k:]
        for k, links in enumerate(self.links):
            for link in links:
                over = out[:, self.series[link.fund]] - self.dtype.type(expo[link.cap_cols].sum())
                out[:, k] += np.maximum(over, 0, out=over)
        return out[:, :n_k]

    def _series_at(self, expo: np.ndarray) -> np.ndarray:
        """The linked funds' claims at ``expo``, shape (S, n_linked_funds), from the last
        pass when it was at this point."""
        if self._point is None or not np.array_equal(self._point, expo):
            self._losses(expo)
        assert self._series_values is not None
        return self._series_values

    def var_and_excess(
        self, losses: np.ndarray, alphas: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per measure, the smallest ``v`` with ``P(L_k <= v) >= α_k``, and the tail excess
        ``Σ_ω π_ω (L_k(ω) − v)+`` there, each of shape (K,): ``v + excess/(1 − α)`` is the
        CVaR.

        With equal weights and many scenarios each measure's column is first copied contiguous
        (a column of the (S, K) pass is strided: reading it cost as much as reading the whole
        pass, nine times at 10^6 scenarios) and the order statistic is selected among the values
        above a bound read off a strided sample, as :func:`var_and_excess_by_column` does;
        the selected value is the same, the excess is the same sum in another order.
        """
        alphas = np.asarray(alphas, dtype=float)
        with one_blas_thread():
            if not self.equal_weights or losses.shape[0] < SELECT_MIN_ROWS:
                return var_and_excess_by_column(losses, self.p, alphas)
            return var_and_excess_equal(losses, self.p[0], alphas)

    def cuts(
        self,
        expo: np.ndarray,
        thresholds: np.ndarray,
        which: np.ndarray | None = None,
        losses: np.ndarray | None = None,
        groups: int = 1,
    ) -> tuple[list[Cut], np.ndarray]:
        """Aggregated cuts at ``(expo, thresholds)``: the most violated one for each threshold.

        Parameters
        ----------
        expo : ndarray of shape (n_cols,)
        thresholds : ndarray of shape (n,)
            A ``t`` per cut wanted (the master's, or a measure's VaR at ``expo``: the cut that
            is tight for the true CVaR there).
        which : ndarray of int, shape (n,), optional
            The measure of each threshold; default ``arange(K)`` (one per measure).
        losses : ndarray of shape (S, K), optional
            ``scenario_losses(expo)`` if already computed (saves the pass over the matrix).
        groups : int, default 1
            Split each cut over this many contiguous scenario blocks (:func:`group_bounds`).

        Returns
        -------
        cuts : list of Cut
            One per threshold, or with ``groups > 1`` one per threshold and block whose tail
            is not empty (threshold-major); their sum over blocks is the aggregated cut.
        losses : ndarray of shape (S, K)
        """
        which = np.arange(len(self.measures)) if which is None else np.asarray(which)
        with one_blas_thread():
            if losses is None:
                losses = self._losses(expo)
            cuts = self._cuts(expo, losses, np.asarray(thresholds, dtype=float), which, groups)
            return cuts, losses

    def _tail_sums(
        self, tail: np.ndarray, weight: np.ndarray, used: set[int], bounds: np.ndarray
    ) -> dict[int, np.ndarray]:
        """Per claim shape, ``Σ_ω w_i(ω) r_s(ω)`` over each block's tail rows, shape
        (n_blocks, n, J_s). A block whose tail rows are few gathers them; one with many is
        cheaper as a transposed pass over its rows."""
        split = np.searchsorted(tail, bounds)
        n_blocks, n = bounds.size - 1, weight.shape[1]
        sums = {s: np.zeros((n_blocks, n, self.shape_cells[s].size)) for s in used}
        for g in range(n_blocks):
            a, b = split[g], split[g + 1]
            lo, hi = bounds[g], bounds[g + 1]
            if b - a > GATHER_MAX_SHARE * (hi - lo):
                found = self._sums_by_pass(tail[a:b], weight[a:b], used, lo, hi)
            else:
                found = self._sums_by_gather(tail[a:b], weight[a:b], used)
            for s in used:
                sums[s][g] = found[s]
        return sums

    def _sums_by_gather(
        self, rows: np.ndarray, weight: np.ndarray, used: set[int]
    ) -> dict[int, np.ndarray]:
        """Σ_ω w(ω) r_s(ω) over the given rows, gathered a chunk at a time (few rows)."""
        sums = {s: np.zeros((weight.shape[1], self.shape_cells[s].size)) for s in used}
        for lo in range(0, rows.size, CHUNK_ROWS):
            chunk = rows[lo : lo + CHUNK_ROWS]
            block = self.losses[chunk]  # rates are exact in the stored dtype; sums in float64
            w = weight[lo : lo + CHUNK_ROWS].T
            for s in used:
                sums[s] += w @ self._rates(s, block, chunk).astype(np.float64)
        return sums

    def _sums_by_pass(
        self, rows: np.ndarray, weight: np.ndarray, used: set[int], lo: int, hi: int
    ) -> dict[int, np.ndarray]:
        """The same sums as one transposed pass ``ℓᵀ W`` over rows ``lo:hi`` of the matrix
        (many tail rows): ``min(ℓ, c) = ℓ − (ℓ − c)+`` again, and a contingent shape's own
        rows."""
        full = np.zeros((hi - lo, weight.shape[1]), dtype=self.dtype)
        full[rows - lo] = weight
        plain = np.asarray(self.losses[lo:hi].T @ full, dtype=np.float64)  # (J, n)
        sums = {}
        for s in used:
            if s in self.active_rows:
                active = self.active_rows[s]
                a, b = np.searchsorted(active, [lo, hi])
                found = self.active_rates[s][a:b].T @ full[active[a:b] - lo]
            else:
                found = plain[self.shape_cells[s]]
                if s in self.cap_excess:
                    found = found - self.cap_excess[s][lo:hi].T @ full
            sums[s] = np.asarray(found, dtype=np.float64).T
        return sums

    def _cuts(
        self,
        expo: np.ndarray,
        losses: np.ndarray,
        thresholds: np.ndarray,
        which: np.ndarray,
        groups: int,
    ) -> list[Cut]:
        lowest = np.full(losses.shape[1], np.inf)
        np.minimum.at(lowest, which, thresholds)
        # the rows in some tail: a few per cent, so everything after this works on them only
        tail = np.flatnonzero((losses > lowest[None, :]).any(axis=1))
        over = losses[tail][:, which] - thresholds[None, :]
        weight = self.p[tail][:, None] * (over > 0)
        n = weight.shape[1]
        # a link (C_g − K)+ adds its fund's claim rates where the fund is past K: one more
        # weight column per (threshold, link), the tail weight masked to those rows
        terms = [(i, link) for i, k in enumerate(which) for link in self.links[k]]
        if terms:
            series = self._series_at(expo)[tail]
            extra = np.column_stack(
                [
                    weight[:, i]
                    * (
                        series[:, self.series[link.fund] - len(self.measures)]
                        > expo[link.cap_cols].sum()
                    )
                    for i, link in terms
                ]
            )
            weight = np.hstack([weight, extra])
        held = [self.measures[k] for k in which] + [link.fund_cols for _, link in terms]
        used = {int(s) for cols in held for s in np.unique(self.columns.shape[cols])}
        bounds = group_bounds(losses.shape[0], groups)
        sums = self._tail_sums(tail, weight, used, bounds)
        split = np.searchsorted(tail, bounds)

        def by_block(values: np.ndarray) -> np.ndarray:  # (T, n) -> (n_blocks, n)
            padded = np.vstack([values, np.zeros((1, values.shape[1]))])  # a block may be empty
            out = np.add.reduceat(padded, split[:-1], axis=0)
            out[split[:-1] == split[1:]] = 0.0
            return out

        tail_prob, excess = by_block(weight[:, :n]), by_block(weight[:, :n] * over)
        linked = by_block(weight[:, n:]) if terms else None
        out = []
        term = n
        for i, k in enumerate(which):
            parts = [self._coef(sums, used, i, self.measures[k], split.size - 1)]
            for link in self.links[k]:
                parts.append(self._coef(sums, used, term, link.fund_cols, split.size - 1))
                parts.append(-np.repeat(linked[:, term - n, None], link.cap_cols.size, axis=1))
                term += 1
            coef = np.hstack(parts)
            for g in range(split.size - 1):
                if groups == 1 or tail_prob[g, i] > 0.0:  # a block outside the tail says nothing
                    out.append(Cut(coef[g], float(tail_prob[g, i]), float(excess[g, i]), int(k), g))
        return out

    def _coef(
        self,
        sums: dict[int, np.ndarray],
        used: set[int],
        column: int,
        cols: np.ndarray,
        n_blocks: int,
    ) -> np.ndarray:
        """A weight column's cut coefficients on the given loss columns, (n_blocks, n_cols)."""
        coef = np.zeros((n_blocks, cols.size))
        for s in used:
            mine = self.columns.shape[cols] == s
            if mine.any():
                where = np.searchsorted(self.shape_cells[s], self.columns.cell[cols[mine]])
                coef[:, mine] = sums[s][:, column, where]
        return coef
