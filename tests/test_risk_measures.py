"""Tests of models.risk_measures: exact small cases, the LP form of CVaR, invariances, standard
errors (plain Monte Carlo and importance sampling) and input validation."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from models.risk_measures import (
    Estimate,
    check_probabilities,
    conditional_value_at_risk,
    effective_sample_size,
    expected_loss,
    tail_weights,
    value_at_risk,
)

ALPHAS = [0.01, 0.2, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def weighted_case(rng: np.random.Generator, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Skewed losses with ties (rounded) and uneven weights, some of them exactly zero."""
    losses = np.round(rng.lognormal(0.0, 1.0, n), 1)
    p = rng.exponential(size=n)
    p[rng.choice(n, n // 10, replace=False)] = 0.0
    return losses, p / p.sum()


def cvar_by_minimization(losses: np.ndarray, alpha: float, p: np.ndarray) -> float:
    """min_t t + sum p (L - t)_+ / (1 - alpha), brute force over t in the set of losses."""
    t = np.unique(losses)[:, None]
    return float(np.min(t[:, 0] + (np.maximum(losses - t, 0.0) @ p) / (1.0 - alpha)))


def var_by_definition(losses: np.ndarray, alpha: float, p: np.ndarray) -> float:
    """Smallest loss v with P(L <= v) >= alpha."""
    v = np.unique(losses)
    mass = np.array([p[losses <= x].sum() for x in v])
    return float(v[np.argmax(mass >= alpha * (1 - 1e-12))])


# --- exact small cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha", "var", "cvar"),
    [
        (0.2, 1.0, (0.05 * 1 + 0.25 * (2 + 3 + 4)) / 0.8),
        (0.5, 2.0, 3.5),
        (0.6, 3.0, (0.25 * 4 + 0.15 * 3) / 0.4),
        (0.75, 3.0, 4.0),  # tail mass falls exactly on a scenario boundary
        (0.9, 4.0, 4.0),
    ],
)
def test_four_equal_scenarios(alpha: float, var: float, cvar: float) -> None:
    losses = [3.0, 1.0, 4.0, 2.0]
    assert value_at_risk(losses, alpha).value == var
    assert conditional_value_at_risk(losses, alpha).value == pytest.approx(cvar, abs=1e-14)
    w = tail_weights(losses, alpha)
    assert w @ np.array(losses) == pytest.approx(cvar, abs=1e-14)


def test_expected_loss_exact() -> None:
    est = expected_loss([1.0, 2.0, 3.0, 4.0])
    assert isinstance(est, Estimate)
    assert est.value == 2.5
    assert est.std_error == pytest.approx(np.sqrt(1.25 / 4), abs=1e-15)  # population sd / sqrt(S)
    est = expected_loss([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4])
    assert est.value == pytest.approx(3.0, abs=1e-15)
    assert est.std_error == pytest.approx(np.sqrt(0.01 * 4 + 0.04 + 0 + 0.16), abs=1e-15)


@pytest.mark.parametrize(
    ("alpha", "var", "cvar", "weights"),
    [
        (0.1, 0.0, 5.0 / 0.9, [1 / 9, 2 / 9, 2 / 9, 2 / 9, 2 / 9]),
        (0.2, 0.0, 6.25, [0.0, 0.25, 0.25, 0.25, 0.25]),
        (0.5, 5.0, 7.0, [0.0, 0.2, 0.2, 0.2, 0.4]),
        (0.8, 5.0, 10.0, [0.0, 0.0, 0.0, 0.0, 1.0]),
        (0.9, 10.0, 10.0, [0.0, 0.0, 0.0, 0.0, 1.0]),
    ],
)
def test_ties_at_the_boundary(alpha: float, var: float, cvar: float, weights: list) -> None:
    losses = np.array([0.0, 5.0, 5.0, 5.0, 10.0])
    assert value_at_risk(losses, alpha).value == var
    assert conditional_value_at_risk(losses, alpha).value == pytest.approx(cvar, abs=1e-14)
    np.testing.assert_allclose(tail_weights(losses, alpha), weights, atol=1e-15)


def test_uneven_weights_split_tail_atom() -> None:
    losses, p = np.array([4.0, 1.0, 3.0, 2.0]), np.array([0.4, 0.1, 0.3, 0.2])
    assert value_at_risk(losses, 0.5, p).value == 3.0
    assert conditional_value_at_risk(losses, 0.5, p).value == pytest.approx(3.8, abs=1e-14)
    np.testing.assert_allclose(tail_weights(losses, 0.5, p), [0.8, 0.0, 0.2, 0.0], atol=1e-15)
    # Two tied boundary scenarios share the remaining tail mass 0.1 in proportion 0.2 : 0.3.
    losses, p = np.array([1.0, 3.0, 3.0, 4.0]), np.array([0.1, 0.2, 0.3, 0.4])
    assert conditional_value_at_risk(losses, 0.5, p).value == pytest.approx(3.8, abs=1e-14)
    np.testing.assert_allclose(tail_weights(losses, 0.5, p), [0, 0.08, 0.12, 0.8], atol=1e-15)


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.6, 0.75, 0.9])
def test_zero_probability_scenarios_are_ignored(alpha: float) -> None:
    base = np.array([1.0, 2.0, 3.0, 4.0])
    losses = np.array([100.0, 1.0, 2.0, 3.0, 4.0, -50.0, 2.5, 3.0])
    p = np.array([0.0, 0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0])
    assert value_at_risk(losses, alpha, p).value == value_at_risk(base, alpha).value
    assert conditional_value_at_risk(losses, alpha, p).value == pytest.approx(
        conditional_value_at_risk(base, alpha).value, abs=1e-14
    )
    w = tail_weights(losses, alpha, p)
    assert np.all(w[p == 0] == 0.0)
    np.testing.assert_allclose(w[p > 0], tail_weights(base, alpha), atol=1e-15)


def test_equal_weight_shortcut_matches_weighted_path(rng: np.random.Generator) -> None:
    # Appending a zero-probability scenario forces the sorting path; alphas on exact scenario
    # boundaries (k / S) check that both paths pick the same order statistic.
    n = 1000
    losses = np.round(rng.normal(size=n), 2)
    padded = np.append(losses, 1e6)
    p = np.append(np.full(n, 1.0 / n), 0.0)
    for alpha in [*ALPHAS, 0.5, 0.95, 1 / n, 999 / n, 0.123]:
        assert value_at_risk(losses, alpha).value == value_at_risk(padded, alpha, p).value
        a = conditional_value_at_risk(losses, alpha)
        b = conditional_value_at_risk(padded, alpha, p)
        assert a.value == pytest.approx(b.value, rel=1e-12)
        assert a.std_error == pytest.approx(b.std_error, rel=1e-9)


# --- CVaR definitions ----------------------------------------------------------------------


@pytest.mark.parametrize("alpha", ALPHAS)
def test_cvar_equals_minimization_form(rng: np.random.Generator, alpha: float) -> None:
    for _ in range(5):
        losses, p = weighted_case(rng)
        cvar = conditional_value_at_risk(losses, alpha, p).value
        assert cvar == pytest.approx(cvar_by_minimization(losses, alpha, p), rel=1e-12, abs=1e-12)
        assert value_at_risk(losses, alpha, p).value == var_by_definition(losses, alpha, p)
    losses = rng.normal(size=300)  # equal weights
    p = np.full(300, 1 / 300)
    assert conditional_value_at_risk(losses, alpha).value == pytest.approx(
        cvar_by_minimization(losses, alpha, p), rel=1e-12, abs=1e-12
    )


@pytest.mark.parametrize("alpha", ALPHAS)
def test_duplication_and_permutation_invariance(rng: np.random.Generator, alpha: float) -> None:
    losses, p = weighted_case(rng)
    var = value_at_risk(losses, alpha, p).value
    cvar = conditional_value_at_risk(losses, alpha, p).value
    doubled, halved = np.repeat(losses, 2), np.repeat(p, 2) / 2
    assert value_at_risk(doubled, alpha, halved).value == var
    assert conditional_value_at_risk(doubled, alpha, halved).value == pytest.approx(cvar, rel=1e-12)
    perm = rng.permutation(losses.size)
    assert value_at_risk(losses[perm], alpha, p[perm]).value == var
    assert conditional_value_at_risk(losses[perm], alpha, p[perm]).value == pytest.approx(
        cvar, rel=1e-12
    )
    # Equal weights: duplication keeps them equal (selection shortcut on both sides).
    x = np.round(rng.normal(size=200), 1)
    assert value_at_risk(np.repeat(x, 2), alpha).value == value_at_risk(x, alpha).value
    assert conditional_value_at_risk(np.repeat(x, 2), alpha).value == pytest.approx(
        conditional_value_at_risk(x, alpha).value, rel=1e-12
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_two_dimensional_matches_columns(rng: np.random.Generator, weighted: bool) -> None:
    n, k = 400, 5
    x = np.round(rng.gamma(2.0, size=(n, k)), 1)
    p = rng.exponential(size=n) if weighted else None
    p = None if p is None else p / p.sum()
    for alpha in (0.5, 0.95):
        for func in (value_at_risk, conditional_value_at_risk):
            both = func(x, alpha, p)
            assert both.value.shape == both.std_error.shape == (k,)
            for j in range(k):
                one = func(x[:, j], alpha, p)
                assert both.value[j] == pytest.approx(one.value, rel=1e-12)
                assert both.std_error[j] == pytest.approx(one.std_error, rel=1e-9)
        w = tail_weights(x, alpha, p)
        assert w.shape == (n, k)
        for j in range(k):
            np.testing.assert_allclose(w[:, j], tail_weights(x[:, j], alpha, p), atol=1e-15)
    el = expected_loss(x, p)
    for j in range(k):
        assert el.value[j] == pytest.approx(expected_loss(x[:, j], p).value, rel=1e-12)


def test_float32_input_is_computed_in_float64(rng: np.random.Generator) -> None:
    x32 = rng.normal(size=(1000, 3)).astype(np.float32)
    x64 = x32.astype(np.float64)
    for alpha in (0.5, 0.99):
        a, b = conditional_value_at_risk(x32, alpha), conditional_value_at_risk(x64, alpha)
        np.testing.assert_array_equal(a.value, b.value)
        assert a.value.dtype == np.float64


@pytest.mark.parametrize("alpha", ALPHAS)
def test_tail_weights(rng: np.random.Generator, alpha: float) -> None:
    losses, p = weighted_case(rng, 300)
    x = np.column_stack([losses, rng.permutation(losses), -losses])
    w = tail_weights(x, alpha, p)
    cvar = conditional_value_at_risk(x, alpha, p).value
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.all(w >= 0.0)
    assert np.all(w[p == 0] == 0.0)
    assert np.all(w <= p[:, None] / (1 - alpha) * (1 + 1e-12))
    np.testing.assert_allclose(np.einsum("sk,sk->k", w, x), cvar, rtol=1e-12)


def test_tail_weights_give_euler_gradient(rng: np.random.Generator) -> None:
    # CVaR of a portfolio L = loss @ x is piecewise linear in x; away from kinks its gradient
    # is sum_s w_s loss_{s,j}.
    n, k = 5000, 4
    loss = rng.gamma(1.5, size=(n, k))
    p = rng.exponential(size=n)
    p /= p.sum()
    x = np.array([1.0, 0.5, 2.0, 0.3])
    w = tail_weights(loss @ x, 0.95, p)
    gradient = w @ loss
    h = 1e-7
    for j in range(k):
        e = np.eye(k)[j] * h
        up = conditional_value_at_risk(loss @ (x + e), 0.95, p).value
        down = conditional_value_at_risk(loss @ (x - e), 0.95, p).value
        assert (up - down) / (2 * h) == pytest.approx(gradient[j], rel=1e-6)


# --- standard errors ------------------------------------------------------------------------


def test_standard_errors_large_normal_sample(rng: np.random.Generator) -> None:
    n, alpha = 200_000, 0.95
    x = rng.standard_normal(n)
    el = expected_loss(x)
    assert el.std_error == pytest.approx(1 / np.sqrt(n), rel=0.02)
    assert abs(el.value) < 3 * el.std_error
    exact = stats.norm.pdf(stats.norm.ppf(alpha)) / (1 - alpha)
    cvar = conditional_value_at_risk(x, alpha)
    assert abs(cvar.value - exact) < 3 * cvar.std_error
    var = value_at_risk(x, alpha)
    z = stats.norm.ppf(alpha)
    assert abs(var.value - z) < 3 * var.std_error
    classic = np.sqrt(alpha * (1 - alpha) / n) / stats.norm.pdf(z)
    assert var.std_error == pytest.approx(classic, rel=0.05)


def _spread_check(samples: list[tuple[np.ndarray, np.ndarray | None]], alpha: float) -> None:
    for func in (conditional_value_at_risk, value_at_risk, expected_loss):
        args = (alpha,) if func is not expected_loss else ()
        ests = [func(x, *args, probabilities=p) for x, p in samples]
        spread = np.std([e.value for e in ests], ddof=1)
        reported = np.mean([e.std_error for e in ests])
        assert reported == pytest.approx(spread, rel=0.15), func.__name__


def test_reported_se_matches_spread_plain_monte_carlo(rng: np.random.Generator) -> None:
    _spread_check([(rng.standard_normal(2000), None) for _ in range(200)], 0.95)


def test_reported_se_matches_spread_importance_sampling(rng: np.random.Generator) -> None:
    # Target N(0, 1), proposal N(1, 1): self-normalized likelihood ratios exp(-x + 1/2), Kish
    # size ~37% of S. (Much more extreme weights make the delta-method SE run 10-30% low.)
    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(1.0, 1.0, n)
        lr = np.exp(-x + 0.5)
        return x, lr / lr.sum()

    _spread_check([draw(2000) for _ in range(200)], 0.95)
    alpha = 0.99
    x, p = draw(200_000)
    assert effective_sample_size(p) == pytest.approx(np.exp(-1.0) * x.size, rel=0.05)
    cvar = conditional_value_at_risk(x, alpha, p)
    exact = stats.norm.pdf(stats.norm.ppf(alpha)) / (1 - alpha)
    assert abs(cvar.value - exact) < 3 * cvar.std_error
    # The proposal puts many scenarios in the tail: far smaller SE than plain Monte Carlo.
    plain = conditional_value_at_risk(rng.standard_normal(x.size), alpha)
    assert cvar.std_error < 0.5 * plain.std_error


def test_constant_losses_have_zero_standard_error() -> None:
    for func in (value_at_risk, conditional_value_at_risk):
        est = func(np.full((50, 2), 0.1), 0.9)
        np.testing.assert_array_equal(est.value, 0.1)
        np.testing.assert_array_equal(est.std_error, 0.0)
    # The mean of equal weights 1/7 rounds, leaving a deviation of one ulp at most.
    assert expected_loss(np.full(7, 3.0)).std_error == pytest.approx(0.0, abs=1e-15)


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.full(400, 1 / 400)) == pytest.approx(400, rel=1e-12)
    assert effective_sample_size([0.5, 0.5, 0.0, 0.0]) == pytest.approx(2.0, rel=1e-12)
    assert effective_sample_size([0.7, 0.1, 0.1, 0.1]) == pytest.approx(1 / 0.52, rel=1e-12)


def test_check_probabilities() -> None:
    np.testing.assert_array_equal(check_probabilities(None, 4), [0.25] * 4)
    raw = np.array([0.5, 0.5 + 5e-10])
    p = check_probabilities(raw, 2)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)
    assert raw[1] == 0.5 + 5e-10  # the caller's array is not modified


# --- bad inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, float("nan")])
@pytest.mark.parametrize("func", [value_at_risk, conditional_value_at_risk, tail_weights])
def test_bad_alpha(func, alpha: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"alpha must be in (0, 1), got {alpha}")):
        func([1.0, 2.0, 3.0], alpha)


@pytest.mark.parametrize(
    ("probabilities", "message"),
    [
        ([0.5, 0.6, -0.1], "got -0.1 at scenario 2"),
        ([0.5, 0.5], "one entry per scenario (3), got 2"),
        ([0.5, 0.25, 0.125], "probabilities must sum to 1, got 0.875"),
        ([0.5, np.nan, 0.5], "got nan at scenario 1"),
        ([[0.5, 0.5, 0.0]], "must be 1-D, got shape (1, 3)"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda x, p: expected_loss(x, p),
        lambda x, p: value_at_risk(x, 0.9, p),
        lambda x, p: conditional_value_at_risk(x, 0.9, p),
        lambda x, p: tail_weights(x, 0.9, p),
    ],
)
def test_bad_probabilities(call, probabilities: list, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call([1.0, 2.0, 3.0], probabilities)


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ([1.0, np.nan, 3.0], "losses must be finite, got nan at index (1,)"),
        ([[1.0, 2.0], [np.inf, 0.0]], "got inf at index (1, 0)"),
        (np.zeros((2, 2, 2)), "got (2, 2, 2)"),
        ([], "got (0,)"),
    ],
)
def test_bad_losses(losses, message: str) -> None:
    for func in (value_at_risk, conditional_value_at_risk, tail_weights):
        with pytest.raises(ValueError, match=re.escape(message)):
            func(losses, 0.9)
    with pytest.raises(ValueError, match=re.escape(message)):
        expected_loss(losses)


def test_effective_sample_size_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match=re.escape("got -0.5")):
        effective_sample_size([1.5, -0.5])
    with pytest.raises(ValueError, match=re.escape("got 2.0")):
        effective_sample_size([1.0, 1.0])


def _brute_var(x: np.ndarray, p: np.ndarray, alpha: float) -> float:
    """Smallest v with P(X <= v) >= alpha, by a full sort (the definition)."""
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(p[order]) / p.sum()
    return float(x[order[np.argmax(cum >= alpha * (1 - 1e-12))]])


@pytest.mark.parametrize("weighted", [False, True, "light_tail"])
def test_long_columns_preselect_the_tail_and_give_the_exact_quantile(
    rng: np.random.Generator, weighted: bool | str
) -> None:
    """Above 65,536 rows the quantile is found among values over a sampled bound; it must be
    the same order statistic as a full sort, for per-column levels, ties and a column whose
    sampled bound is too high (a tail made of one repeated value)."""
    from models.risk_measures import var_and_excess_by_column, var_by_column

    n = 200_003
    x = np.column_stack(
        [
            rng.standard_normal(n),
            np.round(rng.exponential(size=n), 1),  # heavy ties
            np.where(rng.random(n) < 0.2, 5.0, rng.random(n)),  # 20% atom at the top
            rng.standard_t(2, size=n),
        ]
    )
    p = rng.random(n) if weighted else np.full(n, 1.0 / n)
    if weighted == "light_tail":  # as importance sampling draws: many light scenarios up high
        p = np.where(x[:, 0] > 1.0, 0.01, 1.0) * rng.random(n)
    p /= p.sum()
    alphas = np.array([0.99, 0.95, 0.9, 0.995])
    got = var_by_column(x, p, alphas)
    want = [_brute_var(x[:, j], p, a) for j, a in enumerate(alphas)]
    np.testing.assert_array_equal(got, want)
    # the tail excess summed over the pre-selected rows is the whole column's
    _, excess = var_and_excess_by_column(x, p, alphas)
    np.testing.assert_allclose(excess, p @ np.maximum(x - got, 0.0), rtol=1e-12)
    cvar = got + excess / (1 - alphas)
    for j, a in enumerate(alphas):
        assert cvar[j] == pytest.approx(conditional_value_at_risk(x[:, j], a, p).value, rel=1e-9)
    # one level for every column still works, and float32 columns too
    np.testing.assert_array_equal(
        var_by_column(x.astype(np.float32), p, 0.97),
        [_brute_var(x[:, j].astype(np.float32), p, 0.97) for j in range(4)],
    )
