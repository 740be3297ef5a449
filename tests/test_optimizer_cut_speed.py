"""The cutting plane's speed paths give the numbers of the plain ones: the oracle's VaR and tail
excess selected among sampled-bound tail rows, and a changed problem re-solved from a base's
cut pool (:class:`optimizer.formulation.cutting_plane.CutPool`)."""

from __future__ import annotations

import numpy as np
import pytest

from models.risk_measures import var_and_excess_by_column
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.tail_oracle import TailOracle
from optimizer.formulation.tail_select import SELECT_MIN_ROWS


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
    with one_blas_thread():  # as the oracle: the last digit of a BLAS sum follows the threads
        ref = var_and_excess_by_column(losses, p, np.array([0.9, 0.99]))
    np.testing.assert_array_equal(var, ref[0])
    np.testing.assert_array_equal(excess, ref[1])


# --- re-solving a changed problem from a base's cut pool -----------------------------------


@pytest.fixture(scope="module")
def base_problem():
    from models import load_case, simulate
    from optimizer.formulation.problem import build_problem
    from optimizer.solve import solve_stage

    case = load_case()
    scenarios = simulate(case, 3_000, seed=7)
    prob = build_problem(case, scenarios, "cuts")
    log = solve_stage(prob, 1)
    return case, scenarios, prob, prob.cut_master.snapshot(), log.timings["stage1_iterations"]


def _relaxed_by_one_million(prob, source: str) -> np.ndarray:
    """cvar_scale with ``source``'s CVaR limit US$1m (one unit) higher."""
    measure = next(m for m in prob.cut_measures if m.name == source)
    scale = np.array(prob.cvar_scale.value, dtype=float)
    i = prob.cvar_limited.index(source)
    limit = float(measure.limit.value) / scale[i]  # at scale 1
    scale[i] = (scale[i] * limit + 1.0) / limit
    return scale


def _solve(prob, scale, pool=None) -> tuple[float, float, np.ndarray]:
    from optimizer.solve import solve_stage

    prob.cvar_scale.value = scale
    if pool is None:
        prob.cut_master.reset()
    else:
        prob.cut_master.start(pool)
    log = solve_stage(prob, 1)
    gap = float(prob.weighted_gap.value)
    return gap, log.timings["stage1_iterations"], np.array(prob.expo.value, copy=True)


def test_a_relaxed_limit_re_solved_from_the_base_pool_has_the_cold_optimum(base_problem) -> None:
    _, _, prob, pool, base_iterations = base_problem
    base_scale = np.array(prob.cvar_scale.value, dtype=float)
    assert len(pool.rows) > 0 and len(pool.pool) > 0 and pool.basis is not None
    try:
        for source in ("PRIV_MFI", "PRIV_SENIOR"):  # both bind in the default case
            scale = _relaxed_by_one_million(prob, source)
            cold, cold_iterations, _ = _solve(prob, scale)
            warm, warm_iterations, _ = _solve(prob, scale, pool)
            assert warm == pytest.approx(cold, rel=1e-6)
            assert warm < _solve(prob, base_scale, pool)[0]  # relaxing a binding limit pays
            assert warm_iterations < min(cold_iterations, base_iterations)
    finally:
        prob.cvar_scale.value = base_scale


def test_every_start_from_one_pool_gives_the_same_numbers(base_problem) -> None:
    _, _, prob, pool, _ = base_problem
    base_scale = np.array(prob.cvar_scale.value, dtype=float)
    try:
        first = _solve(prob, base_scale * 0.7, pool)
        _solve(prob, base_scale * 1.6, pool)  # what ran in between leaves no trace
        again = _solve(prob, base_scale * 0.7, pool)
        assert first[0] == again[0] and first[1] == again[1]
        np.testing.assert_array_equal(first[2], again[2])
    finally:
        prob.cvar_scale.value = base_scale


def test_a_pool_from_another_problem_is_refused(base_problem) -> None:
    from optimizer.errors import OptimizerError
    from optimizer.formulation.cutting_plane import CutPool

    _, _, prob, pool, _ = base_problem
    k, block, coef, prob_tail = pool.pool[0]
    alien = CutPool((), ((k, block, coef[:-1], prob_tail),), None)
    with pytest.raises(OptimizerError, match="same case structure"):
        prob.cut_master.start(alien)
