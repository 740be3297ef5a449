"""The field types a case is built of, and the frozen base models of its entities.

Numbers that refuse yes/no, bounded numbers (probabilities, shares, rates, US$ amounts), ids,
names and free text without control characters, immutable mappings and provenance tags;
:mod:`models.schema` builds the case's entities from them.

Numbers are read leniently except for one thing: a yes/no value is never a number. YAML reads
``on``, ``yes`` and ``true`` as True, which pydantic would take as 1 (``coverage_ratio: on``
would mean 100 %); every number field refuses it. Integers still pass as floats and numeric
text (CSV cells arrive as text) still converts. Text fields refuse control characters: names
are one line of plain text, descriptions and provenance tags may hold line breaks and tabs only.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from models.text import first_control


# --- numbers that refuse yes/no, text without control characters ---------------------------
def refuse_bool(value: object) -> object:
    """Refuse True/False where a number is meant (YAML reads yes/no and on/off as true/false)."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "bool_for_number",
            "true/false is not a number (YAML also reads yes/no and on/off as true/false); "
            "write the figure itself, e.g. 1 or 0.5",
        )
    return value


Number = Annotated[float, BeforeValidator(refuse_bool)]
"""A float that refuses True/False; ints and numeric text convert as usual."""
Integer = Annotated[int, BeforeValidator(refuse_bool)]
"""An int that refuses True/False; integral floats and numeric text convert as usual."""


def _no_controls(allowed: str, rule: str) -> Callable[[str], str]:
    """A validator refusing control characters (:func:`models.text.first_control`) but
    ``allowed``; ``rule`` says what the field may hold."""

    def check(text: str) -> str:
        found = first_control(text, allowed)
        if found:
            raise PydanticCustomError(
                "control_character",
                "holds the control character {code} (character {position}); " + rule,
                {"code": found[1], "position": found[0]},
            )
        return text

    return check


_name_text = _no_controls("", "a name is one line of plain text: remove it")
_free_text = _no_controls(
    "\n\t", "free text may hold line breaks and tabs, no other control character: remove it"
)


FreeText = Annotated[str, AfterValidator(_free_text)]
"""Descriptions: any length, line breaks and tabs allowed, other control characters refused."""


# --- bounded number types ------------------------------------------------------------------
Probability = Annotated[Number, Field(ge=0.0, lt=1.0)]
"""A probability of default or similar: in [0, 1)."""
EventProbability = Annotated[Number, Field(ge=0.0, le=1.0)]
"""An annual event probability: in [0, 1]; 1 forces the event (stress replays)."""
Share = Annotated[Number, Field(ge=0.0, le=1.0)]
PositiveShare = Annotated[Number, Field(gt=0.0, le=1.0)]
Correlation = Annotated[Number, Field(ge=0.0, lt=1.0)]
RateFraction = Annotated[Number, Field(ge=0.0, le=2.0)]
"""An annual rate as a fraction; 2.0 (200 %/yr) is a generous ceiling that catches % typos."""
AmountUSD = Annotated[Number, Field(ge=0.0, le=1e13)]
Multiplier = Annotated[Number, Field(ge=0.0, le=100.0)]
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$"),
]
"""Ids start with a letter and use letters, digits, ``_``, ``.`` or ``-`` (no spaces)."""
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name_text)]
"""A display name: 1-200 characters on one line, no control characters."""


class FrozenDict(dict):
    """A mapping that refuses changes, so a frozen case stays frozen (and hashable)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("case mappings are immutable; build a new case with model_copy(update=...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple:
        # pickling (joblib workers) rebuilds from a plain dict instead of item by item
        return (FrozenDict, (dict(self),))


def _freeze(mapping: dict) -> FrozenDict:
    return FrozenDict(mapping)


K = typing.TypeVar("K")
V = typing.TypeVar("V")
Mapping = Annotated[dict[K, V], AfterValidator(_freeze), PlainSerializer(dict)]
"""An immutable ``dict[K, V]`` field; serialises as a plain dict."""

_TAG = re.compile(r"^\[[SDAU](/[SDAU])*\](/\[[SDAU]\])*")


def check_source_tag(tag: str | None) -> str | None:
    """Validate a provenance tag such as ``"[S] https://…"``, ``"[A]"`` or ``"[S/D] …"``."""
    if tag is None:
        return None
    # checked before strip(): it would silently drop a control character at either end
    found = first_control(tag, allowed="\n\t")
    tag = tag.strip()
    if found:
        raise ValueError(
            f"a source tag holds the control character {found[1]} (character {found[0]}); "
            "it may hold line breaks and tabs, no other control character"
        )
    if not _TAG.match(tag):
        # the tag itself is the problem's value: the message does not repeat it
        raise ValueError(
            "a source tag must start with [S] (sourced), [D] (derived), [A] (assumption) or "
            "[U] (unverified), e.g. '[S] https://…'"
        )
    return tag


class Frozen(BaseModel):
    """Base of every schema object: immutable, strict about unknown keys, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Tagged(Frozen):
    """An entity whose figures carry a provenance tag (shown in the assumptions register)."""

    source: str | None = Field(
        default=None, description="Provenance of this entity's figures: [S]/[D]/[A]/[U] + ref."
    )

    @field_validator("source")
    @classmethod
    def _check_tag(cls, tag: str | None) -> str | None:
        return check_source_tag(tag)
