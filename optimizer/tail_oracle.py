"""One pass over the loss matrix per cutting-plane iteration: every CVaR's losses and its cut.

For a CVaR measure k (a funder's losses or a fund's claims) with net exposures ``e`` and
threshold ``t_k``, the Künzi-Bay & Mayer aggregated cut is

    η_k  >=  Σ_{ω ∈ T_k} π_ω L_k(ω)  −  t_k Σ_{ω ∈ T_k} π_ω ,     T_k = {ω : L_k(ω) > t_k},

linear in (e, t_k) because ``L_k(ω) = Σ_col r_col(ω) e_col``. Its coefficient on an exposure
column is ``Σ_{ω ∈ T_k} π_ω r_col(ω)``: a masked product over the tail rows only, never a copy
of the rows. Rows are visited in chunks, so the only full-size array is the loss matrix itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.exposures import ExposureColumns

CHUNK_ROWS = 32_768


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
    losses : ndarray of shape (S, J)
        Loss per dollar lent of every cell.
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
        self.shapes_used = sorted({int(k) for m in measures for k in columns.shape[m]})

    def _mapping(self, expo: np.ndarray) -> dict[int, np.ndarray]:
        """Per claim shape, the (J, K) matrix of exposure by cell and measure."""
        out = {}
        for s in self.shapes_used:
            mat = np.zeros((self.n_cells, len(self.measures)))
            for k, cols in enumerate(self.measures):
                mine = cols[self.columns.shape[cols] == s]
                np.add.at(mat[:, k], self.columns.cell[mine], expo[mine])
            out[s] = mat
        return out

    def _shape_rates(self, shape: int, block: np.ndarray, rows: slice) -> np.ndarray:
        """``a(ω) f(ℓ)`` of one claim shape for a block of rows."""
        fc = self.columns.shapes[shape]
        rates = block
        if fc.cap_share is not None:
            rates = np.minimum(block, fc.cap_share)
        if fc.active is not None:
            rates = rates * fc.active[rows][:, None]
        return rates

    def scenario_losses(self, expo: np.ndarray) -> np.ndarray:
        """Losses of every measure in every scenario, shape (S, K)."""
        mapping = self._mapping(expo)
        n = self.losses.shape[0]
        out = np.zeros((n, len(self.measures)))
        for lo in range(0, n, CHUNK_ROWS):
            rows = slice(lo, min(lo + CHUNK_ROWS, n))
            block = np.asarray(self.losses[rows], dtype=np.float64)
            for s, mat in mapping.items():
                out[rows] += self._shape_rates(s, block, rows) @ mat
        return out

    def cuts(self, expo: np.ndarray, thresholds: np.ndarray) -> tuple[list[Cut], np.ndarray]:
        """The most violated aggregated cut of every measure at ``(expo, thresholds)``.

        Returns
        -------
        cuts : list of Cut, one per measure
        losses : ndarray of shape (S, K)
            The measures' scenario losses at ``expo`` (for exact CVaR checks).
        """
        mapping = self._mapping(expo)
        n, k_count = self.losses.shape[0], len(self.measures)
        scen_losses = np.zeros((n, k_count))
        grads = {s: np.zeros((k_count, self.n_cells)) for s in mapping}
        for lo in range(0, n, CHUNK_ROWS):
            rows = slice(lo, min(lo + CHUNK_ROWS, n))
            block = np.asarray(self.losses[rows], dtype=np.float64)
            rates_by_shape = {s: self._shape_rates(s, block, rows) for s in mapping}
            chunk = scen_losses[rows]
            for s, mat in mapping.items():
                chunk += rates_by_shape[s] @ mat
            weight = self.p[rows][:, None] * (chunk > thresholds[None, :])
            tail = np.flatnonzero(weight.any(axis=1))
            if tail.size:
                w_tail = weight[tail]
                for s in mapping:
                    grads[s] += w_tail.T @ rates_by_shape[s][tail]
        tail_w = self.p[:, None] * (scen_losses > thresholds[None, :])
        tail_prob = tail_w.sum(axis=0)
        excess = (tail_w * (scen_losses - thresholds[None, :])).sum(axis=0)
        out = []
        for k, cols in enumerate(self.measures):
            coef = np.zeros(cols.size)
            for s in mapping:
                mine = self.columns.shape[cols] == s
                coef[mine] = grads[s][k, self.columns.cell[cols[mine]]]
            out.append(
                Cut(coef=coef, tail_probability=float(tail_prob[k]), excess=float(excess[k]))
            )
        return out, scen_losses
