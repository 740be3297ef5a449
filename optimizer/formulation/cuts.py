"""A cut of a CVaR measure, as the tail oracle makes it and a cut master adds it as a row.

:class:`Cut` is one aggregated (or one scenario block's) Künzi-Bay & Mayer cut
``η >= coef @ e_k − tail_probability · t``; :func:`group_bounds` says which contiguous scenario
rows each block of a partially aggregated multi-cut sums over
(:class:`~optimizer.formulation.tail_oracle.TailOracle` makes the cuts,
:class:`~optimizer.formulation.cut_master.CutMaster` holds them as rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cut:
    """An aggregated cut for one measure: ``η >= coef @ e_k − tail_probability · t``.

    Attributes
    ----------
    coef : ndarray of shape (n_cols_k,)
        Coefficients on the measure's exposure columns.
    tail_probability : float
        Σ π over the tail scenarios (of the cut's group).
    excess : float
        Σ π (L − t)+ at the point the cut was made (its value there).
    measure : int
        The measure it bounds (its position in the oracle's ``measures``).
    group : int
        The scenario block the cut sums over (0 when cuts are not split by group).
    """

    coef: np.ndarray
    tail_probability: float
    excess: float
    measure: int = 0
    group: int = 0


def group_bounds(n_scenarios: int, groups: int) -> np.ndarray:
    """Row bounds of ``groups`` contiguous, near-equal scenario blocks, shape (groups + 1,)."""
    return np.linspace(0, n_scenarios, max(1, min(groups, n_scenarios)) + 1).astype(np.int64)
