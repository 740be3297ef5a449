"""What a report says, as plain frozen data: :class:`ReportContext` and its sections.

An adapter fills these from the optimizer's result; the report layer never re-solves. Money is
US$ (not millions), shares and probabilities are fractions. Each section that may be absent is
``None`` or an empty tuple, and the report then leaves it out. Arrays and frames are checked
once here, at the door, so the renderers can trust them.

This module holds the context, the sections every report has (executive summary, capital
stack, gap closure, reproducibility) and the assumptions register; the funders' and funds'
risk sections are in :mod:`reports.risk_sections`, the analyses' (frontier, sensitivity,
marginal values, stress tests) in :mod:`reports.analysis_sections`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from reports._frozen import _set
from reports.analysis_sections import Frontier, Sensitivity, ShadowPrice, StressResult
from reports.risk_sections import FunderRisk, GuaranteeFundRisk

__all__ = [
    "Assumption",
    "CapitalStack",
    "ExecutiveSummary",
    "GapClosure",
    "ReportContext",
    "Reproducibility",
    "package_versions",
]

GAP_COLUMNS = ("region", "value_chain", "gap_usd", "credit_usd", "deforestation_pressure")


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
