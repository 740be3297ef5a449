"""What a sensitivity sweep perturbs: the inputs, how each is scaled, the perturbed case.

Each input (every product's PD, every LGD, the copula loadings, every event probability, the
money of each kind of source, every CVaR limit) scales a ``Case.model_dump()`` tree in place;
:func:`perturbed_case` rebuilds and validates the case like a loaded one, so a scaled value the
case cannot hold (a PD pushed past 1) is refused with the field and value
(:class:`InvalidPerturbation`). :mod:`optimizer.analysis.sensitivity_analysis` sweeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import Case
from models.case_edit import with_changes
from models.errors import InputError

__all__ = [
    "INPUTS",
    "INPUTS_BY_ID",
    "INPUT_IDS",
    "InvalidPerturbation",
    "SensitivityInput",
    "perturbed_case",
]


# --- the inputs -------------------------------------------------------------------------------
# Each input is a function of (case, factor) giving the changed fields ({path: value}, the
# paths of models.case_edit) and a description of the perturbed value.
Changes = tuple[dict[str, Any], str]


def _span(f: float, values: list[float]) -> str:
    return f"× {f:g} ({min(values):.4g}–{max(values):.4g})"


def _scale_products(field: str) -> Callable[[Case, float], Changes]:
    def apply(case: Case, f: float) -> Changes:
        changes = {f"products[{p.id}].{field}": getattr(p, field) * f for p in case.products}
        return changes, _span(f, list(changes.values()))

    return apply


def _scale_copula(case: Case, f: float) -> Changes:
    cop = case.risk_model.copula
    keys = ("rho_macro", "rho_chain", "rho_region")
    changes = {f"risk_model.copula.{key}": getattr(cop, key) * f for key in keys}
    return changes, f"× {f:g} (total ρ {sum(changes.values()):.4g})"


def _scale_events(case: Case, f: float) -> Changes:
    events = case.risk_model.events
    changes = {f"risk_model.events[{e.id}].probability": e.probability * f for e in events}
    return changes, _span(f, list(changes.values()))


def _scale_amounts(kind: str) -> Callable[[Case, float], Changes]:
    def apply(case: Case, f: float) -> Changes:
        mine = [s for s in case.sources if s.kind == kind]
        changes = {f"sources[{s.id}].amount_usd": s.amount_usd * f for s in mine}
        return changes, f"× {f:g} (US${sum(changes.values()) / 1e6:,.1f}m)"

    return apply


def _scale_cvar_limits(case: Case, f: float) -> Changes:
    changes = {}
    for s in case.sources:
        for key in ("cvar_limit_usd", "cvar_limit_share"):
            if getattr(s, key) is not None:
                changes[f"sources[{s.id}].{key}"] = getattr(s, key) * f
    return changes, f"× {f:g}"


@dataclass(frozen=True)
class SensitivityInput:
    """An input the sweep can perturb: a stable id, a label, and how to scale it.

    ``applies`` says whether the case has anything to scale (no climate source, no event...);
    ``apply`` gives the scaled fields (``{path: value}``, :mod:`models.case_edit`'s paths) and
    a description of the perturbed value.
    """

    id: str
    label: str
    applies: Callable[[Case], bool]
    apply: Callable[[Case, float], Changes]
    moves_risk: bool = False
    """Whether the input changes the simulated losses (a risk-model input): the other points
    are solved on the base's own scenario set, which a re-draw would reproduce bit for bit."""


INPUTS: tuple[SensitivityInput, ...] = (
    SensitivityInput(
        "pd",
        "Probability of default (every product's base PD)",
        lambda c: True,
        _scale_products("base_pd"),
        True,
    ),
    SensitivityInput(
        "lgd",
        "Loss given default (every product's mean LGD)",
        lambda c: True,
        _scale_products("lgd_mean"),
        True,
    ),
    SensitivityInput(
        "correlation",
        "Asset correlation (copula factor loadings)",
        lambda c: c.risk_model.copula.rho_total > 0,
        _scale_copula,
        True,
    ),
    SensitivityInput(
        "event_probability",
        "Shock-event probabilities",
        lambda c: bool(c.risk_model.events),
        _scale_events,
        True,
    ),
    *(
        SensitivityInput(
            f"amount_{kind}",
            f"{kind.capitalize()} money (every {kind} source)",
            lambda c, k=kind: any(s.kind == k for s in c.sources),
            _scale_amounts(kind),
        )
        for kind in ("public", "private", "climate")
    ),
    SensitivityInput(
        "cvar_limit",
        "CVaR limits (every funder's, US$ or share)",
        lambda c: any(
            s.cvar_limit_usd is not None or s.cvar_limit_share is not None for s in c.sources
        ),
        _scale_cvar_limits,
    ),
)
"""Every input, in the order of the table. Ids are stable: scripts and ``--inputs`` use them."""
INPUT_IDS = tuple(i.id for i in INPUTS)
INPUTS_BY_ID = {i.id: i for i in INPUTS}


# --- building perturbed cases -----------------------------------------------------------------
class InvalidPerturbation(InputError, ValueError):
    """A perturbed case that fails the case checks; the message names field and value."""


def perturbed_case(case: Case, input_id: str, factor: float) -> tuple[Case, str]:
    """The case with one input scaled by ``factor``, validated like a loaded case.

    Returns
    -------
    (Case, str)
        The perturbed case (its ``content_sha256`` cleared: it is no longer the file's) and a
        description of the perturbed value.

    Raises
    ------
    KeyError
        Unknown ``input_id``.
    InvalidPerturbation
        The scaled case breaks a bound or a cross-field check (e.g. a PD pushed to 1).
    """
    changes, setting = INPUTS_BY_ID[input_id].apply(case, float(factor))
    what = f"{input_id} × {factor:g}"
    # a what-if, never saved as a case: no provenance tag
    refused = f"{what} makes the case invalid"
    return with_changes(case, changes, error=InvalidPerturbation, what=refused), setting
