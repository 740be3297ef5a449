"""``load_case``: from YAML (and CSV tables, and stress overlays) to a validated :class:`Case`.

The loader is the one door: it reads files safely, expands CSV tables, applies overlays, lifts
``{value: …, source: …}`` provenance tags into the case's register, validates with pydantic, and
turns every problem into a :class:`CaseProblem` naming file, field, value and what is valid.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from models.crosscheck import CrossFieldProblems
from models.errors import CaseError, CaseProblem
from models.schema import (
    Case,
    FinanceSource,
    GuaranteeFund,
    LoanProduct,
    Region,
    Segment,
    ShockEvent,
    ValueChain,
    check_source_tag,
)
from models.yaml_io import ReadProblem, read_csv_rows, read_yaml

DEFAULT_CASE = Path(__file__).resolve().parent.parent / "inputs" / "peru_amazon.yaml"
"""The shipped Peruvian Amazon case."""

# Tables that may live in a CSV file next to the YAML: ``segments: {csv: segments.csv}``.
TABLES: dict[tuple[str, ...], type[BaseModel]] = {
    ("regions",): Region,
    ("value_chains",): ValueChain,
    ("segments",): Segment,
    ("products",): LoanProduct,
    ("funds",): GuaranteeFund,
    ("sources",): FinanceSource,
    ("risk_model", "events"): ShockEvent,
}
MAX_OVERLAY_DEPTH = 8
_RESERVED = ("field_sources", "source_file", "content_sha256")

Loc = tuple[str | int, ...]


class _Origins:
    """Which file (and line) each part of the merged case tree came from."""

    def __init__(self, root_file: str):
        self._map: dict[Loc, tuple[str, int | None]] = {(): (root_file, None)}

    def set(self, loc: Loc, file: str, line: int | None = None) -> None:
        self._map[loc] = (file, line)

    def find(self, loc: Loc) -> tuple[str, int | None]:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self._map:
                return self._map[loc[:cut]]
        return self._map[()]


def load_case(path: str | Path | None = None) -> Case:
    """Load, check and freeze a case.

    Parameters
    ----------
    path : str or Path, optional
        A case YAML file, or a stress overlay (a YAML with ``base_case:`` and ``changes:``).
        Omitted: the shipped default case ``inputs/peru_amazon.yaml``.

    Returns
    -------
    Case
        Validated and immutable, with ``source_file``, ``content_sha256`` and the provenance
        tags of single figures (``field_sources``) set.

    Raises
    ------
    CaseError
        Listing every problem found, each with file, field path, value and what would be valid.
    """
    path = Path(path) if path is not None else DEFAULT_CASE
    hasher = hashlib.sha256()
    origins = _Origins(str(path))
    raw = _load_tree(path, origins, hasher, depth=0)
    field_sources: dict[str, str] = {}
    problems: list[CaseProblem] = []
    raw = _lift_tags(raw, (), field_sources, problems, origins)
    for key in _RESERVED:
        if key in raw:
            file, _ = origins.find((key,))
            problems.append(CaseProblem(file, key, "…", "set by the loader; remove it"))
    if problems:
        raise CaseError(problems)
    raw["field_sources"] = field_sources
    raw["source_file"] = str(path)
    raw["content_sha256"] = hasher.hexdigest()
    try:
        return Case.model_validate(raw)
    except ValidationError as exc:
        raise CaseError(_problems_from_validation(exc, raw, origins)) from None


def _load_tree(path: Path, origins: _Origins, hasher: Any, depth: int) -> dict[str, Any]:
    """Read a case or overlay file into a plain tree with its CSV tables expanded."""
    if depth > MAX_OVERLAY_DEPTH:
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "base_case",
                    "…",
                    f"overlays nest more than {MAX_OVERLAY_DEPTH} deep (a cycle?)",
                )
            ]
        )
    try:
        raw = read_yaml(path)
    except ReadProblem as exc:
        raise CaseError([CaseProblem(str(path), exc.field, exc.value, exc.message)]) from None
    hasher.update(path.name.encode() + b"\0" + path.read_bytes())
    if not isinstance(raw, dict):
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "(root)",
                    _show(raw),
                    "a case file must be a mapping of keys (name:, segments:, ...)",
                )
            ]
        )
    if "base_case" in raw:
        return _apply_overlay(path, raw, origins, hasher, depth)
    origins.set((), str(path))
    _expand_tables(raw, path.parent, origins, hasher)
    return raw


def _apply_overlay(
    path: Path, overlay: dict[str, Any], origins: _Origins, hasher: Any, depth: int
) -> dict[str, Any]:
    unknown = set(overlay) - {"base_case", "stress", "changes"}
    if unknown:
        key = sorted(unknown)[0]
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    key,
                    _show(overlay[key]),
                    "unknown overlay key; an overlay has base_case, stress, changes",
                )
            ]
        )
    base_ref = overlay["base_case"]
    if not isinstance(base_ref, str):
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "base_case",
                    _show(base_ref),
                    "must be the path of the case this overlay changes",
                )
            ]
        )
    base = _load_tree((path.parent / base_ref).resolve(), origins, hasher, depth + 1)
    changes = overlay.get("changes") or {}
    if not isinstance(changes, dict):
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "changes",
                    _show(changes),
                    "must be a mapping of the fields to change",
                )
            ]
        )
    _expand_tables(changes, path.parent, origins, hasher, record=False)
    problems: list[CaseProblem] = []
    _merge(base, changes, (), origins, str(path), problems)
    if problems:
        raise CaseError(problems)
    if "stress" in overlay:
        base["stress"] = overlay["stress"]
        origins.set(("stress",), str(path))
    return base


def _merge(
    base: dict[str, Any],
    changes: dict[str, Any],
    loc: Loc,
    origins: _Origins,
    file: str,
    problems: list[CaseProblem],
) -> None:
    """Apply an overlay: mappings merge key by key, lists of ``id``-ed entities merge by id."""
    for key, new in changes.items():
        here = loc + (key,)
        old = base.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and not _is_tagged_value(new):
            _merge(old, new, here, origins, file, problems)
        elif _is_entity_list(old) and isinstance(new, list):
            for item in new:
                if not (isinstance(item, dict) and "id" in item):
                    problems.append(
                        CaseProblem(
                            file, _dotted(here), _show(item), "each changed entity needs its id"
                        )
                    )
                    continue
                ids = [e.get("id") for e in old]
                if item["id"] in ids:
                    n = ids.index(item["id"])
                    _merge(old[n], item, here + (n,), origins, file, problems)
                else:
                    old.append(item)
                    origins.set(here + (len(old) - 1,), file)
        else:
            base[key] = new
            origins.set(here, file)


def _is_entity_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(e, dict) and "id" in e for e in value)


def _is_tagged_value(value: Any) -> bool:
    return isinstance(value, dict) and "value" in value and set(value) <= {"value", "source"}


def _expand_tables(
    tree: dict[str, Any], folder: Path, origins: _Origins, hasher: Any, record: bool = True
) -> None:
    """Replace ``{csv: file}`` tables by their rows, converted to the schema's field shapes."""
    for keys, model in TABLES.items():
        parent: Any = tree
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        ref = parent.get(keys[-1])
        if not (isinstance(ref, dict) and set(ref) == {"csv"}):
            continue
        csv_path = folder / str(ref["csv"])
        try:
            rows = read_csv_rows(csv_path)
        except ReadProblem as exc:
            raise CaseError(
                [
                    CaseProblem(
                        str(csv_path),
                        f"{_dotted(keys)}.csv ({exc.field})",
                        _show(ref["csv"]),
                        exc.message,
                    )
                ]
            ) from None
        hasher.update(csv_path.name.encode() + b"\0" + csv_path.read_bytes())
        parent[keys[-1]] = [_row_to_fields(cells, model) for _, cells in rows]
        for n, (line, _) in enumerate(rows):
            origins.set(keys + (n,), f"{csv_path} line {line}")


def _row_to_fields(cells: dict[str, str], model: type[BaseModel]) -> dict[str, Any]:
    """CSV cells to field values: ``a;b`` lists, ``k:v;k:v`` mappings, ``field.source`` tags."""
    row: dict[str, Any] = {}
    for column, text in cells.items():
        if column.endswith(".source"):
            field = column[: -len(".source")]
            row[field] = {"value": row.pop(field, None), "source": text}
            continue
        shape = _field_shape(model, column)
        if shape == "list":
            value: Any = [part.strip() for part in text.split(";") if part.strip()]
        elif shape == "dict":
            value = dict(
                (k.strip(), v.strip())
                for k, _, v in (part.partition(":") for part in text.split(";") if part.strip())
            )
        else:
            value = text
        if isinstance(row.get(column), dict) and "source" in row[column]:
            row[column]["value"] = value
        else:
            row[column] = value
    return row


def _field_shape(model: type[BaseModel], name: str) -> str:
    field = model.model_fields.get(name)
    if field is None:
        return "scalar"
    text = str(field.annotation)
    if text.startswith("dict") or "dict[" in text:
        return "dict"
    if "tuple[" in text:
        return "list"
    return "scalar"


def _lift_tags(
    node: Any,
    loc: Loc,
    found: dict[str, str],
    problems: list[CaseProblem],
    origins: _Origins,
    path: str = "",
) -> Any:
    """Replace ``{value: v, source: tag}`` by ``v`` and record the tag under the field path."""
    if _is_tagged_value(node):
        tag = node.get("source")
        try:
            tag = check_source_tag(tag) if isinstance(tag, str) else tag
        except ValueError as exc:
            problems.append(
                CaseProblem(origins.find(loc)[0], path + ".source", _show(tag), str(exc))
            )
        if tag is not None:
            found[path] = str(tag)
        return _lift_tags(node["value"], loc, found, problems, origins, path)
    if isinstance(node, dict):
        return {
            k: _lift_tags(
                v, loc + (k,), found, problems, origins, f"{path}.{k}" if path else str(k)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _lift_tags(v, loc + (n,), found, problems, origins, f"{path}[{_label(v, n)}]")
            for n, v in enumerate(node)
        ]
    return node


def _label(item: Any, index: int) -> str | int:
    """Entities are named by id in field paths (``sources[PRIV_MFI]``); other items by index."""
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return item["id"]
    return index


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _display_loc(loc: Loc, raw: Any) -> str:
    """``("sources", 3, "amount_usd")`` -> ``sources[PRIV_MFI].amount_usd`` using the raw tree."""
    out, node = "", raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if 0 <= part < len(node) else None
            label = _label(item, part)
            out += f"[{label}]"
            node = item
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(root)"


def _problems_from_validation(
    exc: ValidationError, raw: dict[str, Any], origins: _Origins
) -> list[CaseProblem]:
    problems: list[CaseProblem] = []
    for err in exc.errors():
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, CrossFieldProblems):
            for loc, value, message in error.problems:
                problems.append(_problem(tuple(loc), _show(value), message, raw, origins))
            continue
        loc = tuple(p for p in err["loc"] if not _is_pydantic_tag(p))
        if err["type"] == "missing":
            message, value = "required field is missing", "-"
        elif err["type"] == "extra_forbidden":
            message, value = _unknown_key_message(loc), _show(err.get("input"))
        else:
            message, value = err["msg"], _show(err.get("input"))
        problems.append(_problem(loc, value, message, raw, origins))
    return problems


def _is_pydantic_tag(part: Any) -> bool:
    # pydantic adds union-member tags such as "function-after[...]" to locations
    return isinstance(part, str) and ("[" in part and "]" in part and "(" not in part)


def _problem(loc: Loc, value: str, message: str, raw: Any, origins: _Origins) -> CaseProblem:
    file, _ = origins.find(loc)
    return CaseProblem(file=file, field=_display_loc(loc, raw), value=value, message=message)


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
        return [n for n in model.model_fields if n not in _RESERVED]
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


def _show(value: Any, limit: int = 80) -> str:
    """A value as short text for messages."""
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else str(copy.copy(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
