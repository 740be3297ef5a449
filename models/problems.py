"""Turning validation failures into :class:`CaseProblem` s an analyst can act on.

Each problem names the file the value came from (the case, an overlay, or a CSV table and line),
the field path with entity ids (``sources[PRIV_MFI].amount_usd``), the value, and what would be
valid — with a "did you mean" for misspelt keys.

Problems are printed to terminals and pasted into e-mails, so no text in them is trusted: values
are cut to their first :data:`SHOWN_CHARS` characters, field-path parts to
:data:`SHOWN_KEY_CHARS`, and every part goes through :func:`~models.errors.one_line`
(control characters and line breaks escaped).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from models.crosscheck import CrossFieldProblems
from models.errors import CaseProblem, one_line
from models.schema import Case
from models.text import printable

__all__ = [
    "RESERVED_FIELDS",
    "SHOWN_CHARS",
    "Loc",
    "Origins",
    "clip",
    "display_loc",
    "dotted",
    "entity_label",
    "one_line",
    "printable",
    "problems_from_validation",
    "show",
]

SHOWN_CHARS = 40
"""Most characters of a value a message echoes: enough to recognise a typo, too few to print a
file the case pointed at."""
SHOWN_KEY_CHARS = 64
"""Most characters of one part of a field path: a valid id (up to 64) is named in full."""
Loc = tuple[str | int, ...]
RESERVED_FIELDS = ("field_sources", "source_file", "content_sha256")
"""Case fields the loader sets; a case file may not."""


class Origins:
    """Which file (and line) each part of the merged case tree came from."""

    def __init__(self, root_file: str):
        self._map: dict[Loc, tuple[str, int | None]] = {(): (root_file, None)}

    def set(self, loc: Loc, file: str, line: int | None = None) -> None:
        """Records ``file`` (and ``line``, if known) as where the part at ``loc`` came from.

        :meth:`find` gives it to everything under ``loc`` that has no origin of its own.
        """
        self._map[loc] = (file, line)

    def find(self, loc: Loc) -> tuple[str, int | None]:
        """The file and line the part at ``loc`` came from: those of its nearest recorded ancestor.

        ``loc`` itself counts as an ancestor; with none recorded, the root file (line None).
        """
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self._map:
                return self._map[loc[:cut]]
        return self._map[()]


def entity_label(item: Any, index: int) -> str | int:
    """Entities are named by id in field paths (``sources[PRIV_MFI]``); other items by index."""
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return clip(item["id"])
    return index


def clip(text: str, limit: int = SHOWN_KEY_CHARS) -> str:
    """One part of a field path (a key, an id), cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "…"


def dotted(loc: Loc) -> str:
    """``("sources", 3, "amount_usd")`` -> ``sources[3].amount_usd``, without the raw tree.

    Items stay numbered (:func:`display_loc` names entities by id), each key is cut by :func:`clip`,
    and the empty path gives ``""``.
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + clip(str(part))
    return out


def display_loc(loc: Loc, raw: Any) -> str:
    """``("sources", 3, "amount_usd")`` -> ``sources[PRIV_MFI].amount_usd`` using the raw tree."""
    out, node = "", raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if 0 <= part < len(node) else None
            tag = entity_label(item, part)
            out += f"[{tag}]"
            node = item
        else:
            out += ("." if out else "") + clip(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(root)"


def problems_from_validation(
    exc: ValidationError, raw: dict[str, Any], origins: Origins
) -> list[CaseProblem]:
    """Every failure of a pydantic validation of the case tree, as a :class:`CaseProblem`.

    Parameters
    ----------
    exc : ValidationError
        The error raised by validating ``raw`` as a :class:`~models.schema.Case`.
    raw : dict
        The merged case tree that was validated; field paths name its entities by id.
    origins : Origins
        Which file each part of ``raw`` came from; each problem names the file of its field.

    Returns
    -------
    list of CaseProblem
        In pydantic's order. The problems a :class:`~models.crosscheck.CrossFieldProblems` carries
        come one by one; a list's ``too_short`` error is left out when an item of that list has
        an error of its own. A missing field shows the value ``"-"``, an unknown key the valid
        fields where known (with a "did you mean"), and a validator's message loses pydantic's
        ``"Value error, "`` prefix.
    """
    problems: list[CaseProblem] = []
    errors = exc.errors()
    # every proper prefix of an error's location, as a set: thousands of errors stay linear
    has_inner_error: set[Loc] = set()
    for err in errors:
        loc = tuple(err["loc"])
        has_inner_error.update(loc[:cut] for cut in range(len(loc)))
    for err in errors:
        here = tuple(err["loc"])
        if err["type"] == "too_short" and here in has_inner_error:
            continue  # an item of this list failed; its own error says why
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, CrossFieldProblems):
            for loc, value, message in error.problems:
                problems.append(_problem(tuple(loc), show(value), message, raw, origins))
            continue
        loc = tuple(p for p in err["loc"] if not _is_pydantic_tag(p))
        if err["type"] == "missing":
            message, value = "required field is missing", "-"
        elif err["type"] == "extra_forbidden":
            message, value = _unknown_key_message(loc), show(err.get("input"))
        elif err["type"] == "value_error":  # a validator's own message: drop pydantic's prefix
            message, value = err["msg"].removeprefix("Value error, "), show(err.get("input"))
        else:
            message, value = err["msg"], show(err.get("input"))
        problems.append(_problem(loc, value, message, raw, origins))
    return problems


def _is_pydantic_tag(part: Any) -> bool:
    # pydantic adds union-member tags such as "function-after[...]" to locations
    return isinstance(part, str) and ("[" in part and "]" in part and "(" not in part)


def _problem(loc: Loc, value: str, message: str, raw: Any, origins: Origins) -> CaseProblem:
    file, _ = origins.find(loc)
    return CaseProblem(file=file, field=display_loc(loc, raw), value=value, message=message)


def _unknown_key_message(loc: Loc) -> str:
    valid = _valid_fields_at(loc[:-1])
    key = str(loc[-1]) if loc else ""
    if not valid:
        return "unknown field"
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}valid fields: {', '.join(valid)}"


def _valid_fields_at(loc: Loc) -> list[str]:
    """Field names of the schema model that sits at ``loc`` (walking annotations from Case)."""
    model: Any = Case
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            # a dict value: stay on the dict's value model
            continue
        model = _inner_model(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [n for n in model.model_fields if n not in RESERVED_FIELDS]
    return []


def _inner_model(annotation: Any) -> Any:
    """The pydantic model inside ``X | None``, ``tuple[X, ...]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, tuple, dict) or args:
        for arg in reversed(args):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def show(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A value as short, printable text for messages.

    Text is quoted (``'lots'``), other values written as Python does (``1.5``, ``null`` for
    None); at most ``limit`` characters are kept, then ``…``, and control characters are escaped.
    """
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return one_line(text if len(text) <= limit else text[:limit] + "…")
