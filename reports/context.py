"""What a report says, as plain frozen data: :class:`ReportContext` and its sections.

An adapter fills these from the optimizer's result; the report layer never re-solves. Money is
US$ (not millions), shares and probabilities are fractions. Each section that may be absent is
``None`` or an empty tuple, and the report then leaves it out. Arrays and frames are checked
once here, at the door, so the renderers can trust them.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from reports._svg import check_weighted
from reports.formats import ColumnFormat, money_m

__all__ = [
    "Assumption",
    "CapitalStack",
    "ExecutiveSummary",
    "Frontier",
    "FunderRisk",
    "GapClosure",
    "GuaranteeFundRisk",
    "ReportContext",
    "Reproducibility",
    "RiskEstimate",
    "Sensitivity",
    "ShadowPrice",
    "StressResult",
    "package_versions",
]

GAP_COLUMNS = ("region", "value_chain", "gap_usd", "credit_usd", "deforestation_pressure")


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _array(obj: object, name: str) -> np.ndarray:
    arr = np.asarray(getattr(obj, name), dtype=float)
    arr.setflags(write=False)
    _set(obj, name, arr)
    return arr


@dataclass(frozen=True)
class ExecutiveSummary:
    """The first page: what the structure achieves and what constrains it.

    ``unmet_need_usd`` is the credit gap before the programme (Σ need − supply); the remaining gap
    and the share closed are derived from it and ``gap_closed_usd``.
    ``money_by_kind_usd`` maps a kind ("public", "private", "climate") to US$ committed.
    ``binding_limits`` are whole sentences ("The 99% CVaR limit of Private senior notes binds.").
    ``out_of_sample_breaches`` names the limits breached on a fresh scenario set: ``()`` when
    every limit holds, ``None`` when no out-of-sample check was run.
    ``warnings`` are shown prominently (solver fallbacks, inaccurate solutions …).
    ``gap_closed_error`` and ``confidence_note`` are whole phrases, ``""`` when not computed.
    """

    unmet_need_usd: float
    gap_closed_usd: float
    money_by_kind_usd: Mapping[str, float]
    private_per_concessional: float
    binding_limits: tuple[str, ...] = ()
    out_of_sample_breaches: tuple[str, ...] | None = None
    out_of_sample_scenarios: int | None = None
    warnings: tuple[str, ...] = ()
    gap_closed_se_usd: float | None = None
    """Standard deviation of the gap closed over independent replications, US$."""
    gap_closed_error: str = ""
    """The gap closed's Monte Carlo error bar, e.g. "± US$14.1m (SD over 4 replications of
    100,000 scenarios)"; ``""`` when no replications were run."""
    confidence_note: str = ""
    """How the risk limits were held out of sample (margins, their cost); ``""`` when off."""

    def __post_init__(self) -> None:
        if self.unmet_need_usd < 0 or self.gap_closed_usd < 0:
            raise ValueError(
                f"unmet_need_usd and gap_closed_usd must be >= 0, got {self.unmet_need_usd}, "
                f"{self.gap_closed_usd}"
            )
        _set(self, "money_by_kind_usd", dict(self.money_by_kind_usd))

    @property
    def gap_closed_share(self) -> float:
        """Share of the unmet need closed: gap closed / unmet need (0 when there is no need)."""
        return self.gap_closed_usd / self.unmet_need_usd if self.unmet_need_usd > 0 else 0.0

    @property
    def remaining_gap_usd(self) -> float:
        """Credit gap left after the programme, US$: unmet need − gap closed, at least 0."""
        return max(self.unmet_need_usd - self.gap_closed_usd, 0.0)

    @property
    def total_committed_usd(self) -> float:
        """Money committed over all source kinds, US$."""
        return float(sum(self.money_by_kind_usd.values()))


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class CapitalStack:
    """US$ from each source (rows, index = source name) into each instrument (columns).

    ``guarantee_funds`` names the columns that are guarantee funds (the rest are loan products).
    """

    amounts_usd: pd.DataFrame
    guarantee_funds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        values = self.amounts_usd.apply(pd.to_numeric, errors="coerce")
        if self.amounts_usd.empty or values.isna().any().any():
            raise ValueError("CapitalStack.amounts_usd must be a non-empty numeric DataFrame")
        missing = [g for g in self.guarantee_funds if g not in self.amounts_usd.columns]
        if missing:
            raise ValueError(f"guarantee_funds {missing} are not columns of amounts_usd")


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class GapClosure:
    """One row per segment with columns ``region``, ``value_chain``, ``gap_usd`` (need − supply),
    ``credit_usd`` (credit the allocation brings) and ``deforestation_pressure`` (0..1)."""

    segments: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in GAP_COLUMNS if c not in self.segments.columns]
        if missing:
            raise ValueError(
                f"GapClosure.segments lacks columns {missing}; has {list(self.segments.columns)}"
            )


@dataclass(frozen=True)
class RiskEstimate:
    """One risk figure (US$) in sample and, when evaluated, out of sample; with MC std errors."""

    in_sample_usd: float
    in_sample_se_usd: float | None = None
    out_of_sample_usd: float | None = None
    out_of_sample_se_usd: float | None = None


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class FunderRisk:
    """A funder's scenario losses and its risk figures against its limits.

    ``losses_usd`` and ``probabilities`` have shape (n_scenarios,) (in sample). ``alpha`` is the
    VaR/CVaR level. ``euler_usd`` (optional) maps segment or product labels (index) to their
    contribution to the CVaR (US$); ``euler_by`` names what the labels are. The losses are all
    the funder's: on its lending after what its funds pay, and on the capital it put in funds;
    ``el_on_capital_usd`` is the part of the expected loss on fund capital (in sample).
    """

    name: str
    kind: str
    committed_usd: float
    alpha: float
    losses_usd: np.ndarray
    probabilities: np.ndarray
    el: RiskEstimate
    var: RiskEstimate
    cvar: RiskEstimate
    el_limit_usd: float | None = None
    cvar_limit_usd: float | None = None
    euler_usd: pd.Series | None = None
    euler_by: str = "segment"
    el_on_capital_usd: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"{self.name}: alpha must be in (0, 1), got {self.alpha}")
        check_weighted(self.losses_usd, self.probabilities, f"{self.name} losses_usd")
        _array(self, "losses_usd")
        _array(self, "probabilities")


@dataclass(frozen=True, eq=False)  # holds arrays/frames: compared by identity
class GuaranteeFundRisk:
    """A guarantee fund's capital, use and scenario claims (shape (n_scenarios,))."""

    name: str
    capital_usd: float
    guaranteed_usd: float
    leverage_cap: float
    max_depletion_probability: float
    claims_usd: np.ndarray
    probabilities: np.ndarray
    depletion_probability_oos: float | None = None

    def __post_init__(self) -> None:
        check_weighted(self.claims_usd, self.probabilities, f"{self.name} claims_usd")
        _array(self, "claims_usd")
        _array(self, "probabilities")

    @property
    def leverage_used(self) -> float:
        """Guaranteed volume per dollar of capital; NaN when the fund has no capital."""
        return self.guaranteed_usd / self.capital_usd if self.capital_usd > 0 else float("nan")

    @property
    def depletion_probability(self) -> float:
        """In-sample ``P_π(claims > capital)``."""
        return float(self.probabilities[self.claims_usd > self.capital_usd].sum())


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


@dataclass(frozen=True)
class Assumption:
    """One line of the assumptions register: a case field, its value, its tag ([S], [D], [A],
    [U]) and where it comes from."""

    field: str
    value: str | float | int
    tag: str
    source: str


DEFAULT_PACKAGES = (
    "ppc-finance",
    "numpy",
    "scipy",
    "pandas",
    "cvxpy",
    "highspy",
    "clarabel",
    "matplotlib",
    "weasyprint",
)


def package_versions(names: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names), "not installed" where absent."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class Reproducibility:
    """What it takes to get the same numbers again."""

    case_file: str
    case_sha256: str
    seed: int
    n_scenarios: int
    scenario_method: str
    solver: str
    package_versions: Mapping[str, str]
    generated_at: datetime
    solver_fallbacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "package_versions", dict(self.package_versions))


SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Executive summary"),
    ("capital-stack", "Capital stack"),
    ("gap-closure", "Gap closure by region and value chain"),
    ("funder-risk", "Risk per funder"),
    ("guarantee-funds", "Guarantee funds"),
    ("frontier", "Efficient frontier"),
    ("sensitivity", "Sensitivity"),
    ("shadow-prices", "Marginal values of binding limits"),
    ("stress-tests", "Stress tests"),
    ("assumptions", "Assumptions register"),
    ("method-notes", "Method notes"),
    ("reproducibility", "Reproducibility"),
)
"""Report sections in order: (HTML id, heading)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ReportContext:
    """Everything one report shows, fields in section order (keyword-only).

    Optional sections are empty tuples or ``None`` and are then left out of the report.
    """

    title: str
    case_name: str
    summary: ExecutiveSummary
    capital_stack: CapitalStack
    gap_closure: GapClosure
    funder_risks: tuple[FunderRisk, ...] = ()
    guarantee_funds: tuple[GuaranteeFundRisk, ...] = ()
    frontier: Frontier | None = None
    sensitivity: Sensitivity | None = None
    shadow_prices: tuple[ShadowPrice, ...] = ()
    stress_tests: tuple[StressResult, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    method_notes: tuple[str, ...] = ()
    reproducibility: Reproducibility
    subtitle: str = ""

    def __post_init__(self) -> None:
        for name in (
            "funder_risks",
            "guarantee_funds",
            "shadow_prices",
            "stress_tests",
            "assumptions",
            "method_notes",
        ):
            _set(self, name, tuple(getattr(self, name)))

    def present_sections(self) -> list[tuple[str, str]]:
        """(id, heading) of the sections this context has data for, in report order."""
        present = {
            "summary": True,
            "capital-stack": True,
            "gap-closure": True,
            "funder-risk": bool(self.funder_risks),
            "guarantee-funds": bool(self.guarantee_funds),
            "frontier": self.frontier is not None,
            "sensitivity": self.sensitivity is not None,
            "shadow-prices": bool(self.shadow_prices),
            "stress-tests": bool(self.stress_tests),
            "assumptions": bool(self.assumptions),
            "method-notes": bool(self.method_notes),
            "reproducibility": True,
        }
        return [(sid, heading) for sid, heading in SECTIONS if present[sid]]
