"""The one-LP formulation of every CVaR, built straight into a cut master's HiGHS model.

Rockafellar–Uryasev with one variable and one row per scenario and measure:
``z_kω >= L_k(ω) − t_k``, ``z_kω >= 0`` and ``η_k >= Σ_ω π_ω z_kω``. On the cut master's
scenario-free model these rows make the master the full LP, so one solve gives the one-LP
formulation's optimum without cvxpy's canonicalisation of the scenario rows (at 10^4 scenarios
of the default case: 1.4 GiB against 2.6 GiB, and its compile time). It is the exact reference
the cutting plane is measured against in ``benchmarks/bench_one_lp.py``; ``optimize(...,
method="lp")`` stays the cvxpy model.
"""

from __future__ import annotations

import numpy as np

from optimizer.formulation.cutting_plane import CutMaster, master_options
from optimizer.formulation.problem import AllocationProblem
from optimizer.formulation.tail_oracle import TailOracle


def scenario_rates(oracle: TailOracle, cols: np.ndarray) -> np.ndarray:
    """Each scenario's loss per unit of each exposure column, ``r_col(ω) = a(ω) f(ℓ_j(ω))``.

    Parameters
    ----------
    oracle : TailOracle
    cols : ndarray of int, shape (n,)
        Exposure columns (a measure's ``cols``).

    Returns
    -------
    ndarray of shape (S, n), float64: ``L_k(ω) = rates[ω] @ e[cols]``.
    """
    columns = oracle.columns
    out = np.empty((oracle.losses.shape[0], cols.size))
    for shape in np.unique(columns.shape[cols]):
        sel = np.flatnonzero(columns.shape[cols] == shape)
        cells = columns.cell[cols[sel]]
        block = np.asarray(oracle.losses[:, cells], dtype=np.float64)  # a copy (fancy index)
        out[:, sel] = columns.shapes[shape].of_block(
            block, slice(None), cells, with_coverage=False, in_place=True
        )
    return out


def add_scenario_rows(master: CutMaster, oracle: TailOracle) -> int:
    """Append the whole Rockafellar–Uryasev formulation of every measure to ``master``.

    Per measure ``k``: ``S`` columns ``z_kω >= 0``, ``S`` rows ``z_kω − r(ω)·e_k + t_k >= 0``
    and one row ``η_k − Σ_ω π_ω z_kω >= 0``. The master must be synced (loaded); its next
    :meth:`CutMaster.solve` is the one-LP formulation's. Block columns ``η_kg``, if any, are
    left free to be 0: ``η_k >= Σ_g η_kg`` then binds nothing.

    Returns
    -------
    int
        Non-zeros added.
    """
    highs = master.highs
    n = oracle.losses.shape[0]
    none = np.zeros(0, dtype=np.int32)
    added = 0
    for k, measure in enumerate(master.measures):
        cols = np.asarray(measure.cols)
        rates = scenario_rates(oracle, cols)
        z0 = highs.getNumCol()
        highs.addCols(n, np.zeros(n), np.zeros(n), np.full(n, np.inf), 0, none, none, none)
        held = rates != 0.0  # a contingent fund's rates are 0 outside its events
        counts = held.sum(axis=1) + 2
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        index = np.empty(int(counts.sum()), dtype=np.int32)
        value = np.empty(index.size)
        # each row: z_kω, then t_k, then the exposures with a non-zero rate
        index[starts], value[starts] = z0 + np.arange(n), 1.0
        index[starts + 1], value[starts + 1] = master.t_col[k], 1.0
        rest = np.ones(index.size, dtype=bool)
        rest[starts] = rest[starts + 1] = False
        row, col = np.nonzero(held)
        index[rest], value[rest] = master.expo_cols[cols][col], -rates[row, col]
        highs.addRows(
            n, np.zeros(n), np.full(n, np.inf), index.size, starts.astype(np.int32), index, value
        )
        link = np.concatenate([[master.eta_col[k]], z0 + np.arange(n)]).astype(np.int32)
        highs.addRows(
            1,
            np.zeros(1),
            np.full(1, np.inf),
            link.size,
            np.zeros(1, dtype=np.int32),
            link,
            np.concatenate([[1.0], -oracle.p]),
        )
        added += index.size + link.size
    return added


def solve_one_lp(prob: AllocationProblem, time_limit_s: float | None = None) -> tuple[str, float]:
    """Solve stage 1 of ``prob`` as the one-LP formulation, in its cut master's HiGHS model.

    Parameters
    ----------
    prob : AllocationProblem
        Built with ``cvar_method="cuts"`` and not solved yet (the master gets the scenario
        rows, so it is spent for the cutting plane).
    time_limit_s : float, optional
        HiGHS's time limit for the one solve.

    Returns
    -------
    status : str
        cvxpy's status; on ``"optimal"`` the problem's variables and ``prob.problem.value``
        hold the optimum (the weighted gap, in the problem's units).
    seconds : float
        HiGHS's solve time (building the rows excluded).
    """
    master = prob.cut_master
    if master is None or master.cut_rows:
        raise ValueError("the one-LP formulation needs a problem built with cvar_method='cuts'")
    master.sync(master_options(time_limit_s))
    add_scenario_rows(master, prob.oracle)
    return master.solve()
