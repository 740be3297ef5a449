"""Limits that hold out of sample: tighten each risk limit by its Monte Carlo error, re-solve.

An optimum sits exactly on its binding limits as the scenarios measure them; the true risk of
that allocation is the in-sample figure plus Monte Carlo error (and the optimiser leans on the
scenarios that happen to be mild), so about half of the binding limits break on an independent
scenario set. :func:`optimize_with_confidence` asks instead that the one-sided upper confidence
bound of every risk figure be within its limit,

    value + z(c) · SE <= limit        (z(0.95) = 1.645),

by tightening each limit of the case by ``z · SE`` measured at the current optimum and solving
again, until the margins are stable: a fixed point of "margin = z times the standard error of
the allocation it produces" (one or two margined solves). Should the standard errors themselves
be too noisy for that (few tail scenarios), after :data:`FREE_SOLVES` solves a margin is only
ever raised, never lowered, and the loop stops once every limit holds at the confidence: a
margin may so end up somewhat above ``z`` SEs, never below.

That holds at the nominal level for an allocation chosen without looking at the scenarios;
the optimum is chosen *because* its scenarios are mild (the optimiser's curse), so its true
risk sits above the in-sample figure and ``z · SE`` margins hold less often than ``c`` (15 %
breaches at 0.95 on the small case of ``tests/test_confidence.py``). Given ``validation``, an
independent scenario set of the same size, each margined allocation is also evaluated there,
where its figures are unbiased (the allocation did not see those draws), and each limit is held
so that the validation's bound ``value_v + z · SE_v`` is within it: the margin is ``z · SE_v``
plus the in-sample figure's optimism ``value_v − value``, at the same fixed point and ratchet
(5 % breaches on that case). It costs one evaluation per solve and the validation set's draw.

The limits concerned are the random ones (:data:`optimizer.analysis.margins.LIMIT_FAMILIES`): CVaR
limits, expected-loss limits, private return hurdles (their net income subtracts an expected
loss) and fund depletion (claims CVaR at ``1 − ε`` within capital). The tightened limits are written back into a case
(the same validated :class:`~models.schema.Case`, limits changed), so every solver, fallback and
warning of :func:`optimizer.optimize` applies unchanged; the answer's risk tables are then priced
against the case's own limits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from models.errors import OptionError
from models.scenarios import ScenarioSet
from models.schema import Case
from optimizer.analysis.evaluate import Evaluation, evaluate
from optimizer.analysis.margins import (
    MARGIN_COLUMNS,
    STABLE_SE,
    applied_margins,
    limit_key,
    limit_room,
    limit_rows,
    limit_tolerance,
    margin_table,
    margin_targets,
    tightened_case,
)
from optimizer.errors import InfeasibleCase
from optimizer.formulation.exposures import check_cells, fund_claims
from optimizer.result import Allocation

__all__ = [
    "FREE_SOLVES",
    "MARGIN_COLUMNS",
    "MAX_SOLVES",
    "STABLE_SE",
    "VALIDATION_SEED_OFFSET",
    "ConfidenceInfeasible",
    "HeldLimits",
    "LimitConfidence",
    "held_case",
    "hold_limits",
    "optimize_with_confidence",
    "resolve_confidence",
]

VALIDATION_SEED_OFFSET = 2_000_029
"""The validation set of a run is drawn at ``seed + VALIDATION_SEED_OFFSET``: independent of
the headline (``seed``) and of the out-of-sample check (``seed + 1,000,003``), which must
not have shaped the allocation it judges."""
MAX_SOLVES = 6
"""Margined solves at most; margins are usually stable after two."""
FREE_SOLVES = 2
"""Margined solves whose margins may move either way; later ones only raise them."""


@dataclass(frozen=True, eq=False)
class LimitConfidence:
    """How the allocation was held to its limits at a confidence level, and what it cost.

    Attributes
    ----------
    confidence : float
        e.g. 0.95: each risk limit holds with this confidence on independent scenarios.
    z : float
        The one-sided normal quantile of ``confidence`` (1.645 at 0.95).
    solves : int
        Margined solves done after the unmargined one.
    converged : bool
        Every limit held at the confidence (within :data:`STABLE_SE` SEs) after the last solve.
    margins : DataFrame
        One row per risk limit of the case (columns
        :data:`optimizer.analysis.margins.MARGIN_COLUMNS`), at the returned
        allocation and in US$: ``value_usd`` (in-sample figure), ``limit_usd`` (the case's own
        limit), ``std_error_usd`` (its Monte Carlo SE), ``margin_usd`` (how much tighter than
        ``limit_usd`` the last solve held it; for a ``"min"`` row, the hurdle raised by as
        much), ``margin_in_se``, ``upper_bound_usd = value + z · SE`` (``value − z · SE`` for
        ``"min"``), ``validation_value_usd`` and ``validation_std_error_usd`` (the same
        figure and SE on the validation scenarios; NaN without them), ``binding`` (the
        tightened limit is met with equality) and ``holds`` (the confidence bound is within
        the limit, up to :data:`STABLE_SE` SEs). With validation scenarios, the bound and
        ``holds`` are the validation's: ``value_v + z · SE_v``.
    unmargined_weighted_gap_usd, unmargined_gap_closed_usd : float
        The optimum without margins: stage-1 weighted gap and plain gap closed, US$.
    cost_weighted_gap_usd, cost_gap_closed_usd : float
        What the margins cost: weighted gap added, plain gap closed given up, US$ (>= 0 up to
        the stage-2 tolerance).
    validation_seed, validation_n_scenarios : int or None
        The validation scenario set's seed and size; None when the margins are in-sample
        ``z · SE`` only.
    """

    confidence: float
    z: float
    solves: int
    converged: bool
    margins: pd.DataFrame
    unmargined_weighted_gap_usd: float
    unmargined_gap_closed_usd: float
    cost_weighted_gap_usd: float
    cost_gap_closed_usd: float
    validation_seed: int | None = None
    validation_n_scenarios: int | None = None

    __hash__ = None  # type: ignore[assignment]  # holds a DataFrame

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LimitConfidence):
            return NotImplemented
        return all(
            a.equals(b) if isinstance(a, pd.DataFrame) else a == b
            for a, b in (
                (getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
            )
        )


class ConfidenceInfeasible(InfeasibleCase):
    """The case is feasible, but not with its limits tightened by their Monte Carlo margins."""

    def __init__(self, case_name: str, confidence: float, margins: pd.DataFrame, detail: str):
        super().__init__(case_name, 1, "HIGHS", detail)
        widest = margins.sort_values("margin_usd", ascending=False).head(3)
        named = ", ".join(
            f"{r.owner} {r.what} by US${r.margin_usd / 1e6:,.2f}m" for r in widest.itertuples()
        )
        self.args = (
            f"case {case_name!r} is feasible, but not with its risk limits tightened to hold at "
            f"{confidence:.0%} confidence (widest margins: {named}): lower policy.confidence "
            "(or --confidence), or use more scenarios (margins shrink like 1/sqrt(n))",
        )


def resolve_confidence(case: Case, confidence: float | None) -> float:
    """The confidence to use: ``confidence`` if given, else the case's; 0 means off.

    Raises
    ------
    OptionError
        A ``ValueError``: ``confidence`` is neither 0 nor in [0.5, 0.9999].
    """
    from models.schema import MAX_CONFIDENCE, MIN_CONFIDENCE

    if confidence is None:
        value = case.policy.confidence
        return 0.0 if value is None else float(value)
    value = float(confidence)
    if value == 0.0 or MIN_CONFIDENCE <= value <= MAX_CONFIDENCE:
        return value
    raise OptionError(
        f"confidence must be 0 (off) or between {MIN_CONFIDENCE} and {MAX_CONFIDENCE}, got "
        f"{confidence!r}: e.g. 0.95 holds each risk limit with 95 % confidence out of sample"
    )


@dataclass(frozen=True, eq=False)
class HeldLimits:
    """A margined allocation and the case it is the optimum of.

    ``case`` is the case with the limits the last solve held (the case's own, less their
    margins), exactly as solved: :func:`optimizer.optimize` on it gives ``allocation``'s
    optimum again, so analyses that re-solve around the allocation (marginal values, a
    frontier through it, a sensitivity sweep based on it) start from the headline. It is the
    case itself when no margin was taken.
    """

    allocation: Allocation
    case: Case


def optimize_with_confidence(
    case: Case,
    scenarios: ScenarioSet,
    confidence: float | None = None,
    *,
    solve: Callable[..., Allocation] | None = None,
    validation: ScenarioSet | None = None,
    **options: Any,
) -> Allocation:
    """:func:`optimizer.optimize` with every risk limit holding at ``confidence`` out of sample.

    The allocation of :func:`hold_limits` (which also returns the tightened case).
    """
    held = hold_limits(case, scenarios, confidence, solve=solve, validation=validation, **options)
    return held.allocation


def hold_limits(
    case: Case,
    scenarios: ScenarioSet,
    confidence: float | None = None,
    *,
    solve: Callable[..., Allocation] | None = None,
    validation: ScenarioSet | None = None,
    **options: Any,
) -> HeldLimits:
    """:func:`optimizer.optimize` with every risk limit holding at ``confidence`` out of sample.

    Parameters
    ----------
    case : Case
    scenarios : ScenarioSet
        Losses of shape (n_scenarios, n_cells) for ``case``, with probabilities.
    confidence : float, optional
        0 (off: the plain optimum) or in [0.5, 0.9999]; default ``case.policy.confidence``
        (0.95 unless the case says otherwise).
    solve : callable, optional
        ``solve(case, scenarios, **options) -> Allocation``; default :func:`optimizer.optimize`
        (the CLI passes :func:`optimizer.analysis.diagnose.optimize_or_diagnose`).
    validation : ScenarioSet, optional
        Scenarios for ``case`` drawn independently of ``scenarios`` (same size and method:
        ``seed + VALIDATION_SEED_OFFSET``). Each margined allocation is evaluated on them too,
        and each limit is held so that the *validation's* upper bound ``value_v + z · SE_v``
        is within it: the margin is ``z · SE_v`` plus how much worse the validation measured
        the figure than ``scenarios`` did (the optimiser's curse, which the in-sample figure
        hides). Default none: margins of ``z · SE`` in sample, which hold at less than
        ``confidence`` where the optimiser leans on mild scenarios.
    **options
        Passed to ``solve`` (``solver``, ``method``, ``gap_tolerance``, ``time_limit_s``,
        ``start``: where the unmargined solve begins). Each margined solve starts from the
        cuts of the solve before it (:mod:`optimizer.formulation.warm_start`).

    Returns
    -------
    HeldLimits
        ``allocation``: the margined allocation, its tables priced against the case's own
        limits, with ``confidence`` set to a :class:`LimitConfidence` (None when off; if the
        margins were not stable after :data:`MAX_SOLVES` solves, a warning says so).
        ``case``: the case that allocation is the optimum of.

    Raises
    ------
    InfeasibleCase
        The case itself is infeasible (from the unmargined solve).
    ConfidenceInfeasible
        The case is feasible but not with its limits tightened by their margins.
    OptionError
        A ``ValueError``: ``validation`` has other cells than ``scenarios``.
    """
    level = resolve_confidence(case, confidence)
    if validation is not None and validation.losses.shape[1] != scenarios.losses.shape[1]:
        raise OptionError(
            f"validation has {validation.losses.shape[1]} cells and scenarios "
            f"{scenarios.losses.shape[1]}: draw both for the same case"
        )
    if solve is None:
        from optimizer.solve import optimize as solve
    base = solve(case, scenarios, **options)
    if level == 0.0:
        return HeldLimits(base, case)
    z = float(stats.norm.ppf(level))
    claims = fund_claims(case, scenarios)
    cells = check_cells(case, scenarios)
    current, ev = base, evaluate(case, base, scenarios)
    ev_v = _validate(case, base, validation)
    targets = margin_targets(ev, z, ev_v)
    applied: dict[tuple[str, str], float] = {}
    # every limit may already have z SEs of room (none binds): nothing to re-solve
    converged, solves = _stable(ev, targets, applied, exact=True), 0
    held = case
    while not converged and solves < MAX_SOLVES:
        tightened = tightened_case(case, ev, targets, scenarios, claims, cells, current)
        try:
            # from the last solve's cuts: the same scenarios, only the limits moved
            start = current.warm_start or options.get("start")
            current = solve(tightened, scenarios, **{**options, "start": start})
        except InfeasibleCase as exc:
            raise ConfidenceInfeasible(
                case.name, level, margin_table(ev, ev_v, targets, z), str(exc)
            ) from exc
        solves += 1
        held = tightened
        ev = evaluate(case, current, scenarios)
        ev_v = _validate(case, current, validation)
        applied = applied_margins(tightened, ev, scenarios, claims, cells, current)
        targets = margin_targets(ev, z, ev_v)
        # a validated margin moves with the allocation (limits that trade volume trade their
        # optimism too, and can take turns binding): it only rises after the first solve
        ratchet = solves >= (FREE_SOLVES if validation is None or validation is scenarios else 1)
        if _stable(ev, targets, applied, exact=not ratchet):
            converged = True
            break
        if ratchet:  # a margin no longer falls: the next solve holds the larger of the two
            targets = {k: max(v, applied.get(k, 0.0)) for k, v in targets.items()}
    margins = margin_table(ev, ev_v, applied, z)
    report = LimitConfidence(
        confidence=level,
        z=z,
        solves=solves,
        converged=converged,
        margins=margins,
        unmargined_weighted_gap_usd=base.objective_weighted_gap_usd,
        unmargined_gap_closed_usd=base.gap_closed_usd,
        cost_weighted_gap_usd=current.objective_weighted_gap_usd - base.objective_weighted_gap_usd,
        cost_gap_closed_usd=base.gap_closed_usd - current.gap_closed_usd,
        validation_seed=None if validation is None else int(validation.seed),
        validation_n_scenarios=None if validation is None else validation.n_scenarios,
    )
    warnings = current.warnings
    if not converged:
        warnings += (
            f"the confidence margins were still short of their targets after {MAX_SOLVES} "
            f"solves: some limits hold at less than {level:.0%} confidence (see the margins); "
            "more scenarios steady their standard errors",
        )
    # the tightened case's own limits stay out of the tables: they are priced against the case's
    allocation = dataclasses.replace(
        current,
        sources=ev.sources[list(current.sources.columns)],
        funds=ev.funds[list(current.funds.columns)] if len(current.funds) else current.funds,
        warnings=warnings,
        case_sha256=case.content_sha256,
        confidence=report,
    )
    return HeldLimits(allocation, held)


def held_case(case: Case, scenarios: ScenarioSet, allocation: Allocation) -> Case:
    """The case with the limits a saved margined allocation was held to, rebuilt from its
    margins at its own volumes.

    Close to, not always exactly, the case its last solve held: a rate limit's margin was
    written at the volumes of the solve before (on the default case at 1,200 scenarios the
    rebuilt case re-solves 4 % off the headline's weighted gap). Where the allocation is
    being made, :func:`hold_limits` returns the exact case.

    ``case`` itself when the allocation carries no margins (``confidence`` None or none taken).
    """
    conf = allocation.confidence
    if conf is None or not (conf.margins["margin_usd"] > 0).any():
        return case
    ev = evaluate(case, allocation, scenarios)
    margins = {
        (r.family, r.owner): float(r.margin_usd)
        for r in conf.margins.itertuples()
        if r.margin_usd > 0
    }
    claims, cells = fund_claims(case, scenarios), check_cells(case, scenarios)
    return tightened_case(case, ev, margins, scenarios, claims, cells, allocation)


def _validate(case: Case, allocation: Allocation, validation: ScenarioSet | None):
    """``allocation`` evaluated on the validation scenarios, None without them."""
    return None if validation is None else evaluate(case, allocation, validation)


def _stable(
    ev: Evaluation,
    targets: dict[tuple[str, str], float],
    applied: dict[tuple[str, str], float],
    exact: bool,
) -> bool:
    """Each limit holds at the confidence: its room is at least ``z · SE`` (less
    :data:`STABLE_SE` SEs); if ``exact``, a limit the solve held to its margin was also not
    held more than that much above ``z · SE`` (the margin is at its fixed point)."""
    for r in limit_rows(ev).itertuples():
        key = limit_key(r)
        want, held, room = targets.get(key, 0.0), applied.get(key, 0.0), limit_room(r)
        slack = STABLE_SE * float(r.std_error) + limit_tolerance(r)
        if want - room > slack:
            return False
        if exact and room <= held + slack and held - want > slack:
            return False  # tight on a margin wider than its standard error now asks
    return True
