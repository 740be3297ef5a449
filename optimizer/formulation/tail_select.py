"""The VaR and tail excess of long, equally weighted loss columns, by selection.

A column of the oracle's pass (:class:`~optimizer.formulation.tail_oracle.TailOracle`) with
:data:`SELECT_MIN_ROWS` scenarios or more, all equally likely, is copied contiguous and its
order statistic is selected among the values above a bound read off a strided sample of
:data:`SAMPLE_ROWS` values (the tail is a few per cent of them), instead of sorting or
partitioning the whole column as :func:`models.risk_measures.var_and_excess_by_column` does.
"""

from __future__ import annotations

import numpy as np

from models.risk_measures import _CUM_RTOL

SELECT_MIN_ROWS = 65_536
"""Columns this long select their VaR among the values above a sampled bound (the tail is a
few per cent of them); shorter ones go to :func:`var_and_excess_by_column` whole."""
SAMPLE_ROWS = 4_096


def var_and_excess_equal(
    losses: np.ndarray, weight: float, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the smallest ``v`` with ``P(L <= v) >= α`` and the tail excess there, every
    scenario of probability ``weight``.

    Parameters
    ----------
    losses : ndarray of shape (S, K)
        Losses of K measures in S equally likely scenarios (a pass of the oracle).
    weight : float
        The probability of every scenario (the oracle's ``p[0]``).
    alphas : ndarray of shape (K,)

    Returns
    -------
    var, excess : ndarray of shape (K,)
        As :func:`models.risk_measures.var_and_excess_by_column` gives them: the same selected
        value, the excess the same sum in another order.
    """
    n, k = losses.shape
    var, excess = np.empty(k), np.empty(k)
    columns = np.ascontiguousarray(losses.T)  # (K, S): 36 MB at 10^6 x 9 in float32
    for j in range(k):
        col = columns[j]
        # the same order statistic as models.risk_measures._column_var with equal weights
        i = int(np.ceil(alphas[j] * (1.0 - _CUM_RTOL) * n)) - 1
        sample = np.sort(col[:: max(1, n // SAMPLE_ROWS)])
        # twice the tail below the quantile, plus ~3 standard errors of the sample's
        level = max(0.0, 1.0 - 2.0 * (1.0 - alphas[j]) - 0.02)
        top = col[col > sample[int(level * (sample.size - 1))]]
        below = n - top.size
        if below > i:  # the bound passed the quantile: select among all the values
            top, below = col, 0
        var[j] = float(np.partition(top, i - below)[i - below])
        over = top.astype(np.float64) - var[j]
        excess[j] = weight * float(over[over > 0.0].sum())
    return var, excess
