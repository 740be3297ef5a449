"""What a stress test returns: a fixed allocation under each overlay, in money.

:class:`StressReport` holds the base case's evaluation and one :class:`StressOutcome` per
overlay, and lays them out as long tables (stress × funder, stress × fund, stress × limit) and
one summary row per stress: the credit still funded, the gap left and given up, the limits
breached with their size in US$ and in standard errors; :mod:`optimizer.analysis.stress_testing`
builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from optimizer.analysis.evaluate import Evaluation

BASE_ID = "base"
"""``stress_id`` of the unstressed case in the long tables."""
REOPTIMIZED_COLUMNS = (
    "stress_id",
    "name",
    "status",
    "weighted_gap_usd",
    "gap_closed_usd",
    "gives_up_usd",
    "gap_closed_change_usd",
    "reason",
)
LIMIT_COLUMNS = (
    "stress_id",
    "name",
    "owner_kind",
    "owner",
    "what",
    "value",
    "limit",
    "excess",
    "unit",
    "std_error",
    "excess_in_se",
    "held",
    "significant",
)
SUMMARY_COLUMNS = (
    "stress_id",
    "name",
    "lending_usd",
    "gap_closed_usd",
    "unmet_gap_usd",
    "weighted_gap_usd",
    "gap_given_up_usd",
    "money_withdrawn_usd",
    "cover_withdrawn_usd",
    "lending_withdrawn_usd",
    "limits_checked",
    "breaches",
    "significant_breaches",
    "largest_breach",
    "largest_breach_usd",
    "largest_breach_in_se",
)
RISK_WHATS = ("cvar", "expected_loss", "return_hurdle", "depletion_probability", "claims_cvar")
"""The risk limits among the checks (the rest are budgets, caps, leverage and uptake)."""


@dataclass(frozen=True)
class StressOutcome:
    """A fixed allocation evaluated under one stress overlay."""

    stress_id: str
    name: str
    description: str
    evaluation: Evaluation


@dataclass(frozen=True, eq=False)
class StressReport:
    """A fixed allocation under each stress, next to the same allocation on the base case.

    Attributes
    ----------
    baseline : Evaluation
        The allocation on the base case's scenarios (same size and seed as the stresses).
    outcomes : tuple of StressOutcome
        One per overlay, in the order given.
    reverse : DataFrame or None
        The reverse stress (:func:`optimizer.analysis.reverse_stress.reverse_stress`): per
        binding risk limit and driver, the smallest PD multiplier or event probability that
        breaks it. None when not asked for.
    reoptimized : DataFrame or None
        With ``reoptimize``: one row per stress, columns :data:`REOPTIMIZED_COLUMNS`;
        ``weighted_gap_usd`` is the stressed case's optimal weighted unmet gap (US$),
        ``gives_up_usd`` how much more weighted gap stays unmet than in the base case
        re-optimised on the same scenarios (``base_weighted_gap_usd``), ``status`` is
        ``"optimal"``, ``"optimal_inaccurate"``, ``"infeasible"`` (``reason`` then says what
        must give) or ``"failed"``. None without ``reoptimize``.
    base_weighted_gap_usd : float or None
        Optimal weighted unmet gap of the base case on the base scenarios (with ``reoptimize``).
    base_gap_closed_usd : float or None
    case_name : str
    n_scenarios, seed : int
    method : str
        Sampling method (``"importance"``, ``"mc"``...).
    """

    baseline: Evaluation
    outcomes: tuple[StressOutcome, ...]
    reoptimized: pd.DataFrame | None
    base_weighted_gap_usd: float | None
    base_gap_closed_usd: float | None
    case_name: str
    n_scenarios: int
    seed: int
    method: str
    reverse: pd.DataFrame | None = None

    @property
    def summary(self) -> pd.DataFrame:
        """One row per stress (base first), columns :data:`SUMMARY_COLUMNS`, US$.

        What the allocation still funds under the stress (``lending_usd``; money, cover and
        lending withdrawn by :func:`optimizer.analysis.holdings.fundable`), the gap it closes
        and leaves, the weighted gap given up against the base, and the risk limits breached:
        how many, how many significantly, and the largest in US$ with its size in standard
        errors.
        """
        base_gap = self.baseline.weighted_gap_usd
        rows = []
        for sid, name, ev in self._evaluations():
            risk = ev.checks[ev.checks["what"].str.startswith(RISK_WHATS)]
            broken = risk[risk["breached"] & (risk["unit"] == "US$")]
            worst = broken.loc[broken["excess"].idxmax()] if len(broken) else None
            rows.append(
                {
                    "stress_id": sid,
                    "name": name,
                    "lending_usd": ev.lending_usd,
                    "gap_closed_usd": ev.gap_closed_usd,
                    "unmet_gap_usd": ev.unmet_gap_usd,
                    "weighted_gap_usd": ev.weighted_gap_usd,
                    "gap_given_up_usd": ev.weighted_gap_usd - base_gap,
                    "money_withdrawn_usd": ev.money_withdrawn_usd,
                    "cover_withdrawn_usd": ev.cover_withdrawn_usd,
                    "lending_withdrawn_usd": ev.lending_withdrawn_usd,
                    "limits_checked": len(risk),
                    "breaches": int(risk["breached"].sum()),
                    "significant_breaches": int(risk["significant"].sum()),
                    "largest_breach": "" if worst is None else f"{worst.owner} {worst.what}",
                    "largest_breach_usd": 0.0 if worst is None else float(worst.excess),
                    "largest_breach_in_se": 0.0 if worst is None else float(worst.excess_in_se),
                }
            )
        return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

    @property
    def limits(self) -> pd.DataFrame:
        """Stress x (funder or fund) x limit: held or breached, columns :data:`LIMIT_COLUMNS`.

        The base case comes first (``stress_id = "base"``), then each stress in order.
        """

        def checks(ev: Evaluation) -> pd.DataFrame:
            c = ev.checks
            kept = ["owner_kind", "owner", "what", "value", "limit", "excess", "unit", "std_error"]
            kept.append("excess_in_se")
            return c[kept].assign(
                held=~c["breached"].astype(bool), significant=c["significant"].astype(bool)
            )

        return self._per_stress(checks)[list(LIMIT_COLUMNS)]

    @property
    def funders(self) -> pd.DataFrame:
        """Per stress and source, US$: committed, lending and fund capital; expected loss
        (on lending and on fund capital, its change vs base) against its limit; VaR; CVaR
        against its limit, with standard errors."""
        base = self.baseline.sources.set_index("source")["expected_loss_usd"]
        cols = [
            "source",
            "kind",
            "committed_usd",
            "lending_usd",
            "capital_usd",
            "expected_loss_usd",
            "expected_loss_lending_usd",
            "expected_loss_capital_usd",
            "expected_loss_change_usd",
            "expected_loss_se_usd",
            "expected_loss_limit_usd",
            "var_usd",
            "cvar_alpha",
            "cvar_usd",
            "cvar_se_usd",
            "cvar_limit_usd",
            "cvar_headroom_usd",
        ]

        def sources(ev: Evaluation) -> pd.DataFrame:
            s = ev.sources
            change = s["expected_loss_usd"].to_numpy() - s["source"].map(base).to_numpy()
            at_risk = s["lending_usd"] + s["capital_usd"]
            return s.assign(
                expected_loss_change_usd=change,
                expected_loss_limit_usd=s["el_limit_rate"] * at_risk,
            )[cols]

        return self._per_stress(sources)

    @property
    def funds(self) -> pd.DataFrame:
        """Per stress and guarantee fund, US$: capital, guaranteed volume, expected claims
        and the share of them it cannot pay, claims CVaR against its capital, depletion
        probability against its maximum."""
        cols = [
            "fund",
            "capital_usd",
            "guaranteed_usd",
            "expected_claims_usd",
            "expected_unpaid_usd",
            "claims_cvar_usd",
            "claims_cvar_headroom_usd",
            "depletion_probability",
            "depletion_se",
            "max_depletion_probability",
        ]
        return self._per_stress(lambda ev: ev.funds[cols])

    def _per_stress(self, frame_of: Callable[[Evaluation], pd.DataFrame]) -> pd.DataFrame:
        """``frame_of`` each evaluation (base first), with its stress id and name in front."""
        parts = []
        for sid, name, ev in self._evaluations():
            frame = frame_of(ev)
            parts.append(frame.assign(stress_id=sid, name=name)[["stress_id", "name", *frame]])
        return pd.concat(parts, ignore_index=True)

    def _evaluations(self) -> list[tuple[str, str, Evaluation]]:
        return [(BASE_ID, "Base case", self.baseline)] + [
            (o.stress_id, o.name, o.evaluation) for o in self.outcomes
        ]
