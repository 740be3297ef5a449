"""What a cutting-plane master bounds: its CVaR measures, and the scenario blocks each is cut over.

A measure ``k`` (a funder's losses, a fund's claims) is written ``t_k + f_k η_k`` with
``f_k = 1/(1 − α_k)`` and ``η_k >= 0`` standing for ``Σ_ω π_ω (L_k(ω) − t_k)+``; problem builders
declare their measures with :func:`make_measure`, and :func:`cut_groups` says into how many
scenario blocks the master splits each ``η_k`` (see :mod:`optimizer.formulation.cutting_plane`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

GROUPS_AT_10K = 16
"""Scenario blocks per measure up to 10^4 scenarios; :func:`cut_groups` grows them as S^0.3
beyond."""
MAX_GROUPS = 128


def cut_groups(n_scenarios: int) -> int:
    """Scenario blocks per measure for a loss matrix of ``n_scenarios`` rows.

    More blocks mean fewer passes but a master with more rows; the best count grows with the
    scenarios. Measured on the default case (optimize seconds): at 10^4, 16 blocks 1.10, 32
    1.34, 64 1.83; at 10^5, 16 blocks 4.92, 32 4.11, 64 5.44; at 10^6 (float32), 16 blocks
    50.2, 32 42.5, 64 39.1 (before idle cuts were pooled; with the pool, 64 took 30.1 and 128
    34.8). ``16 (S/10^4)^0.3`` gives 16, 32 and 64 there. Fewer scenarios keep
    16 blocks (at most one per scenario): cheap there, and closer to the exact LP on tiny
    amounts (``tests/test_edge_cases.py``).
    """
    groups = round(GROUPS_AT_10K * max(1.0, n_scenarios / 10_000) ** 0.3)
    return int(max(1, min(groups, MAX_GROUPS, n_scenarios)))


EXPECTATION_LEVEL = 1e-12
"""The level of a measure that stands for an expectation: ``CVaR_α`` of a loss that is never
negative is its mean as α → 0 (with ``t >= 0`` the master's ``t + f·η`` is exact at t = 0)."""


@dataclass(frozen=True, eq=False)
class Link:
    """Claims a fund cannot pay out of some of its capital: ``(C_g(ω) − Σ_{cap_cols} e)+``.

    Convex in the exposures, so a CVaR of losses that include it is still a convex limit that
    the cutting plane holds exactly: lenders keep the claims beyond all of a fund's capital
    (``cap_cols`` every capital column of the fund), a senior capital layer loses at most the
    claims beyond the layers junior to it (``cap_cols`` theirs).

    Attributes
    ----------
    fund : int
    fund_cols : ndarray of int
        The fund's claim columns (``C_g = Σ r e`` over them).
    cap_cols : ndarray of int
        The capital columns subtracted.
    """

    fund: int
    fund_cols: np.ndarray
    cap_cols: np.ndarray

    @property
    def key(self) -> tuple[int, bytes]:
        """Links with equal keys are the same function (one LP variable, one oracle series)."""
        return (self.fund, np.sort(self.cap_cols).tobytes())


@dataclass(eq=False)
class CutMeasure:
    """One CVaR measure of the master problem.

    Attributes
    ----------
    name : str
    cols : ndarray of int, shape (n_cols_k,)
        The net exposure columns whose losses the measure adds up.
    alpha : float
        Confidence level at build time (the tail factor may be a swept parameter).
    t, eta : cvxpy Variable (scalar, >= 0)
        Threshold and tail excess.
    estimate : cvxpy Expression
        The master's CVaR, ``t + f·η``.
    tail_factor : cvxpy Expression or float
        ``f = 1/(1 − α)``.
    limit : cvxpy Expression or None
        The right-hand side the CVaR must stay within (US$m); the loop stops adding cuts to a
        measure whose true CVaR at the master's point is within it.
    links : tuple of Link
        Terms ``(C_g − K)+`` added to the loss (claims a fund cannot pay).
    row_cols : ndarray of int
        The exposure columns of a cut row, in the order of a cut's coefficients: ``cols``, then
        each link's fund and capital columns (a column may repeat; the master adds repeats).
    """

    name: str
    cols: np.ndarray
    alpha: float
    t: cp.Variable
    eta: cp.Variable
    tail_factor: cp.Expression | float
    limit: cp.Expression | None = None
    links: tuple[Link, ...] = ()
    estimate: cp.Expression = field(init=False)
    row_cols: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.estimate = self.t + self.tail_factor * self.eta
        parts = [self.cols] + [c for link in self.links for c in (link.fund_cols, link.cap_cols)]
        self.row_cols = np.concatenate(parts).astype(np.int64)

    def factor(self) -> float:
        """Current value of ``1/(1 − α)``."""
        f = self.tail_factor
        return float(f.value) if isinstance(f, cp.Expression) else float(f)


def make_measure(
    name: str,
    cols: np.ndarray,
    alpha: float,
    tail_factor: cp.Expression | None = None,
    *,
    losses_nonneg: bool = True,
    links: tuple[Link, ...] = (),
) -> CutMeasure:
    """A measure with no cut yet (η >= 0; t >= 0 too when losses are never negative)."""
    return CutMeasure(
        name=name,
        cols=np.asarray(cols, dtype=np.int64),
        alpha=float(alpha),
        t=cp.Variable(nonneg=losses_nonneg, name=f"var_{name}"),
        eta=cp.Variable(nonneg=True, name=f"tail_{name}"),
        tail_factor=1.0 / (1.0 - alpha) if tail_factor is None else tail_factor,
        links=tuple(links),
    )
