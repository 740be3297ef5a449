"""The cutting plane's speed paths give the numbers of the plain ones: the oracle's VaR and tail
excess selected among sampled-bound tail rows, and a changed problem re-solved from a base's
cut pool (:class:`optimizer.cutting_plane.CutPool`)."""

from __future__ import annotations

import numpy as np
import pytest

from models.risk_measures import var_and_excess_by_column
from optimizer.tail_oracle import SELECT_MIN_ROWS, TailOracle


def _oracle(p: np.ndarray) -> TailOracle:
    oracle = TailOracle.__new__(TailOracle)  # only the weights matter to var_and_excess
    oracle.p = p
    oracle.equal_weights = bool((p == p[0]).all())
    return oracle


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_oracle_var_and_excess_match_the_reference_on_long_columns(dtype) -> None:
    rng = np.random.default_rng(11)
    n = SELECT_MIN_ROWS + 4_321
    losses = (rng.standard_normal((n, 6)) ** 2).astype(dtype)
    losses[:, 1] = np.where(rng.random(n) < 0.97, 0.0, losses[:, 1])  # an atom under the tail
    losses[:, 2] = np.round(losses[:, 2], 1)  # ties at the VaR
    losses[:, 3] = 0.0  # a measure that holds nothing
    alphas = np.array([0.95, 0.99, 0.95, 0.99, 0.5, 1.0 - 1.0 / n])  # 0.5: no bound helps
    p = np.full(n, 1.0 / n)
    var, excess = _oracle(p).var_and_excess(losses, alphas)
    ref_var, ref_excess = var_and_excess_by_column(losses, p, alphas)
    np.testing.assert_array_equal(var, ref_var)  # the same order statistic
    np.testing.assert_allclose(excess, ref_excess, rtol=1e-12, atol=0.0)
    assert excess[0] > 0 and var[3] == 0.0 and excess[3] == 0.0


def test_oracle_var_and_excess_weighted_scenarios_use_the_reference() -> None:
    rng = np.random.default_rng(5)
    n = SELECT_MIN_ROWS + 10
    losses = rng.random((n, 2))
    p = rng.random(n)
    p /= p.sum()
    var, excess = _oracle(p).var_and_excess(losses, np.array([0.9, 0.99]))
    ref = var_and_excess_by_column(losses, p, np.array([0.9, 0.99]))
    np.testing.assert_array_equal(var, ref[0])
    np.testing.assert_array_equal(excess, ref[1])
