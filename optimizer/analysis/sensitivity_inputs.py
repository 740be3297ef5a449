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

from pydantic import ValidationError

from models import Case
from models.errors import InputError
from models.problems import Origins, problems_from_validation

__all__ = [
    "INPUTS",
    "INPUTS_BY_ID",
    "INPUT_IDS",
    "InvalidPerturbation",
    "SensitivityInput",
    "perturbed_case",
]


# --- the inputs -------------------------------------------------------------------------------
def _scale_products(field: str) -> Callable[[dict, float], str]:
    def apply(raw: dict, f: float) -> str:
        for p in raw["products"]:
            p[field] *= f
        values = [p[field] for p in raw["products"]]
        return f"× {f:g} ({min(values):.4g}–{max(values):.4g})"

    return apply


def _scale_copula(raw: dict, f: float) -> str:
    cop = raw["risk_model"]["copula"]
    for key in ("rho_macro", "rho_chain", "rho_region"):
        cop[key] *= f
    total = cop["rho_macro"] + cop["rho_chain"] + cop["rho_region"]
    return f"× {f:g} (total ρ {total:.4g})"


def _scale_events(raw: dict, f: float) -> str:
    events = raw["risk_model"]["events"]
    for e in events:
        e["probability"] *= f
    values = [e["probability"] for e in events]
    return f"× {f:g} ({min(values):.4g}–{max(values):.4g})"


def _scale_amounts(kind: str) -> Callable[[dict, float], str]:
    def apply(raw: dict, f: float) -> str:
        total = 0.0
        for s in raw["sources"]:
            if str(s["kind"]) == kind:
                s["amount_usd"] *= f
                total += s["amount_usd"]
        return f"× {f:g} (US${total / 1e6:,.1f}m)"

    return apply


def _scale_cvar_limits(raw: dict, f: float) -> str:
    for s in raw["sources"]:
        for key in ("cvar_limit_usd", "cvar_limit_share"):
            if s.get(key) is not None:
                s[key] *= f
    return f"× {f:g}"


@dataclass(frozen=True)
class SensitivityInput:
    """An input the sweep can perturb: a stable id, a label, and how to scale it.

    ``applies`` says whether the case has anything to scale (no climate source, no event...);
    ``apply`` scales the input in a ``Case.model_dump()`` tree in place and describes the
    perturbed value.
    """

    id: str
    label: str
    applies: Callable[[Case], bool]
    apply: Callable[[dict, float], str]
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
    spec = INPUTS_BY_ID[input_id]
    raw = case.model_dump(mode="json")  # plain lists and strings, as the loader validates
    setting = spec.apply(raw, float(factor))
    raw["content_sha256"] = None
    try:
        return Case.model_validate(raw), setting
    except ValidationError as exc:
        origin = f"{case.source_file or case.name} ({input_id} × {factor:g})"
        problems = problems_from_validation(exc, raw, Origins(origin))
        text = "; ".join(f"{p.field} = {p.value}: {p.message}" for p in problems)
        raise InvalidPerturbation(
            f"{input_id} × {factor:g} makes the case invalid: {text}"
        ) from None
