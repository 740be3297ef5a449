"""The one way ppcfin changes a case: set fields by path, tag each change, validate the result.

The frontier's points (:func:`optimizer.analysis.frontier.case_at`), the sensitivity points
(:func:`optimizer.analysis.sensitivity_inputs.perturbed_case`) and a diagnosis's relaxed case
(:meth:`optimizer.analysis.diagnose.Diagnosis.relaxed_case`) are all
:func:`with_changes`: the changed case is validated like a loaded one, each changed field gets
the provenance tag its caller gives in ``field_sources``, its content hash is cleared (it is no longer the file's),
and a change the case cannot hold is one error naming the field, the value and the rule.

A field path reads as the case's own provenance keys: ``policy.max_share_per_segment``,
``sources[PUB].amount_usd``, ``risk_model.copula.rho_macro``,
``risk_model.events[roya].probability``: dotted names, and ``[id]`` picking an item of a list
by its ``id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from models.errors import InputError
from models.problems import Origins, problems_from_validation
from models.schema import Case

__all__ = ["InvalidEdit", "field_value", "with_changes"]

_PART = re.compile(r"^(?P<name>\w+)(\[(?P<id>[^\]]+)\])?$")


class InvalidEdit(InputError, ValueError):
    """A changed case that fails the case checks; the message names field, value and rule."""


def _node(raw: dict, path: str) -> tuple[dict, str]:
    """The dict holding the last part of ``path`` in a dumped case, and that key."""
    parts = path.split(".")
    node: Any = raw
    for k, part in enumerate(parts):
        m = _PART.match(part)
        if m is None:
            raise KeyError(f"case field path {path!r}: {part!r} is not a name or name[id]")
        name, item = m["name"], m["id"]
        last = k == len(parts) - 1 and item is None
        if last:
            if not isinstance(node, dict) or name not in node:
                raise KeyError(f"case field path {path!r}: no field {name!r}")
            return node, name
        node = node[name]
        if item is not None:
            found = [x for x in node if isinstance(x, dict) and x.get("id") == item]
            if not found:
                raise KeyError(f"case field path {path!r}: no item with id {item!r}")
            node = found[0]
    raise KeyError(f"case field path {path!r} names an item, not a field")


def field_value(case: Case, path: str) -> Any:
    """The value of one field of ``case`` by path (as :func:`with_changes` reads paths)."""
    node, key = _node(case.model_dump(mode="json"), path)
    return node[key]


def with_changes(
    case: Case,
    changes: Mapping[str, Any],
    why: str | Mapping[str, str] | None = None,
    error: type[InputError] = InvalidEdit,
    what: str = "the changed case is invalid",
) -> Case:
    """``case`` with each field path set to its value, tagged, and validated like a loaded case.

    Parameters
    ----------
    case : Case
    changes : mapping of str to value
        Field path (see the module) → new value.
    why : str or mapping of str to str, optional
        Each changed field's provenance tag (``field_sources``), or a tag per path; ``{before}``
        and ``{value}`` in a tag are filled with the field's old and new values. None: no tag
        (a what-if that is never saved as a case: a frontier or sensitivity point).
    error : type of InputError
        What a case that cannot hold the changes raises (the caller's own kind).
    what : str
        How that error's message begins (the change in the caller's words).

    Returns
    -------
    Case
        Validated; ``content_sha256`` cleared; unchanged fields as they were.

    Raises
    ------
    KeyError
        A path that names no field of the case (a caller's bug, not the user's input).
    InputError
        ``error``: the changed case breaks a bound or a cross-field rule, naming each.
    """
    raw = case.model_dump(mode="json")  # plain lists and strings, as the loader validates
    tags = dict(raw.get("field_sources") or {})
    for path, value in changes.items():
        node, key = _node(raw, path)
        before, node[key] = node[key], value
        if why is not None:
            tag = why if isinstance(why, str) else why[path]
            tags[path] = tag.format(before=before, value=value)
    raw["field_sources"] = tags
    raw["content_sha256"] = None
    try:
        return Case.model_validate(raw)
    except ValidationError as exc:
        problems = problems_from_validation(exc, raw, Origins(case.source_file or case.name))
        text = "; ".join(f"{p.field} = {p.value}: {p.message}" for p in problems)
        raise error(f"{what}: {text}") from None
