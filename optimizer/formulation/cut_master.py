"""The cutting-plane master: the compiled cvxpy LP in a persistent HiGHS model, plus its cut rows.

:class:`CutMaster` canonicalises the scenario-free cvxpy problem once, loads it into HiGHS,
appends aggregated cut rows in place (so HiGHS re-optimises from its last basis), pools idle
rows and puts them back when violated, and unpacks solutions and duals into cvxpy.
:class:`~optimizer.formulation.cut_pool.CutPool` is a solved master's cuts and basis, to start
another solve from (:mod:`optimizer.formulation.cut_pool`, with the HiGHS settings). The loop
that asks for cuts is :mod:`optimizer.formulation.cut_loop`; the method as a whole is described in
:mod:`optimizer.formulation.cutting_plane`.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy import settings as status_codes
from cvxpy.error import SolverError

from optimizer.errors import OptimizerError
from optimizer.formulation.cut_measures import CutMeasure
from optimizer.formulation.cut_pool import CutPool
from optimizer.formulation.cuts import Cut

SCALED_RETRY_STRATEGY = 2
"""HiGHS's ``simplex_scale_strategy`` for a master's last attempt (2: HiGHS's default)."""


class CutMaster:
    """The cvxpy problem's LP in a persistent HiGHS model, plus the cut rows found so far.

    The cvxpy problem is canonicalised once (DPP); after a parameter change :meth:`sync`
    re-applies the parameters, updates costs and bounds in place (or reloads the model when a
    matrix coefficient moved) and re-adds every cut, keeping the last basis. Solutions and the
    duals of the cvxpy rows are unpacked into the cvxpy variables and constraints, so the rest
    of the optimizer reads them as after ``problem.solve``.

    With ``groups > 1`` each measure's ``η_k`` is split as ``η_k >= Σ_g η_kg`` over columns the
    engine adds after cvxpy's, one per scenario block, and a cut of block ``g`` bounds ``η_kg``
    (partially aggregated multi-cut: a relaxation still, as each ``η_kg`` can take its block's
    exact tail excess).

    Parameters
    ----------
    problem : cvxpy Problem
        DPP; every CVaR appears as ``measure.estimate`` with ``η`` free of other rows.
    measures : list of CutMeasure
    expo : cvxpy Variable
        The net exposure columns the measures' ``cols`` index.
    groups : int, default 1
        Scenario blocks per measure (see :func:`optimizer.formulation.cuts.group_bounds`).
    """

    def __init__(
        self,
        problem: cp.Problem,
        measures: list[CutMeasure],
        expo: cp.Variable,
        groups: int = 1,
    ):
        import highspy

        self._hs = highspy
        self.problem, self.measures, self.groups = problem, measures, int(groups)
        # (measure, block or -1 for η_k itself, coefficients on e_k, tail probability)
        self.cut_rows: list[tuple[int, int, np.ndarray, float]] = []
        self._idle = np.zeros(0, dtype=np.int64)  # solves each cut row has been inactive
        self.pool: list[tuple[int, int, np.ndarray, float]] = []  # dropped cut rows
        self._pool_rows: sp.csr_matrix | None = None
        self.highs: highspy.Highs | None = None
        self._data_key: tuple | None = None
        self._n_base_rows = self._n_base_cols = 0
        self.group_col = np.zeros((len(measures), 0), dtype=np.int64)
        self.cold_restarts = 0
        self._start_basis: tuple[tuple, tuple] | None = None  # a pool's, for the next load
        status = highspy.HighsModelStatus
        self._no_answer_statuses = {status.kUnknown, status.kSolveError, status.kPostsolveError}
        data = self._fetch()
        offsets = data[cp.settings.PARAM_PROB].var_id_to_col
        # cvxpy drops a zero-sized variable (no lending anywhere): then no cut has columns
        self.expo_cols = offsets.get(expo.id, 0) + np.arange(expo.size if expo.id in offsets else 0)
        self.t_col = np.array([offsets[m.t.id] for m in measures])
        self._row_cols = [m.row_cols for m in measures]
        self.eta_col = np.array([offsets[m.eta.id] for m in measures])

    def _fetch(self) -> dict:
        self.data, self.chain, self.inverse = self.problem.get_problem_data(
            cp.HIGHS, canon_backend="CPP"
        )
        return self.data

    def sync(self, options: dict) -> None:
        """Load the current parameter values into the HiGHS model (compiled problem re-used)."""
        data = self._fetch()
        dims = data[cp.settings.DIMS]
        a = data[cp.settings.A].tocsc()
        c, b = np.asarray(data[cp.settings.C], dtype=float), np.asarray(data[cp.settings.B])
        lower = np.concatenate([b[: dims.zero], np.full(b.size - dims.zero, -np.inf)])
        key = (a.shape, a.indptr.tobytes(), a.indices.tobytes(), a.data.tobytes())
        if self.highs is not None and key == self._data_key:
            n = c.size
            self.highs.changeColsCost(n, np.arange(n, dtype=np.int32), c)
            m = b.size
            self.highs.changeRowsBounds(m, np.arange(m, dtype=np.int32), lower, b)
        else:
            basis = self.highs.getBasis() if self.highs is not None else None
            self._load(data, a, c, lower, b)
            if basis is not None and basis.valid:
                self.highs.setBasis(basis)
            elif basis is None and self._start_basis is not None:
                cols, rows = self._start_basis
                # a pool of another build of the problem may not fit: its cuts do, not its basis
                if len(cols) == self.highs.getNumCol() and len(rows) == self.highs.getNumRow():
                    self.highs.setBasis(self._basis(cols, rows))
            self._start_basis = None
            self._data_key = key
        for name, value in options.items():
            self.highs.setOptionValue(name, value)

    def _load(self, data: dict, a: sp.csc_matrix, c, lower, upper) -> None:
        hs = self._hs
        highs = hs.Highs()
        highs.setOptionValue("output_flag", False)
        model = hs.HighsModel()
        lp = model.lp_
        lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
        lp.offset_ = 0
        lp.col_cost_ = c
        lp.row_lower_, lp.row_upper_ = lower, upper
        lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        lb, ub = data[cp.settings.LOWER_BOUNDS], data[cp.settings.UPPER_BOUNDS]
        lp.col_lower_ = np.full(a.shape[1], -np.inf) if lb is None else lb
        lp.col_upper_ = np.full(a.shape[1], np.inf) if ub is None else ub
        highs.passModel(model)
        self.highs, self._n_base_rows, self._n_base_cols = highs, a.shape[0], a.shape[1]
        if self.groups > 1:
            self._add_group_columns()
        self._add_rows(self.cut_rows)

    def _basis(self, col_status: tuple, row_status: tuple):
        basis = self._hs.HighsBasis()
        basis.col_status, basis.row_status = list(col_status), list(row_status)
        basis.valid = True
        return basis

    def _add_group_columns(self) -> None:
        """``η_kg >= 0`` per measure and block, and ``η_k − Σ_g η_kg >= 0`` per measure."""
        n_k, g = len(self.measures), self.groups
        self.group_col = self._n_base_cols + np.arange(n_k * g).reshape(n_k, g)
        none = np.zeros(0, dtype=np.int32)
        self.highs.addCols(
            n_k * g,
            np.zeros(n_k * g),
            np.zeros(n_k * g),
            np.full(n_k * g, np.inf),
            0,
            none,
            none,
            np.zeros(0),
        )
        index = np.column_stack([self.eta_col, self.group_col]).astype(np.int32)
        value = np.tile(np.concatenate([[1.0], -np.ones(g)]), n_k)
        self.highs.addRows(
            n_k,
            np.zeros(n_k),
            np.full(n_k, np.inf),
            index.size,
            np.arange(0, index.size, g + 1, dtype=np.int32),
            index.ravel(),
            value,
        )

    def _row_arrays(
        self, rows: list[tuple[int, int, np.ndarray, float]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row starts, column indices and values of cut rows ``η − g·e_k + P·t_k``.

        A measure whose row columns repeat (a fund's claims both in its loss and in a link)
        gets each column once, its coefficients added: HiGHS refuses a row that names a
        column twice."""
        starts, index, value = [], [], []
        n = 0
        for k, block, coef, prob in rows:
            eta = self.eta_col[k] if block < 0 else self.group_col[k, block]
            cols, neg = self._row_cols[k], -coef
            if cols.size != np.unique(cols).size:
                cols, where = np.unique(cols, return_inverse=True)
                neg = np.bincount(where, neg, minlength=cols.size)
            idx = np.concatenate([[eta, self.t_col[k]], self.expo_cols[cols]])
            val = np.concatenate([[1.0, prob], neg])
            keep = val != 0.0
            keep[0] = True
            starts.append(n)
            index.append(idx[keep])
            value.append(val[keep])
            n += int(keep.sum())
        return (
            np.array(starts, dtype=np.int32),
            np.concatenate(index).astype(np.int32),
            np.concatenate(value),
        )

    def _add_rows(self, rows: list[tuple[int, int, np.ndarray, float]]) -> None:
        """Append cut rows ``η − g·e_k + P·t_k >= 0`` (η the measure's or its block's)."""
        if not rows:
            return
        starts, index, value = self._row_arrays(rows)
        self.highs.addRows(
            len(rows),
            np.zeros(len(rows)),
            np.full(len(rows), np.inf),
            index.size,
            starts,
            index,
            value,
        )

    def reset(self) -> None:
        """Forget every cut; the model is reloaded from the compiled problem at the next sync."""
        self.cut_rows, self._idle, self.highs = [], np.zeros(0, dtype=np.int64), None
        self.pool, self._pool_rows, self._start_basis = [], None, None

    def snapshot(self) -> CutPool:
        """The cuts of the last solve and its basis, to start other solves from (:meth:`start`).

        Only the rows binding at the last solve stay in the model; the others go to the pool.
        A basic row's removal leaves the basis valid, so the basis is kept for the rows kept.

        Returns
        -------
        CutPool
            Empty of rows (the pool only, no basis) when the model was not loaded since the
            last :meth:`reset`.
        """
        if self.highs is None:
            return CutPool((), tuple(self.pool), None)
        first = self._n_base_rows + (len(self.measures) if self.groups > 1 else 0)
        basis = self.highs.getBasis()
        rows = list(basis.row_status)
        cut_basic = np.array([s == self._hs.HighsBasisStatus.kBasic for s in rows[first:]])
        keep = np.flatnonzero(~cut_basic) if cut_basic.size else np.zeros(0, dtype=np.int64)
        active = tuple(self.cut_rows[i] for i in keep)
        idle = tuple(row for i, row in enumerate(self.cut_rows) if cut_basic[i]) + tuple(self.pool)
        status = (
            tuple(basis.col_status),
            tuple(rows[:first]) + tuple(rows[first + i] for i in keep),
        )
        return CutPool(active, idle, status if basis.valid else None)

    def start(self, pool: CutPool) -> None:
        """Forget the current cuts and start the next solve from ``pool``'s (see
        :class:`CutPool`); the model is reloaded from the compiled problem at the next sync.

        Raises
        ------
        OptimizerError
            The pool's cuts belong to a problem with other CVaR measures or scenario blocks.
        """
        sizes = [m.row_cols.size for m in self.measures]
        for k, block, coef, _ in pool.rows + pool.pool:
            if k >= len(sizes) or coef.size != sizes[k] or block >= max(self.groups, 1):
                raise OptimizerError(
                    "this cut pool was taken from a problem with other CVaR measures or "
                    "scenario blocks: take it from a problem built on the same case structure "
                    "and scenario set (build_problem with the same scenarios)"
                )
        self.reset()
        self.cut_rows = list(pool.rows)
        self._idle = np.zeros(len(self.cut_rows), dtype=np.int64)
        self.pool = list(pool.pool)
        self._start_basis = pool.basis

    def drop_idle_cuts(self, after: int, at_least: int) -> int:
        """Delete cut rows whose slack has been basic (the cut inactive) for ``after``
        consecutive solves, once there are ``at_least`` of them; returns how many went.

        Only basic rows go, so the basis stays valid; a cut is a relaxation row, so dropping it
        never cuts off the optimum. Dropped rows wait in ``pool`` (see
        :meth:`restore_violated_cuts`)."""
        first = self._n_base_rows + (len(self.measures) if self.groups > 1 else 0)
        status = self.highs.getBasis().row_status[first:]
        basic = np.fromiter((s == self._hs.HighsBasisStatus.kBasic for s in status), bool)
        self._idle = np.where(basic, self._idle + 1, 0)
        idle = np.flatnonzero(self._idle >= after)
        if idle.size < at_least:
            return 0
        self.highs.deleteRows(idle.size, (first + idle).astype(np.int32))
        keep = np.ones(len(self.cut_rows), dtype=bool)
        keep[idle] = False
        self.pool += [row for row, k in zip(self.cut_rows, keep, strict=True) if not k]
        self._pool_rows = None
        self.cut_rows = [row for row, k in zip(self.cut_rows, keep, strict=True) if k]
        self._idle = self._idle[keep]
        return int(idle.size)

    def restore_violated_cuts(self, tolerance: float) -> int:
        """Put back dropped cuts that the master's current point violates by more than
        ``tolerance``; returns how many. Checking them is one sparse product, where finding
        them again would take a pass over the scenarios."""
        if not self.pool:
            return 0
        if self._pool_rows is None:
            starts, index, value = self._row_arrays(self.pool)
            indptr = np.append(starts, index.size)
            shape = (len(self.pool), self.highs.getNumCol())
            self._pool_rows = sp.csr_matrix((value, index, indptr), shape=shape)
        x = np.asarray(self.highs.getSolution().col_value)
        back = np.flatnonzero(self._pool_rows @ x < -tolerance)
        if not back.size:
            return 0
        rows = [self.pool[i] for i in back]
        keep = np.ones(len(self.pool), dtype=bool)
        keep[back] = False
        self.pool = [row for row, k in zip(self.pool, keep, strict=True) if k]
        self._pool_rows = self._pool_rows[keep]
        self._append(rows)
        return int(back.size)

    def rows_of(self, cuts: list[Cut]) -> list[tuple[int, int, np.ndarray, float]]:
        """Cuts as this master's rows ``(measure, block, coefficients, tail probability)``: a
        block's cut bounds its block's ``η_kg`` when the master is split, else ``η_k`` (-1)."""
        split = self.groups > 1
        return [
            (
                cut.measure,
                cut.group if split else -1,
                np.asarray(cut.coef, dtype=float),
                float(cut.tail_probability),
            )
            for cut in cuts
        ]

    def add_cuts(self, cuts: list[Cut]) -> None:
        """Append cuts (:meth:`rows_of`)."""
        self._append(self.rows_of(cuts))

    def _append(self, rows: list[tuple[int, int, np.ndarray, float]]) -> None:
        self.cut_rows.extend(rows)
        self._idle = np.concatenate([self._idle, np.zeros(len(rows), dtype=np.int64)])
        self._add_rows(rows)

    def solve(self, retry: bool = True) -> tuple[str, float]:
        """Run HiGHS; unpack values and duals into cvxpy. Returns (cvxpy status, seconds).

        With ``retry``, a warm start that ends without an answer is run again once from scratch
        (counted in ``cold_restarts``), then once more with HiGHS's scaling
        (:meth:`_run_scaled`). Measured at 10^6 scenarios: after stage 1's last cuts the dual
        simplex from the kept basis stopped with status unknown (dual infeasibilities of ~800
        it could not remove); the same model from scratch, presolved, solved in 0.65 s.
        """
        highs = self.highs
        start = time.perf_counter()
        run_status = highs.run()
        if retry and self._no_answer(run_status):
            self.cold_restarts += 1
            highs.clearSolver()  # drops the basis and factorisation, keeps the model
            run_status = highs.run()
        if retry and self._no_answer(run_status):
            run_status = self._run_scaled()
        seconds = time.perf_counter() - start
        status_name = highs.getModelStatus().name
        if self._no_answer(run_status):
            return status_codes.SOLVER_ERROR, seconds
        solution = highs.getSolution()
        results = {
            # only the cvxpy rows' duals go back to cvxpy; the cut rows are the engine's own
            "solution": SimpleNamespace(
                col_value=list(solution.col_value)[: self._n_base_cols],
                row_dual=list(solution.row_dual)[: self._n_base_rows],
            ),
            "info": highs.getInfo(),
            "model_status": status_name,
            "run_time": seconds,
        }
        if status_name == "kInfeasible":
            results["dual_ray"] = (None, None, np.zeros(self._n_base_rows))
        try:
            self.problem.unpack_results(results, self.chain, self.inverse)
        except (SolverError, ValueError):  # cvxpy refuses a solution it cannot read
            return status_codes.SOLVER_ERROR, seconds
        return str(self.problem.status), seconds

    def _run_scaled(self):
        """One more run from scratch with HiGHS's own scaling, for a master whose cut rows span
        too many orders of magnitude unscaled (measured: a held replication of the default case
        at 300 importance-sampled scenarios, cut coefficients from 1e-9 to 1, status unknown
        twice unscaled, optimal in 1 s scaled). Scaling stays off otherwise: it slows the
        dense rows of larger cases (:data:`~optimizer.formulation.cut_pool.MASTER_OPTIONS`)."""
        highs = self.highs
        kept = highs.getOptionValue("simplex_scale_strategy")
        kept = kept[1] if isinstance(kept, tuple) else kept  # (status, value) in some highspy
        highs.clearSolver()
        highs.setOptionValue("simplex_scale_strategy", SCALED_RETRY_STRATEGY)
        try:
            return highs.run()
        finally:
            highs.setOptionValue("simplex_scale_strategy", kept)

    def _no_answer(self, run_status) -> bool:
        model = self.highs.getModelStatus()
        return run_status == self._hs.HighsStatus.kError or model in self._no_answer_statuses
