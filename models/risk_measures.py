"""Risk measures of weighted scenario losses: expected loss, VaR, CVaR and CVaR tail weights.

Every layer (simulator reports, optimizer constraints, Euler risk contributions) calls these
functions so that the same scenarios always give the same numbers. Each scenario carries a
probability: ``1/S`` for plain Monte Carlo, self-normalized likelihood ratios for importance
sampling (IS). Losses are in the caller's currency unit (e.g. USD); probabilities are unitless.

Standard errors use the delta method for self-normalized weights,
``SE = sqrt(sum_s p_s**2 * (g_s - theta)**2)`` with ``g`` the influence function of the
measure ``theta``. With equal weights ``p_s = 1/S`` this is the textbook ``sd(g) / sqrt(S)``
(population sd, ``ddof=0``), so one formula serves plain Monte Carlo and IS. They are
asymptotic: with very uneven weights (Kish size a few % of S) they run 10-30% low.

This module must never import cvxpy: the simulator uses it without the optimizer stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.errors import OptionError

# Probabilities further than this from summing to 1 are a caller bug, not float rounding.
_SUM_TOL = 1e-9
# Slack on the cumulative-probability comparison so that rounding in the cumulative sum cannot
# move a quantile sitting exactly on a scenario boundary (e.g. alpha=0.75, S=4) by one scenario.
_CUM_RTOL = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo point estimate and its standard error, in the units of the losses.

    Floats for losses of shape (S,), arrays of shape (K,) for losses of shape (S, K).
    """

    value: float | np.ndarray  # point estimate(s)
    std_error: float | np.ndarray  # Monte Carlo standard error(s)


def check_probabilities(probabilities: npt.ArrayLike | None, n_scenarios: int) -> np.ndarray:
    """Validate scenario probabilities and return them as float64 summing to 1.

    Parameters
    ----------
    probabilities : array_like of shape (S,) or None
        Scenario probabilities; ``None`` means equal weights ``1/S`` (plain Monte Carlo).
    n_scenarios : int
        The number of scenarios ``S``.

    Returns
    -------
    ndarray of shape (S,)
        A new float64 array, divided by its sum to remove rounding drift.

    Raises
    ------
    ValueError
        Naming the offending value, unless 1-D, length S, finite, >= 0 and summing to 1 +- 1e-9.
    """
    if n_scenarios < 1:
        raise OptionError(f"n_scenarios must be >= 1, got {n_scenarios}")
    if probabilities is None:
        return np.full(n_scenarios, 1.0 / n_scenarios)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1:
        raise OptionError(f"probabilities must be 1-D, got shape {p.shape}")
    if p.shape[0] != n_scenarios:
        raise OptionError(
            f"probabilities must have one entry per scenario ({n_scenarios}), got {p.shape[0]}"
        )
    bad = ~np.isfinite(p)
    if bad.any():
        i = int(np.argmax(bad))
        raise OptionError(f"probabilities must be finite, got {p[i]} at scenario {i}")
    if (p < 0).any():
        i = int(np.argmin(p))
        raise OptionError(f"probabilities must be >= 0, got {p[i]} at scenario {i}")
    s = float(p.sum())
    if abs(s - 1.0) > _SUM_TOL:
        raise OptionError(f"probabilities must sum to 1, got {s}")
    return p / s


def effective_sample_size(probabilities: npt.ArrayLike) -> float:
    """Kish effective sample size ``1 / sum(p**2)`` of probabilities of shape (S,), in [1, S].

    S for equal weights; smaller the more uneven the importance-sampling weights are.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = check_probabilities(p, p.size)
    return float(1.0 / np.dot(p, p))


def _prepare(
    losses: npt.ArrayLike, probabilities: npt.ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return losses as float64 of shape (S, K), probabilities (S,), and whether input was 1-D."""
    # float32 simulator output is upcast here: sums over 1e6 scenarios need float64.
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise OptionError(f"losses must have shape (S,) or (S, K) with S >= 1, got {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(np.argmax(bad), x.shape))
        raise OptionError(f"losses must be finite, got {x[where]} at index {where}")
    p = check_probabilities(probabilities, x.shape[0])
    return (x[:, None] if x.ndim == 1 else x), p, x.ndim == 1


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:  # the negated form also rejects NaN
        raise OptionError(f"alpha must be in (0, 1), got {alpha}")
    return a


def _out(x: np.ndarray, one_d: bool) -> float | np.ndarray:
    return float(x[0]) if one_d else x


_PRESELECT_MIN_ROWS = 65_536
"""Columns this long find their quantile among the values above a bound read off a strided
sample (the tail is a few per cent of them); shorter ones are selected whole."""
_SAMPLE_ROWS = 4_096


def var_by_column(x: np.ndarray, p: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Weighted lower alpha-quantile of each column of ``x`` (S, K); returns shape (K,).

    ``alpha`` is one level or one per column.
    """
    return var_and_excess_by_column(x, p, alpha)[0]


def var_and_excess_by_column(
    x: np.ndarray, p: np.ndarray, alpha: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`var_by_column` and each column's tail excess ``Σ p (x − VaR)+``, both (K,).

    ``VaR + excess / (1 − α)`` is then the CVaR (Rockafellar–Uryasev at its minimiser); the
    excess is summed over the rows the quantile was selected from, which hold the whole tail.
    """
    n, k = x.shape
    alphas = np.broadcast_to(np.asarray(alpha, dtype=float), (k,))
    equal = bool((p == p[0]).all())
    var, excess = np.empty(k), np.empty(k)
    weighted = p > 0
    lightest = float(p[weighted].min() / p.sum()) if weighted.any() else 0.0
    for j in range(k):
        col, threshold = x[:, j], alphas[j] * (1.0 - _CUM_RTOL)
        if 0.0 < threshold <= lightest:
            # a level below every scenario's probability (an expectation written as a CVaR at
            # α ≈ 0): the quantile is the least loss of a weighted scenario, found without a sort
            var[j] = float(col[weighted].min())
            excess[j] = p @ np.maximum(np.asarray(col, dtype=np.float64) - var[j], 0.0)
            continue
        top = _above_bound(col, p, threshold, equal)
        if top is None:
            var[j] = _column_var(col, p, threshold, equal, 0, 0.0)
            rows = slice(None)
        else:
            rows, below, mass_below = top
            var[j] = _column_var(col[rows], p[rows], threshold, equal, below, mass_below, n)
        excess[j] = p[rows] @ np.maximum(np.asarray(col[rows], dtype=np.float64) - var[j], 0.0)
    return var, excess


def _above_bound(
    col: np.ndarray, p: np.ndarray, threshold: float, equal: bool
) -> tuple[np.ndarray, int, float] | None:
    """Rows above a bound with less than ``threshold`` of the probability at or below it.

    The bound is a strided sample's quantile at a level well under ``threshold``; the check
    that the mass below it falls short of ``threshold`` makes the answer exact whatever the
    sample. Returns (rows, number below, probability below), or None to select the whole
    column (short, or the bound was too high).
    """
    n = col.size
    # twice the tail, plus ~3 standard errors of a 4,096-row sample's quantile
    level = 1.0 - 2.0 * (1.0 - threshold) - 0.02
    if n < _PRESELECT_MIN_ROWS or level <= 0.0:
        return None
    step = n // _SAMPLE_ROWS
    if equal:
        sample = np.sort(col[::step])
        bound = sample[int(level * (sample.size - 1))]
    else:
        # the sample's weighted quantile: importance sampling puts many light scenarios in the
        # tail, so the unweighted one sat under too little mass and every column was sorted
        # whole (measured at 10^5: the cutting plane's passes 3.5x slower than unweighted)
        values = col[::step]
        order = np.argsort(values)
        cum = np.cumsum(p[::step][order])
        at = min(int(np.searchsorted(cum, level * cum[-1])), values.size - 1)
        bound = values[order[at]]
    # strictly above: an atom at the bound (a fund that pays nothing in most scenarios) stays out
    rows = np.flatnonzero(col > bound)
    below = n - rows.size
    mass_below = below / n if equal else float(p.sum() - p[rows].sum())
    if mass_below >= threshold * (p.sum() if not equal else 1.0):
        return None
    return rows, below, mass_below


def _column_var(
    col: np.ndarray,
    p: np.ndarray,
    threshold: float,
    equal: bool,
    below: int,
    mass_below: float,
    n: int | None = None,
) -> float:
    """The quantile of one column, given that ``below`` rows of mass ``mass_below`` (none by
    default) lie under every value of ``col``; ``n`` is the whole column's length."""
    n = col.size if n is None else n
    if equal:
        # Equal weights: the quantile is the order statistic i with (i+1)/S >= alpha, found by
        # O(S) selection instead of a sort. Exact: a cumulative sum of S equal terms drifts by
        # ~1e-11 at S = 1e6, enough to shift a quantile sitting on a scenario boundary.
        i = int(np.ceil(threshold * n)) - 1 - below
        return float(np.partition(col, i)[i])
    order = np.argsort(col)  # ties need no special order
    cum = np.cumsum(p[order]) + mass_below
    cum /= cum[-1]  # last entry exactly 1.0, so some scenario always passes alpha < 1
    # First sorted position whose cumulative mass reaches alpha. That scenario has p > 0 (the
    # cumulative sum strictly increases there), so zero-probability scenarios are never VaR.
    return float(col[order[int(np.argmax(cum >= threshold))]])


def expected_loss(losses: npt.ArrayLike, probabilities: npt.ArrayLike | None = None) -> Estimate:
    """Probability-weighted mean loss.

    Parameters
    ----------
    losses : array_like of shape (S,) or (S, K)
        Scenario losses (currency units); K columns are evaluated independently.
    probabilities : array_like of shape (S,), optional
        Scenario probabilities summing to 1; default equal weights ``1/S``.

    Returns
    -------
    Estimate
        ``value = sum p L``; ``std_error = sqrt(sum p**2 (L - EL)**2)`` (``sd/sqrt(S)`` for
        equal weights). Floats for 1-D losses, arrays of shape (K,) otherwise.
    """
    x, p, one_d = _prepare(losses, probabilities)
    el = p @ x
    dev = x - el
    np.square(dev, out=dev)
    se = np.sqrt((p * p) @ dev)
    return Estimate(_out(el, one_d), _out(se, one_d))


def value_at_risk(
    losses: npt.ArrayLike, alpha: float, probabilities: npt.ArrayLike | None = None
) -> Estimate:
    """Value at risk: the smallest loss ``v`` with ``P(L <= v) >= alpha`` (no interpolation).

    Parameters
    ----------
    losses : array_like of shape (S,) or (S, K)
        Scenario losses (currency units); K columns are evaluated independently.
    alpha : float
        Confidence level in (0, 1), e.g. 0.95.
    probabilities : array_like of shape (S,), optional
        Scenario probabilities summing to 1; default equal weights ``1/S``.

    Returns
    -------
    Estimate
        ``std_error = sqrt(sum p**2 (1{L <= VaR} - alpha)**2) / f(VaR)``, with ``f`` a
        p-weighted Gaussian kernel density at VaR (Silverman bandwidth
        ``1.06 sd_p n_eff**-0.2``, ``n_eff`` the Kish size). For equal weights this is the
        classic ``sqrt(alpha (1 - alpha) / S) / f(VaR)``. 0.0 for constant losses or ``f = 0``.
    """
    x, p, one_d = _prepare(losses, probabilities)
    a = _check_alpha(alpha)
    var = var_by_column(x, p, a)
    p2 = p * p
    below = p2 @ (x <= var)  # sum of p**2 over scenarios at or below VaR
    numerator = np.sqrt(below * (1.0 - a) ** 2 + (p2.sum() - below) * a**2)

    mean = p @ x
    sd = np.sqrt(p @ np.square(x - mean))
    h = 1.06 * sd * (1.0 / p2.sum()) ** -0.2
    # Exact test for constant columns: sd can be ~1e-17 rather than 0 from rounding in the mean.
    ok = (h > 0) & ~(x == x[0]).all(axis=0)
    h = np.where(ok, h, 1.0)
    z = (x - var) / h
    np.square(z, out=z)
    z *= -0.5
    np.exp(z, out=z)
    density = (p @ z) / (h * np.sqrt(2.0 * np.pi))
    ok &= density > 0
    se = np.where(ok, numerator / np.where(ok, density, 1.0), 0.0)
    return Estimate(_out(var, one_d), _out(se, one_d))


def conditional_value_at_risk(
    losses: npt.ArrayLike, alpha: float, probabilities: npt.ArrayLike | None = None
) -> Estimate:
    """Conditional value at risk (expected shortfall), Rockafellar–Uryasev form.

    ``CVaR = VaR + sum p (L - VaR)_+ / (1 - alpha) = min_t t + sum p (L - t)_+ / (1 - alpha)``:
    the p-weighted mean of the worst ``1 - alpha`` probability mass, splitting the scenario(s)
    at the VaR boundary so the tail holds exactly that mass.

    Parameters
    ----------
    losses : array_like of shape (S,) or (S, K)
        Scenario losses (currency units); K columns are evaluated independently.
    alpha : float
        Confidence level in (0, 1), e.g. 0.95.
    probabilities : array_like of shape (S,), optional
        Scenario probabilities summing to 1; default equal weights ``1/S``.

    Returns
    -------
    Estimate
        ``std_error = sqrt(sum p**2 (h - CVaR)**2)`` with influence function
        ``h = VaR + (L - VaR)_+ / (1 - alpha)``; ``sd(h)/sqrt(S)`` for equal weights.
    """
    x, p, one_d = _prepare(losses, probabilities)
    a = _check_alpha(alpha)
    var = var_by_column(x, p, a)
    excess = x - var
    np.maximum(excess, 0.0, out=excess)
    shortfall = (p @ excess) / (1.0 - a)  # CVaR - VaR
    # h - CVaR = (L - VaR)_+ / (1 - alpha) - shortfall, reusing the excess buffer in place.
    excess /= 1.0 - a
    excess -= shortfall
    np.square(excess, out=excess)
    se = np.sqrt((p * p) @ excess)
    return Estimate(_out(var + shortfall, one_d), _out(se, one_d))


def tail_weights(
    losses: npt.ArrayLike, alpha: float, probabilities: npt.ArrayLike | None = None
) -> np.ndarray:
    """Scenario weights of the CVaR tail: ``w >= 0``, ``sum w = 1``, ``CVaR = sum w L``.

    Scenarios above VaR get ``p / (1 - alpha)``; scenarios tied at VaR share the remaining
    tail mass in proportion to ``p``; all others get 0. For a loss ``L = sum_j x_j loss_j``
    these give the Euler contributions ``d CVaR / d x_j = sum_s w_s loss_{s,j}``.

    Parameters
    ----------
    losses : array_like of shape (S,) or (S, K)
        Scenario losses (currency units); K columns are evaluated independently.
    alpha : float
        Confidence level in (0, 1).
    probabilities : array_like of shape (S,), optional
        Scenario probabilities summing to 1; default equal weights ``1/S``.

    Returns
    -------
    ndarray of shape (S,) or (S, K)
        Unitless tail weights, one column per loss column.
    """
    x, p, one_d = _prepare(losses, probabilities)
    a = _check_alpha(alpha)
    var = var_by_column(x, p, a)
    above = x > var
    at = x == var
    mass_above = p @ above
    mass_at = p @ at  # > 0: the VaR scenario itself has positive probability
    # Fraction of each boundary scenario's probability inside the tail; the clip absorbs the
    # 1e-12 quantile slack, where the mass above VaR may exceed 1 - alpha by rounding.
    share = np.clip(((1.0 - a) - mass_above) / mass_at, 0.0, 1.0)
    w = at * share
    w[above] = 1.0
    w *= p[:, None]
    w /= mass_above + share * mass_at  # = 1 - alpha up to rounding; makes sum(w) = 1
    return w[:, 0] if one_d else w
