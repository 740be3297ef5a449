"""From a run's result objects to the :class:`ReportContext` the templates read.

Reads, never solves: funders' and funds' scenario losses are recomputed from the fixed allocation
and the saved scenario set, the same way the optimizer's result tables were.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from models.tables import assumptions_frame
from models.text import printable
from optimizer.analysis.evaluate import Evaluation
from optimizer.analysis.fixed import scenario_exposures
from optimizer.analysis.frontier_spec import sweep_kind
from optimizer.analysis.replicate import Replications
from optimizer.choices import FAILED_STATUSES
from optimizer.door.run import RunRecord
from optimizer.result import Allocation
from optimizer.solve import PROGRAMME_FAMILIES
from reports.analysis_sections import Frontier, Sensitivity, ShadowPrice, StressResult
from reports.context import (
    Assumption,
    CapitalStack,
    ExecutiveSummary,
    GapClosure,
    ReportContext,
    Reproducibility,
    package_versions,
)
from reports.formats import ColumnFormat, money_m
from reports.risk_sections import FunderRisk, GuaranteeFundRisk, RiskEstimate

METHOD_NOTES = (
    "Losses: a multi-factor Gaussian (or Student-t) copula with one macro factor, one factor per "
    "value chain (correlated, read as commodity price returns) and one per region; large-pool "
    "Vasicek default rates; Beta pool LGD per product rising in downturns; discrete shock events "
    "(drought, coffee rust, lender failure, pandemic) multiply PDs and add to LGDs.",
    "Risk measures use the scenario probabilities (importance-sampling weights are honoured). "
    "CVaR is the exact discrete Rockafellar–Uryasev value with a fractional tail atom; standard "
    "errors come from the delta method for self-normalised weights.",
    "Allocation: a linear programme minimising the deforestation-weighted unmet gap subject to "
    "budgets, guarantee leverage and uptake, each funder's CVaR and expected-loss limits, fund "
    "depletion (CVaR of claims within capital), private return hurdles, mobilisation, "
    "concentration caps and climate earmarks; a second stage holds the gap and minimises "
    "expected losses plus concessional cost. Shadow prices are stage-1 duals.",
    "Out of sample: the allocation is re-evaluated on an independent scenario set (another seed); "
    "stress tests re-simulate each overlay with the same seed (common random numbers).",
)


def _usd_or_none(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _oos_row(frame: pd.DataFrame | None, key: str, value: str) -> pd.Series | None:
    if frame is None or frame.empty or key not in frame.columns:
        return None
    hit = frame[frame[key] == value]
    return None if hit.empty else hit.iloc[0]


RISK_CHECKS = ("cvar", "expected_loss", "return_hurdle", "depletion_probability", "claims_cvar")


def limits_held(evaluation: Evaluation) -> dict[str, bool]:
    """Each risk limit of a stressed evaluation: held (True) or breached (False)."""
    checks = evaluation.checks
    risky = checks[checks["what"].str.startswith(RISK_CHECKS)]
    return {f"{r.owner} {r.what}": not r.breached for r in risky.itertuples()}


def breach_notes(evaluation: Evaluation) -> tuple[str, ...]:
    """Each risk limit a stressed evaluation breaches, with its size in US$ (or points of
    probability) and in standard errors, largest first."""
    checks = evaluation.checks
    broken = checks[checks["what"].str.startswith(RISK_CHECKS) & checks["breached"]]
    notes = []
    for r in broken.sort_values("excess", ascending=False, kind="stable").itertuples():
        size = f"+{r.excess:.2%}" if r.unit == "probability" else f"+{money_m(r.excess)}"
        se = f"{r.excess_in_se:,.1f} SE" if math.isfinite(r.excess_in_se) else "exact"
        notes.append(f"{r.owner} {r.what} {size}, {se}")
    return tuple(notes)


_FRONTIER_AXES: dict[str, tuple[str, ColumnFormat]] = {
    "cvar_scale": (" (x)", ColumnFormat.RATIO),  # a multiplier of the case's CVaR limits
    "amount": (" (x)", ColumnFormat.RATIO),  # a multiplier of the case's money
    "depletion": (" (%)", ColumnFormat.PCT2),  # the probability ε itself, e.g. 5.00%
    "mobilization": ("", ColumnFormat.FLOAT),  # US$ per US$: the label says so
    "deforestation_priority": (" (weight)", ColumnFormat.FLOAT),
}
"""Axis suffix and number format by sweep kind (what a swept value is)."""


def _frontier(record: RunRecord) -> Frontier | None:
    front = record.frontier
    if front is None or front.table.empty:
        return None
    table = front.table
    failed = table["status"].isin(FAILED_STATUSES)  # "optimal_inaccurate" has its numbers
    suffix, x_format = _FRONTIER_AXES[sweep_kind(front.sweep)]
    return Frontier(
        x_label=f"{front.label}{suffix}",
        x=table["value"].to_numpy(dtype=float),
        gap_usd=np.where(failed, np.nan, table["weighted_gap_usd"].to_numpy(dtype=float)),
        failure_reasons=tuple(
            "" if not f else str(r) for f, r in zip(failed, table["reason"], strict=True)
        ),
        x_format=x_format,
    )


def _sensitivity(record: RunRecord) -> Sensitivity | None:
    sens = record.sensitivity
    if sens is None or sens.table.empty:
        return None
    t = sens.tornado
    return Sensitivity(
        labels=tuple(t["label"]),
        low_delta_usd=t["low_change_usd"].to_numpy(dtype=float),
        high_delta_usd=t["high_change_usd"].to_numpy(dtype=float),
        base_gap_usd=sens.base_weighted_gap_usd,
        low_settings=tuple(t["low_setting"]),
        high_settings=tuple(t["high_setting"]),
        notes=tuple(t["note"]),
        description=(
            f"Each input ±{sens.shock:.0%} in turn, re-optimised on {sens.n_scenarios:,} "
            f"scenarios of seed {sens.seed}: the same random draws as the base case (common "
            "random numbers), so each change is the input's effect, not Monte Carlo noise."
        ),
    )


_ANALYSIS_NAMES = {
    "headline": "the allocation",
    "out_of_sample": "the out-of-sample check",
    "frontier": "the frontier",
    "sensitivity": "the sensitivity sweep",
    "stresses": "the stress tests",
    "replications": "each replication",
}


def _scenario_sets(record: RunRecord) -> str:
    """One sentence: the scenario set (count, seed, precision) behind each analysis."""
    parts = [
        f"{_ANALYSIS_NAMES[name]} {d.n_scenarios:,} (seed {d.seed}, {d.dtype})"
        for name, d in record.analyses.items()
    ]
    return "Scenario sets (count, seed, precision): " + "; ".join(parts) + "."


def _prices(all_rows: pd.DataFrame, binding: pd.DataFrame) -> tuple[ShadowPrice, ...]:
    """The levers' lines: re-solved marginal values when the result has them (one per group,
    largest weighted gain first), else the LP duals of the binding programme rows."""
    from optimizer.analysis.marginal import MARGINAL_COLUMNS, committee_lines

    if not set(MARGINAL_COLUMNS) <= set(all_rows.columns):
        return tuple(
            ShadowPrice(
                constraint=row.label,
                relaxation=row.relaxation.replace("US$1 ", "US$1m "),
                gap_closed_usd=float(row.shadow_price) * 1e6,
            )
            for row in binding.itertuples()
        )

    def number(value: float) -> float | None:
        return None if pd.isna(value) else float(value)

    return tuple(
        ShadowPrice(
            constraint=row.label,
            relaxation=row.relaxation.replace("US$1 ", "US$1m "),
            gap_closed_usd=float(row.dual_gain_usd),
            resolved_gain_usd=number(row.resolved_gain_usd),
            resolved_gain_gap_usd=number(row.resolved_gain_gap_usd),
            resolved_loss_usd=number(row.resolved_loss_usd),
            dual_disagrees=bool(row.dual_disagrees),
        )
        for row in committee_lines(all_rows).itertuples()
    )


def _spread(record: RunRecord) -> Replications | None:
    """The run's replications when they give a spread (two or more solved), else None."""
    reps = record.replications
    return reps if reps is not None and reps.solved >= 2 else None


def _gap_closed_error(reps: Replications | None) -> str:
    """ "± US$Ym (SD over R replications of N scenarios)", or "" without a spread."""
    if reps is None:
        return ""
    return (
        f"± US${reps.gap_closed_se_usd / 1e6:,.1f}m (standard deviation over {reps.solved} "
        f"independent replications of {reps.n_scenarios:,} scenarios; "
        f"{reps.advised_n_scenarios:,} scenarios would bring it within "
        f"{reps.target_relative_se:.0%} of the gap closed)"
    )


def _confidence_note(res: Allocation) -> str:
    """How the risk limits were held out of sample, and what it cost; "" when off."""
    conf = res.confidence
    if conf is None:
        return ""
    binding = conf.margins[conf.margins["binding"]]
    spread = (
        f", each tightened by {binding['margin_in_se'].min():.2f}–"
        f"{binding['margin_in_se'].max():.2f} standard errors"
        if len(binding)
        else ""
    )
    return (
        f"Risk limits held at {conf.confidence:.0%} confidence out of sample: "
        f"{len(binding)} binding limit(s){spread}; this costs US${conf.cost_gap_closed_usd / 1e6:,.1f}m "
        f"of gap closed (US${conf.cost_weighted_gap_usd / 1e6:,.1f}m of weighted gap) against "
        "the optimum that sits exactly on its limits."
    )


def report_context(record: RunRecord) -> ReportContext:
    """Build the report of one run."""
    case, res, scen = record.case, record.allocation, record.scenarios
    kinds = res.sources.groupby("kind")["committed_usd"].sum()
    conc = res.sources.loc[res.sources["concessional"], "committed_usd"].sum()
    private_lending = res.sources.loc[res.sources["kind"] == "private", "lending_usd"].sum()
    binding = res.binding[res.binding["family"].isin(PROGRAMME_FAMILIES)]
    binding = binding[binding["shadow_price"] > 1e-6]
    oos = record.out_of_sample
    reps = _spread(record)
    summary = ExecutiveSummary(
        unmet_need_usd=case.total_gap_usd,
        gap_closed_usd=res.gap_closed_usd,
        money_by_kind_usd={k: float(kinds.get(k, 0.0)) for k in ("public", "private", "climate")},
        private_per_concessional=float(private_lending / conc) if conc > 0 else 0.0,
        binding_limits=tuple(f"The {row.label} binds." for row in binding.head(8).itertuples()),
        out_of_sample_breaches=(
            None
            if oos is None
            else tuple(
                f"{r.owner}: {r.what} {r.value / 1e6 if r.unit == 'US$' else r.value:,.3g}"
                f"{' US$m' if r.unit == 'US$' else ''} against a limit of "
                f"{r.limit / 1e6 if r.unit == 'US$' else r.limit:,.3g}"
                f"{'' if r.significant else ' (within Monte Carlo noise)'}"
                for r in oos.breaches.itertuples()
            )
        ),
        out_of_sample_scenarios=None if oos is None else oos.n_scenarios,
        gap_closed_se_usd=None if reps is None else reps.gap_closed_se_usd,
        gap_closed_error=_gap_closed_error(reps),
        confidence_note=_confidence_note(res),
        warnings=tuple(res.warnings)
        + tuple(f"Fallback: {f}" for f in res.fallbacks)
        + ((f"Sensitivity: {record.sensitivity_error}",) if record.sensitivity_error else ()),
    )

    stack = pd.concat(
        [
            res.allocation.pivot_table(
                index="source", columns="product", values="amount_usd", aggfunc="sum"
            ),
            res.guarantees.pivot_table(
                index="source", columns="fund", values="capital_usd", aggfunc="sum"
            ),
        ],
        axis=1,
    ).fillna(0.0)
    stack = stack.loc[stack.sum(axis=1) > 0]
    if stack.empty:  # an optimum that lends nothing: every source at zero, said as such
        stack = pd.DataFrame(
            {"(nothing committed)": 0.0},
            index=pd.Index([s.id for s in case.sources], name="source"),
        )
    funds_used = tuple(c for c in stack.columns if c in {f.id for f in case.funds})

    expo = scenario_exposures(case, res, scen)
    funder_risks = []
    for row in res.sources.itertuples():
        if row.committed_usd <= 0 or row.source not in expo.source_losses:
            continue
        o = _oos_row(None if oos is None else oos.sources, "source", row.source)
        euler = res.euler[res.euler["source"] == row.source]
        funder_risks.append(
            FunderRisk(
                name=row.source,
                kind=row.kind,
                committed_usd=float(row.committed_usd),
                alpha=float(row.cvar_alpha),
                losses_usd=expo.source_losses[row.source],
                probabilities=scen.probabilities,
                el=RiskEstimate(
                    row.expected_loss_usd,
                    row.expected_loss_se_usd,
                    _usd_or_none(o["expected_loss_usd"]) if o is not None else None,
                    _usd_or_none(o["expected_loss_se_usd"]) if o is not None else None,
                ),
                var=RiskEstimate(
                    row.var_usd, None, _usd_or_none(o["var_usd"]) if o is not None else None
                ),
                cvar=RiskEstimate(
                    row.cvar_usd,
                    row.cvar_se_usd,
                    _usd_or_none(o["cvar_usd"]) if o is not None else None,
                    _usd_or_none(o["cvar_se_usd"]) if o is not None else None,
                ),
                el_limit_usd=(
                    row.el_limit_rate * (row.lending_usd + row.capital_usd)
                    if pd.notna(row.el_limit_rate)
                    else None
                ),
                el_on_capital_usd=float(getattr(row, "expected_loss_capital_usd", 0.0) or 0.0),
                cvar_limit_usd=_usd_or_none(row.cvar_limit_usd),
                euler_usd=(
                    euler.groupby("segment")["contribution_usd"].sum() if not euler.empty else None
                ),
            )
        )

    funds = []
    for row in res.funds.itertuples():
        if row.capital_usd <= 0:
            continue
        o = _oos_row(None if oos is None else oos.funds, "fund", row.fund)
        funds.append(
            GuaranteeFundRisk(
                name=row.fund,
                capital_usd=float(row.capital_usd),
                guaranteed_usd=float(row.guaranteed_usd),
                leverage_cap=float(row.leverage_cap),
                max_depletion_probability=float(row.max_depletion_probability),
                claims_usd=expo.fund_claims[row.fund],
                probabilities=scen.probabilities,
                depletion_probability_oos=(
                    float(o["depletion_probability"]) if o is not None else None
                ),
            )
        )

    prices = _prices(res.binding, binding)
    base_gap = _usd_or_none(res.weighted_gap_usd)
    stresses = tuple(
        StressResult(
            name=o.name,
            description=o.description,
            unmet_gap_usd=_usd_or_none(o.evaluation.weighted_gap_usd),
            limits_held=limits_held(o.evaluation),
            gap_closed_usd=_usd_or_none(o.evaluation.gap_closed_usd),
            gap_given_up_usd=(
                None
                if base_gap is None or pd.isna(o.evaluation.weighted_gap_usd)
                else float(o.evaluation.weighted_gap_usd) - base_gap
            ),
            breach_notes=breach_notes(o.evaluation),
        )
        for o in record.stresses
    )
    register = assumptions_frame(case)
    assumptions = tuple(
        Assumption(field=r.field, value=r.value, tag=r.tag, source=r.source)
        for r in register.itertuples()
    )
    return ReportContext(
        title="Blended finance for the Production-Protection Compact",
        case_name=case.name,
        subtitle=case.stress.name if case.stress else "",
        summary=summary,
        capital_stack=CapitalStack(amounts_usd=stack, guarantee_funds=funds_used),
        gap_closure=GapClosure(segments=res.segments),
        funder_risks=tuple(funder_risks),
        guarantee_funds=tuple(funds),
        frontier=_frontier(record),
        sensitivity=_sensitivity(record),
        shadow_prices=prices,
        stress_tests=stresses,
        assumptions=assumptions,
        method_notes=(*METHOD_NOTES, _scenario_sets(record)) if record.analyses else METHOD_NOTES,
        reproducibility=Reproducibility(
            case_file=printable(str(case.source_file)),
            case_sha256=str(case.content_sha256),
            seed=record.seed,
            n_scenarios=record.n_scenarios,
            scenario_method=record.scenario_method,
            solver=f"{res.solver} ({res.method})",
            package_versions=package_versions(),
            generated_at=datetime.now(UTC).replace(microsecond=0),
            solver_fallbacks=tuple(res.fallbacks),
        ),
    )
