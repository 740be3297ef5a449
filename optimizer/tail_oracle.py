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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from optimizer.exposures import ExposureColumns

CHUNK_ROWS = 32_768
"""Rows per block of the sparse cap excess and of gathered tail rows (bounds temporaries)."""
GATHER_MAX_SHARE = 0.05
"""Up to this share of rows in some tail, cut coefficients gather those rows; above it one
transposed pass over the whole matrix is cheaper."""
BLAS_THREADS = 1
"""The pass is bound by memory bandwidth, its other products are tiny: OpenBLAS threads gained
nothing on 2 cores and made the small products 50x slower when the cores were busy."""


@dataclass(frozen=True)
class Cut:
    """An aggregated cut for one measure: ``η >= coef @ e_k − tail_probability · t``.

    Attributes
    ----------
    coef : ndarray of shape (n_cols_k,)
        Coefficients on the measure's exposure columns.
    tail_probability : float
        Σ π over the tail scenarios.
    excess : float
        Σ π (L − t)+ at the point the cut was made (its value there).
    """

    coef: np.ndarray
    tail_probability: float
    excess: float


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
    """

    def __init__(
        self,
        losses: np.ndarray,
        probabilities: np.ndarray,
        columns: ExposureColumns,
        measures: list[np.ndarray],
    ):
        self.losses = losses
        self.p = np.asarray(probabilities, dtype=np.float64)
        self.columns = columns
        self.measures = measures
        self.n_cells = losses.shape[1]
        self.dtype = losses.dtype if losses.dtype == np.float32 else np.dtype(np.float64)
        held = np.concatenate([*measures, np.zeros(0, dtype=np.int64)])
        # per claim shape, only the cells some measure holds (a fund covers few products)
        self.shape_cells = {
            int(s): np.unique(columns.cell[held[columns.shape[held] == s]])
            for s in np.unique(columns.shape[held])
        }
        self._threads: ThreadpoolController | None = None
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
        parts = []
        for lo in range(0, self.losses.shape[0], CHUNK_ROWS):
            block = np.asarray(self.losses[lo : lo + CHUNK_ROWS][:, cells], dtype=self.dtype)
            parts.append(sp.csr_matrix(np.maximum(block - self.dtype.type(cap), 0)))
        return sp.vstack(parts, format="csr")

    def _rates(self, shape: int, block: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``a(ω) f(ℓ)`` of one claim shape on its cells, for the given rows of ``losses``."""
        fc = self.columns.shapes[shape]
        rates = np.asarray(block[:, self.shape_cells[shape]], dtype=self.dtype)
        if fc.cap_share is not None:
            rates = np.minimum(rates, self.dtype.type(fc.cap_share))
        if fc.active is not None:
            rates = rates * fc.active[rows][:, None]
        return rates

    def _mapping(self, expo: np.ndarray) -> dict[int, np.ndarray]:
        """Per claim shape, the (J_s, K) matrix of exposure by its cells and measure."""
        out = {}
        for s, cells in self.shape_cells.items():
            mat = np.zeros((self.n_cells, len(self.measures)))
            for k, cols in enumerate(self.measures):
                mine = cols[self.columns.shape[cols] == s]
                np.add.at(mat[:, k], self.columns.cell[mine], expo[mine])
            out[s] = mat[cells]
        return out

    def scenario_losses(self, expo: np.ndarray) -> np.ndarray:
        """Losses of every measure in every scenario, shape (S, K): one pass over the matrix."""
        with self._blas():
            return self._losses(self._mapping(expo))

    def _blas(self):
        if self._threads is None:  # inspecting the loaded libraries costs ~1 ms: do it once
            self._threads = ThreadpoolController()
        return self._threads.limit(limits=BLAS_THREADS, user_api="blas")

    def _losses(self, mapping: dict[int, np.ndarray]) -> np.ndarray:
        dense = np.zeros((self.n_cells, len(self.measures)))
        for s, mat in mapping.items():
            if s not in self.active_rows:
                dense[self.shape_cells[s]] += mat
        out = np.asarray(self.losses @ dense.astype(self.dtype), dtype=np.float64)
        for s, excess in self.cap_excess.items():
            out -= excess @ mapping[s]
        for s, rows in self.active_rows.items():
            out[rows] += self.active_rates[s] @ mapping[s].astype(self.dtype)
        return out

    def excess(self, losses: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``Σ_ω π_ω (L_k(ω) − t_k)+`` per measure, shape (K,), from ``scenario_losses``."""
        return self.p @ np.maximum(losses - thresholds[None, :], 0.0)

    def value_at_risk(self, losses: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        """Per measure, the smallest ``v`` with ``P(L_k <= v) >= α_k``, shape (K,)."""
        return _upper_quantiles(losses, self.p, np.asarray(alphas, dtype=float))

    def cuts(
        self,
        expo: np.ndarray,
        thresholds: np.ndarray,
        which: np.ndarray | None = None,
        losses: np.ndarray | None = None,
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

        Returns
        -------
        cuts : list of Cut, one per threshold
        losses : ndarray of shape (S, K)
        """
        which = np.arange(len(self.measures)) if which is None else np.asarray(which)
        with self._blas():
            if losses is None:
                losses = self._losses(self._mapping(expo))
            return self._cuts(losses, np.asarray(thresholds, dtype=float), which), losses

    def _grads_by_gather(
        self, tail: np.ndarray, weight: np.ndarray, used: set[int]
    ) -> dict[int, np.ndarray]:
        """Σ_ω w(ω) r_s(ω) over the tail rows, gathered a block at a time (few rows)."""
        grads = {s: np.zeros((weight.shape[1], self.shape_cells[s].size)) for s in used}
        for lo in range(0, tail.size, CHUNK_ROWS):
            rows = tail[lo : lo + CHUNK_ROWS]
            block = np.asarray(self.losses[rows], dtype=np.float64)
            w = weight[lo : lo + CHUNK_ROWS].T
            for s in used:
                grads[s] += w @ np.asarray(self._rates(s, block, rows), dtype=np.float64)
        return grads

    def _grads_by_pass(
        self, tail: np.ndarray, weight: np.ndarray, used: set[int]
    ) -> dict[int, np.ndarray]:
        """The same sums as one transposed pass ``ℓᵀ W`` over the matrix (many tail rows):
        ``min(ℓ, c) = ℓ − (ℓ − c)+`` again, and a contingent shape's own rows."""
        full = np.zeros((self.losses.shape[0], weight.shape[1]), dtype=self.dtype)
        full[tail] = weight
        plain = np.asarray(self.losses.T @ full, dtype=np.float64)  # (J, n)
        grads = {}
        for s in used:
            if s in self.active_rows:
                g = self.active_rates[s].T @ full[self.active_rows[s]]
            else:
                g = plain[self.shape_cells[s]]
                if s in self.cap_excess:
                    g = g - self.cap_excess[s].T @ full
            grads[s] = np.asarray(g, dtype=np.float64).T
        return grads

    def _cuts(self, losses: np.ndarray, thresholds: np.ndarray, which: np.ndarray) -> list[Cut]:
        over = losses[:, which] - thresholds[None, :]
        in_tail = over > 0
        tail = np.flatnonzero(in_tail.any(axis=1))
        weight = self.p[tail][:, None] * in_tail[tail]
        tail_prob = weight.sum(axis=0)
        excess = (weight * over[tail]).sum(axis=0)
        used = {int(s) for k in which for s in np.unique(self.columns.shape[self.measures[k]])}
        if tail.size > GATHER_MAX_SHARE * losses.shape[0]:
            grads = self._grads_by_pass(tail, weight, used)
        else:
            grads = self._grads_by_gather(tail, weight, used)
        out = []
        for i, k in enumerate(which):
            cols = self.measures[k]
            coef = np.zeros(cols.size)
            for s in used:
                mine = self.columns.shape[cols] == s
                where = np.searchsorted(self.shape_cells[s], self.columns.cell[cols[mine]])
                coef[mine] = grads[s][i, where]
            out.append(
                Cut(coef=coef, tail_probability=float(tail_prob[i]), excess=float(excess[i]))
            )
        return out


def _upper_quantiles(losses: np.ndarray, p: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Per column k, the smallest ``v`` with ``P(L_k <= v) >= α_k`` (weighted scenarios).

    Only the largest losses are sorted: a partition picks a few times the tail's expected
    size, and a full sort is the fallback when their probability falls short.
    """
    n = losses.shape[0]
    out = np.empty(losses.shape[1])
    if np.all(p == p[0]):  # equal weights: the ⌈αn⌉-th smallest loss, by a partition
        for k in range(losses.shape[1]):
            kth = min(n - 1, max(0, int(np.ceil(alphas[k] * n - 1e-9)) - 1))
            out[k] = np.partition(losses[:, k], kth)[kth]
        return out
    for k in range(losses.shape[1]):
        col, tail_mass = losses[:, k], 1.0 - alphas[k]
        m = min(n, int(8 * tail_mass * n) + 16)
        top = np.argpartition(col, n - m)[n - m :] if m < n else np.arange(n)
        order = top[np.argsort(-col[top], kind="stable")]
        above = np.cumsum(p[order])  # P(L >= l) along decreasing losses
        if m < n and above[-1] <= tail_mass:
            order = np.argsort(-col, kind="stable")
            above = np.cumsum(p[order])
        # P(L <= v) >= α  ⇔  P(L > v) <= 1 − α: the first loss whose strict excess mass fits
        strictly_above = above - p[order]
        i = int(np.searchsorted(strictly_above, tail_mass, side="right")) - 1
        out[k] = col[order[max(i, 0)]]
    return out
