"""The report's analysis sections: the frontier, the sensitivity, marginal values, stress tests.

What each analysis of a solved allocation found, as plain frozen data: :class:`Frontier`,
:class:`Sensitivity`, :class:`ShadowPrice` (with the sentence the report prints) and
:class:`StressResult`. Money is US$; arrays are checked once here. They are parts of
:class:`~reports.context.ReportContext`, each ``None`` or empty when that analysis was not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from reports._frozen import _array, _set
from reports.formats import ColumnFormat, money_m

__all__ = ["Frontier", "Sensitivity", "ShadowPrice", "StressResult"]


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class Frontier:
    """Optimal unmet gap (US$) over a swept quantity ``x`` (in the unit ``x_format`` shows).

    ``failure_reasons[i]`` is ``""`` where point i solved, else why it failed (its gap is NaN).
    """

    x_label: str
    x: np.ndarray
    gap_usd: np.ndarray
    failure_reasons: tuple[str, ...]
    x_format: ColumnFormat = ColumnFormat.USD_M

    def __post_init__(self) -> None:
        x, gap = _array(self, "x"), _array(self, "gap_usd")
        if not (x.ndim == 1 and x.shape == gap.shape == (len(self.failure_reasons),) and x.size):
            raise ValueError(
                f"Frontier x, gap_usd and failure_reasons must have one equal length, got "
                f"{x.shape}, {gap.shape}, {len(self.failure_reasons)}"
            )
        _set(self, "x_format", ColumnFormat(self.x_format))

    @property
    def failed_mask(self) -> np.ndarray:
        """Whether each point failed: ndarray of bool of shape (n_points,)."""
        return np.array([bool(r) for r in self.failure_reasons])


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class Sensitivity:
    """Change of the optimal unmet gap (US$) when each input is set low or high.

    ``low_settings``/``high_settings`` (optional, same length as ``labels``) say what low and
    high mean for each input ("PD × 0.8"). A delta is NaN where that point has no solution
    (the perturbed case was invalid or infeasible); ``notes`` (optional, one per input, ``""``
    when there is nothing to say) then say why. ``description`` says how the sweep was made
    (shock, scenarios, seed).
    """

    labels: tuple[str, ...]
    low_delta_usd: np.ndarray
    high_delta_usd: np.ndarray
    base_gap_usd: float
    low_settings: tuple[str, ...] = ()
    high_settings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        lo, hi = _array(self, "low_delta_usd"), _array(self, "high_delta_usd")
        n = len(self.labels)
        if not (n and lo.shape == hi.shape == (n,)):
            raise ValueError(
                f"Sensitivity needs {n} low and high deltas, got {lo.shape}, {hi.shape}"
            )
        if np.isinf(lo).any() or np.isinf(hi).any():
            raise ValueError("Sensitivity deltas must be finite, or NaN where a point failed")
        for name in ("low_settings", "high_settings", "notes"):
            if getattr(self, name) and len(getattr(self, name)) != n:
                raise ValueError(f"Sensitivity.{name} must be empty or have {n} entries")


@dataclass(frozen=True)
class ShadowPrice:
    """What relaxing one binding constraint buys.

    Read as: ``relaxation`` closes ``gap_closed_usd`` of weighted gap by the LP dual, e.g.
    relaxation = "One more US$ 1 m of climate first-loss capital", gap_closed_usd = 3.2e6. With
    re-solved marginal values (``resolved_gain_usd`` not None) the re-solve is quoted instead:
    weighted gap closed, plain credit gap closed, weighted gap opened by the same step the
    other way; ``dual_disagrees`` says the dual is off (a degenerate vertex).
    """

    constraint: str
    relaxation: str
    gap_closed_usd: float
    resolved_gain_usd: float | None = None
    resolved_gain_gap_usd: float | None = None
    resolved_loss_usd: float | None = None
    dual_disagrees: bool = False

    @property
    def sentence(self) -> str:
        """What relaxing the constraint buys, in whole sentences for the report.

        The LP dual's figure alone; or, when re-solved, the weighted and credit gap closed and the
        weighted gap opened by the step back, plus a warning when the dual disagrees.
        """
        if self.resolved_gain_usd is None:
            return (
                f"{self.relaxation} would close {money_m(self.gap_closed_usd)} of the weighted "
                "gap (LP dual)."
            )
        text = (
            f"{self.relaxation} closes {money_m(self.resolved_gain_usd)} of the weighted gap "
            f"({_money_or_na(self.resolved_gain_gap_usd)} of the credit gap), re-solved on the "
            f"same scenarios; the same step the other way opens "
            f"{_money_or_na(self.resolved_loss_usd)} of weighted gap."
        )
        if self.dual_disagrees:
            text += (
                f" The LP dual says {money_m(self.gap_closed_usd)}: the optimum is a degenerate "
                "vertex, so the dual misstates this limit's worth."
            )
        return text


def _money_or_na(value: float | None) -> str:
    return "n/a" if value is None or value != value else money_m(value)  # NaN != NaN


@dataclass(frozen=True)
class StressResult:
    """A fixed allocation evaluated on a stressed scenario set.

    ``limits_held`` maps each limit's name ("Private senior notes 99% CVaR") to whether it held;
    ``unmet_gap_usd`` is the weighted unmet gap of what the stressed case can still fund,
    ``gap_given_up_usd`` how much more of it than in the base case, ``breach_notes`` each
    breach with its size ("PRIV_MFI cvar99 +US$ 52.3 m, 40.4 SE").
    """

    name: str
    description: str
    unmet_gap_usd: float | None
    limits_held: Mapping[str, bool]
    gap_closed_usd: float | None = None
    gap_given_up_usd: float | None = None
    breach_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "limits_held", dict(self.limits_held))

    @property
    def breached(self) -> tuple[str, ...]:
        """Names of the limits that did not hold, in ``limits_held`` order."""
        return tuple(k for k, ok in self.limits_held.items() if not ok)
