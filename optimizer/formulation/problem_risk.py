"""The risk rows of the allocation LP: funders' CVaR and expected-loss limits, fund depletion.

Scenario losses reach the problem through net exposure columns
(:class:`~optimizer.formulation.exposures.ExposureColumns`), not ``x`` and ``z``: half the
non-zeros, and the dual simplex needed ~8x fewer iterations on the default case. Each CVaR is
written by the problem's CVaR mode (:mod:`optimizer.formulation.problem_cvar`): scenario rows in the
one-LP mode, a cut measure in the cut mode. Rows are in US$m, registered on the
:class:`~optimizer.formulation.problem_rows.RowBuilder`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from models.schema import GuaranteeFund
from optimizer.formulation.attribution import capital_layers
from optimizer.formulation.cut_measures import Link
from optimizer.formulation.exposures import ExposureColumns, exposure_columns
from optimizer.formulation.problem_cvar import CutCvar, ScenarioRowsCvar
from optimizer.formulation.problem_rows import USD_PER_UNIT, RowBuilder, _stack


@dataclass(frozen=True, eq=False)
class RiskRows:
    """What the risk families leave for the problem beyond their rows.

    Attributes
    ----------
    columns : ExposureColumns
    expo : cvxpy Variable of shape (n_cols,)
        The net exposure columns, ``expo == from_x @ x + from_z @ z`` (US$m).
    cvar_scale : cvxpy Parameter of shape (n_cvar_limited,) or None
        A scale on each source's CVaR limit (1 by default).
    fund_tail_factor : cvxpy Parameter of shape (n_depletion_funds,) or None
        ``1 / ε_g`` of each fund in ``depletion_funds``.
    depletion_funds : tuple of str
        The funds that cover something, whose claims CVaR is held within their capital.
    """

    columns: ExposureColumns
    expo: cp.Variable
    cvar_scale: cp.Parameter | None
    fund_tail_factor: cp.Parameter | None
    depletion_funds: tuple[str, ...]


def add_risk_families(b: RowBuilder, cvar: ScenarioRowsCvar | CutCvar) -> RiskRows:
    """Register CVaR limits, expected-loss limits and fund depletion on ``b``.

    Parameters
    ----------
    b : RowBuilder
        Its variables and totals are read; the families, the exposure identity (in
        ``b.internal``) and any depletion warning are added to it.
    cvar : ScenarioRowsCvar or CutCvar
        Writes each CVaR (and keeps its own rows or measures).

    Returns
    -------
    RiskRows
    """
    e = b.e
    commit = b.lend + b.capital
    cols = exposure_columns(e, b.claims, len(b.cells))
    expo = cp.Variable(cols.owner.size, name="net_exposure")
    b.internal.append(expo == cols.from_x @ b.x + cols.from_z @ b.z + cols.from_c @ b.c)
    losses = source_losses(b, cols)

    def scenario_loss(position: int, *, fund: bool) -> cp.Expression | tuple:
        if fund:
            return cvar.loss(cols, expo, cols.owned(position, fund=True))
        return cvar.loss(cols, expo, *losses[position].whole())

    cvar_scale = _cvar_limits(b, cvar, scenario_loss, commit)
    funds = sorted(set(e.z_fund.tolist()))
    depletion_funds = tuple(b.fund_ids[g] for g in funds)
    fund_tail_factor = _fund_depletion(b, cvar, scenario_loss, funds) if funds else None
    # expectations of links after every CVaR: the cut mode's measures keep their order
    _expected_loss_limits(b, losses, lambda link, name: cvar.expectation(cols, expo, link, name))
    return RiskRows(cols, expo, cvar_scale, fund_tail_factor, depletion_funds)


@dataclass(frozen=True)
class SourceLoss:
    """What a source's losses are made of in the LP, a convex bound on its attributed loss.

    ``L_s = Σ_{lending} r e + Σ_{shortfall} (C_g − K_g)+ + Σ_{junior} C_g + Σ_{senior}
    (C_g − A_sg)+``: its lending net of cover, all the claims of each fund covering it that the
    fund cannot pay (its pro-rata share of them is at most that), the claims of each fund whose
    junior capital layer it sits in, and of each fund where it is senior the claims beyond the
    layers junior to it. Exact for a sole covered lender and a sole provider per layer while
    claims stay within the fund (:mod:`optimizer.formulation.attribution` gives the exact
    split after the solve).

    Attributes
    ----------
    lending : ndarray of int
        Its own exposure columns.
    shortfall : tuple of Link
        ``(C_g − K_g)+`` of each fund covering it.
    junior : tuple of int
        Funds whose claims it bears from the first dollar (their claim columns in the loss).
    junior_cols : ndarray of int
    senior : tuple of Link
        ``(C_g − A_sg)+`` of each fund where it is senior.
    """

    lending: np.ndarray
    shortfall: tuple[Link, ...]
    junior: tuple[int, ...]
    junior_cols: np.ndarray
    senior: tuple[Link, ...]

    def whole(self) -> tuple[np.ndarray, tuple[Link, ...]]:
        """Columns and links of all its losses."""
        return np.concatenate([self.lending, self.junior_cols]), self.shortfall + self.senior


def source_losses(b: RowBuilder, cols: ExposureColumns) -> list[SourceLoss]:
    """Each source's :class:`SourceLoss`, in ``case.sources`` order."""
    case, e = b.case, b.e
    out = []
    for s in range(len(case.sources)):
        shortfall = tuple(
            Link(g, cols.owned(g, fund=True), cols.capital_of(g))
            for g in sorted(set(e.z_fund[e.z_source == s].tolist()))
        )
        junior, senior = [], []
        for g in sorted(set(e.c_fund[e.c_source == s].tolist())):
            layers = capital_layers(case, case.funds[g])
            below = next(k for k, layer in enumerate(layers) if s in layer)
            if below == 0:
                junior.append(g)
            else:
                ahead = np.concatenate(layers[:below])
                senior.append(Link(g, cols.owned(g, fund=True), cols.capital_of(g, ahead)))
        junior_cols = np.concatenate(
            [cols.owned(g, fund=True) for g in junior] + [np.zeros(0, dtype=np.int64)]
        )
        out.append(
            SourceLoss(
                cols.owned(s, fund=False), shortfall, tuple(junior), junior_cols, tuple(senior)
            )
        )
    return out


def _cvar_limits(
    b: RowBuilder,
    cvar: ScenarioRowsCvar | CutCvar,
    scenario_loss: Callable[..., cp.Expression | np.ndarray],
    commit: cp.Expression,
) -> cp.Parameter | None:
    """``CVaR_α(L_s) <= scale_s · limit_s`` for each source with a CVaR level; the scales."""
    case = b.case
    limited, ids = b.where(case.sources, lambda s: s.cvar_alpha is not None)
    # a scale per limit (parameter, 1 by default): frontiers sweep risk appetite in place
    cvar_scale = (
        cp.Parameter(
            len(limited), nonneg=True, name="cvar_limit_scale", value=np.ones(len(limited))
        )
        if limited
        else None
    )
    if limited:
        lhs, rhs = [], []
        for i, s in enumerate(limited):
            src = case.sources[s]
            lhs.append(cvar.cvar(scenario_loss(s, fund=False), src.cvar_alpha, src.id))
            if src.cvar_limit_usd is not None:
                rhs.append(cvar_scale[i] * (src.cvar_limit_usd / USD_PER_UNIT))
            else:
                rhs.append(cvar_scale[i] * (src.cvar_limit_share * commit[s]))
        cvar.hold(rhs)
        labels = [
            f"CVaR{_pct(case.sources[s].cvar_alpha)} loss limit of {i}"
            for s, i in zip(limited, ids, strict=True)
        ]
        b.add(
            "cvar_limit",
            _stack(lhs),
            _stack(rhs),
            commit[limited],
            ids,
            labels,
            "US$1 more CVaR allowance for {}",
        )
    return cvar_scale


def _expected_loss_limits(
    b: RowBuilder,
    losses: list[SourceLoss],
    expectation: Callable[[Link, str], cp.Expression],
) -> None:
    """``E[L_s] <= rate_s · (lending_s + capital_s)`` for each source with an expected-loss
    limit, ``L_s`` all its losses (:class:`SourceLoss`); each lender's expected share of
    unpaid claims for the return hurdle (``b.expected_unpaid``)."""
    case = b.case

    def unpaid(links: tuple[Link, ...]) -> cp.Expression | float:
        terms = [expectation(link, f"unpaid_{b.fund_ids[link.fund]}") for link in links]
        return cp.sum(cp.hstack(terms)) if terms else 0.0

    for s, src in enumerate(case.sources):
        if src.return_hurdle_rate is not None:
            b.expected_unpaid[s] = unpaid(losses[s].shortfall)
    el, ids = b.where(case.sources, lambda s: s.expected_loss_limit_rate is not None)
    if el:
        rate = np.array([case.sources[s].expected_loss_limit_rate for s in el])
        whole = []
        for s in el:
            loss = losses[s]
            beyond = [
                expectation(link, f"senior_{b.fund_ids[link.fund]}_{b.src_ids[s]}")
                for link in loss.senior
            ]
            junior = cp.sum(b.expected_claims[list(loss.junior)]) if loss.junior else 0.0
            whole.append(b.expected_loss[s] + unpaid(loss.shortfall) + junior + sum(beyond))
        at_risk = b.lend[el] + b.capital[el]
        b.add(
            "expected_loss_limit",
            _stack(whole),
            cp.multiply(rate, at_risk),
            at_risk,
            ids,
            "expected-loss limit of {} (share of its lending and fund capital)",
            "US$1 more expected-loss allowance for {}",
        )


def _fund_depletion(
    b: RowBuilder,
    cvar: ScenarioRowsCvar | CutCvar,
    scenario_loss: Callable[..., cp.Expression | np.ndarray],
    funds: list[int],
) -> cp.Parameter:
    """``CVaR_{1−ε_g}(C_g) <= capital_g`` for each covering fund; the ``1/ε_g`` parameter."""
    case = b.case
    eps = np.array([_depletion_level(b, case.funds[g]) for g in funds])
    # 1/ε as a parameter, so a frontier sweeps the depletion probability in place
    fund_tail_factor = cp.Parameter(len(funds), pos=True, name="fund_tail_factor", value=1.0 / eps)
    lhs = [
        cvar.cvar(scenario_loss(g, fund=True), 1.0 - eps[i], case.funds[g].id, fund_tail_factor[i])
        for i, g in enumerate(funds)
    ]
    cvar.hold([b.fund_capital[g] for g in funds])
    b.add(
        "fund_depletion",
        _stack(lhs),
        b.fund_capital[funds],
        b.fund_capital[funds],
        [b.fund_ids[g] for g in funds],
        [
            f"depletion of fund {b.fund_ids[g]}: CVaR{_pct(1 - eps[i])} of claims within capital"
            for i, g in enumerate(funds)
        ],
        "US$1 more claims-CVaR allowed at {}",
    )
    return fund_tail_factor


def _depletion_level(b: RowBuilder, fund: GuaranteeFund) -> float:
    """The fund's ε, or the smallest scenario probability when ε is below it (warned).

    ``CVaR_{1−ε}`` is the worst scenario's claims for every allocation once ε is at most
    the probability of each scenario: a smaller ε says nothing more on these scenarios,
    and its ``1/ε`` (up to 1e300 for a valid case) would only break the solver.
    """
    eps = float(fund.max_depletion_probability)
    if eps >= b.depletion_floor:
        return eps
    n = b.scen.n_scenarios
    b.warnings.append(
        f"fund {fund.id}: max_depletion_probability {eps:.3g} is below the smallest "
        f"scenario probability {b.depletion_floor:.3g} ({n:,} scenarios), so no "
        "scenario set of this size can measure it: its claims CVaR is taken as the worst "
        f"scenario's claims (level 1 − {b.depletion_floor:.3g}); about {_needed(eps)} "
        "scenarios would be needed to hold the fund to the probability as written"
    )
    return b.depletion_floor


def _needed(eps: float) -> str:
    """``1/ε`` scenarios, written for a message (1e300 stays readable)."""
    need = 1.0 / eps
    return f"{math.ceil(need):,}" if need < 1e9 else f"{need:.1g}"


def _pct(level: float) -> str:
    return f"{level * 100:g}%"
