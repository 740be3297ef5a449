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

    Per measure ``k``: ``S`` columns ``z_kω >= 0``, ``S`` rows ``z_kω − r(ω)·e_k − Σ_l v_lω +
    t_k >= 0`` and one row ``η_k − Σ_ω π_ω z_kω >= 0``; per link ``l`` of some measure (claims
    a fund cannot pay, :class:`~optimizer.formulation.cut_measures.Link`) ``S`` columns
    ``v_lω >= 0`` and rows ``v_lω − C_g(ω) + K_l >= 0``. The master must be synced (loaded); its next
    :meth:`CutMaster.solve` is the one-LP formulation's. Block columns ``η_kg``, if any, are
    left free to be 0: ``η_k >= Σ_g η_kg`` then binds nothing.

    Returns
    -------
    int
        Non-zeros added.
    """
    highs = master.highs
    n = oracle.losses.shape[0]
    added = 0
    # a link (C_g − K)+: S columns v_ω >= 0 with v_ω − C_g(ω) + K >= 0, shared by its measures
    link_col: dict[tuple, int] = {}
    for link in (x for m in master.measures for x in m.links):
        if link.key not in link_col:
            link_col[link.key] = highs.getNumCol()
            capital = master.expo_cols[np.asarray(link.cap_cols, dtype=np.int64)]
            added += _add_rows(master, oracle, link.fund_cols, [], capital)
    for k, measure in enumerate(master.measures):
        links = [link_col[link.key] for link in measure.links]
        added += _add_rows(master, oracle, np.asarray(measure.cols), links, [master.t_col[k]])
        z0 = highs.getNumCol() - n
        eta_row = np.concatenate([[master.eta_col[k]], z0 + np.arange(n)]).astype(np.int32)
        highs.addRows(
            1,
            np.zeros(1),
            np.full(1, np.inf),
            eta_row.size,
            np.zeros(1, dtype=np.int32),
            eta_row,
            np.concatenate([[1.0], -oracle.p]),
        )
        added += eta_row.size
    return added


def _add_rows(
    master: CutMaster,
    oracle: TailOracle,
    cols: np.ndarray,
    links: list[int],
    extra: np.ndarray | list[int],
) -> int:
    """S new columns ``y_ω >= 0`` and S rows ``y_ω − r(ω)·e_cols − Σ_l v_lω + Σ extra >= 0``,
    ``links`` the first columns of the links' ``v_l``, ``extra`` HiGHS columns (``t_k`` for a
    measure's rows, the fund's capital for a link's). Returns the non-zeros added."""
    highs = master.highs
    n = oracle.losses.shape[0]
    none = np.zeros(0, dtype=np.int32)
    rates = scenario_rates(oracle, cols)
    y0 = highs.getNumCol()
    highs.addCols(n, np.zeros(n), np.zeros(n), np.full(n, np.inf), 0, none, none, none)
    extra = np.asarray(extra, dtype=np.int64)
    held = rates != 0.0  # a contingent fund's rates are 0 outside its events
    fixed = 1 + len(links) + extra.size
    counts = held.sum(axis=1) + fixed
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    index = np.empty(int(counts.sum()), dtype=np.int32)
    value = np.empty(index.size)
    # each row: y_ω, the links' v_lω, t_k or the capital columns, then the non-zero rates
    index[starts], value[starts] = y0 + np.arange(n), 1.0
    for i, v0 in enumerate(links):
        index[starts + 1 + i], value[starts + 1 + i] = v0 + np.arange(n), -1.0
    for i, col in enumerate(extra):
        index[starts + 1 + len(links) + i], value[starts + 1 + len(links) + i] = col, 1.0
    rest = np.ones(index.size, dtype=bool)
    for i in range(fixed):
        rest[starts + i] = False
    row, col = np.nonzero(held)
    index[rest], value[rest] = master.expo_cols[cols][col], -rates[row, col]
    highs.addRows(
        n, np.zeros(n), np.full(n, np.inf), index.size, starts.astype(np.int32), index, value
    )
    return int(index.size)


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
