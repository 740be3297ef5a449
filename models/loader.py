"""``load_case``: from YAML (and CSV tables, and stress overlays) to a validated :class:`Case`.

The loader is the one door: it reads files safely, expands CSV tables
(:mod:`models.case_tables`), applies overlays, lifts ``{value: …, source: …}`` provenance tags
into the case's register, validates with pydantic, and turns every problem into a
:class:`CaseProblem` naming file, field, value and what is valid.

Files a case names. ``csv:`` tables and an overlay's ``base_case`` are paths relative to the
folder of the file that names them, and they may lie outside it (``../shared/segments.csv``, or
an absolute path): analysts keep shared tables in sibling folders. Because a case can therefore
name any file on the machine, only files that can be what is expected are read: regular files
whose names end in ``.csv`` (tables) or ``.yaml``/``.yml`` (cases, overlays, base cases, the
case given to :func:`load_case` too), checked before the file is opened; directories, devices
and pipes are refused as well. A named file that turns out not to be what it should be is
reported by its name and the reason only, never by its text: a CSV whose header is not the
table's columns (its columns named by number), a base case that is not YAML (line and column of
the parse error), a document that is not a mapping of case keys. Values from files of the right
kind are echoed at most 40 characters long, with control characters escaped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.case_tables import TABLES, expand_tables
from models.errors import CaseError, CaseProblem
from models.file_io import CASE_SUFFIXES, ReadProblem
from models.problems import (
    RESERVED_FIELDS,
    Loc,
    Origins,
    clip,
    dotted,
    entity_label,
    problems_from_validation,
    show,
)
from models.schema import Case
from models.schema_types import check_source_tag
from models.yaml_io import read_yaml

__all__ = ["DEFAULT_CASE", "MAX_OVERLAY_DEPTH", "TABLES", "load_case"]

_SOURCE_INPUTS = Path(__file__).resolve().parent.parent / "inputs"
_INSTALLED_INPUTS = Path(__file__).resolve().parent / "inputs"  # package data of a wheel
DEFAULT_CASE = (
    _SOURCE_INPUTS if (_SOURCE_INPUTS / "peru_amazon.yaml").is_file() else _INSTALLED_INPUTS
) / "peru_amazon.yaml"
"""The shipped Peruvian Amazon case: ``inputs/`` of the source tree (an editable install), or
the copy a plain ``pip install .`` puts inside the ``models`` package."""

MAX_OVERLAY_DEPTH = 8
_NOT_A_MAPPING = "a case file must be a mapping of keys (name:, segments:, ...)"
_CASE_KEYS = frozenset(Case.model_fields) | {"base_case"}
"""Top-level keys of a case or an overlay; a mapping with none of them is some other file."""


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
    origins = Origins(str(path))
    raw = _load_tree(path, origins, hasher, depth=0)
    field_sources: dict[str, str] = {}
    problems: list[CaseProblem] = []
    raw = _lift_tags(raw, (), field_sources, problems, origins)
    if not isinstance(raw, dict):  # the whole file was one {value: …, source: …} tag
        problems.append(CaseProblem(str(path), "(root)", _kind(raw), _NOT_A_MAPPING))
        raise CaseError(problems)
    for key in RESERVED_FIELDS:
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
        raise CaseError(problems_from_validation(exc, raw, origins)) from None


def _load_tree(
    path: Path, origins: Origins, hasher: Any, depth: int, named_by: Path | None = None
) -> dict[str, Any]:
    """Read a case or overlay file into a plain tree with its CSV tables expanded.

    ``named_by`` is the overlay whose ``base_case`` names ``path`` (None for the file given).
    """
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
        raw = read_yaml(path, CASE_SUFFIXES)
    except ReadProblem as exc:
        message = exc.message
        if named_by is not None:
            if exc.plain != exc.message:
                # a base case is any file an overlay names: say where it fails, quote none of it
                message = f"is not a case file: {exc.plain}; load it on its own to see why"
            message += _base_of(named_by)
        raise CaseError([CaseProblem(str(path), exc.field, exc.value, message)]) from None
    # os.fsencode: a file name that is not UTF-8 (Latin-1 "Junín.yaml") is still hashable
    hasher.update(os.fsencode(path.name) + b"\0" + path.read_bytes())
    if not isinstance(raw, dict):
        # the file's text is not shown: it may be any YAML file, not a case at all
        raise CaseError(
            [CaseProblem(str(path), "(root)", _kind(raw), _NOT_A_MAPPING + _base_of(named_by))]
        )
    if raw and not _is_tagged_value(raw) and not any(_is_case_key(key) for key in raw):
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "(root)",
                    f"a mapping of {len(raw)} key(s)",
                    "is not a case file: none of its top-level keys is a case key (name, "
                    "regions, value_chains, segments, products, sources, risk_model, …, or "
                    "base_case for an overlay)" + _base_of(named_by),
                )
            ]
        )
    if "base_case" in raw:
        return _apply_overlay(path, raw, origins, hasher, depth)
    origins.set((), str(path))
    expand_tables(raw, path.parent, origins, hasher)
    return raw


def _base_of(named_by: Path | None) -> str:
    return "" if named_by is None else f" (it is the base_case of {named_by})"


def _is_case_key(key: Any) -> bool:
    return isinstance(key, str) and key in _CASE_KEYS


def _kind(value: Any) -> str:
    """What a value is, without its content: for files that may not be case files at all."""
    if isinstance(value, str):
        return f"text of {len(value):,} character(s)"
    if isinstance(value, list):
        return f"a list of {len(value):,} item(s)"
    if isinstance(value, dict):
        return f"a mapping of {len(value):,} key(s)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else f"a {type(value).__name__}"


def _apply_overlay(
    path: Path, overlay: dict[str, Any], origins: Origins, hasher: Any, depth: int
) -> dict[str, Any]:
    unknown = set(overlay) - {"base_case", "stress", "changes"}
    if unknown:
        key = sorted(unknown, key=str)[0]  # keys may mix text and numbers
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    clip(str(key) or repr(key)),
                    show(overlay[key]),
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
                    show(base_ref),
                    "must be the path of the case this overlay changes",
                )
            ]
        )
    try:
        base_path = (path.parent / base_ref).resolve()
        found = base_path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL character...
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "base_case",
                    show(base_ref),
                    f"not a usable path ({getattr(exc, 'strerror', None) or exc}); give the "
                    "path of the case this overlay changes, relative to the overlay's folder",
                )
            ]
        ) from None
    if not found:
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "base_case",
                    show(base_ref),
                    f"the base case {base_path} does not exist; base_case is resolved "
                    "relative to the overlay's folder",
                )
            ]
        )
    base = _load_tree(base_path, origins, hasher, depth + 1, named_by=path)
    changes = overlay.get("changes") or {}
    if not isinstance(changes, dict):
        raise CaseError(
            [
                CaseProblem(
                    str(path),
                    "changes",
                    show(changes),
                    "must be a mapping of the fields to change",
                )
            ]
        )
    expand_tables(changes, path.parent, origins, hasher, record=False)
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
    origins: Origins,
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
                            file, dotted(here), show(item), "each changed entity needs its id"
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


def _lift_tags(
    node: Any,
    loc: Loc,
    found: dict[str, str],
    problems: list[CaseProblem],
    origins: Origins,
    path: str = "",
) -> Any:
    """Replace ``{value: v, source: tag}`` by ``v`` and record the tag under the field path."""
    if _is_tagged_value(node):
        if _is_tagged_value(node["value"]):
            # {value: {value: 0.15}}: which tag is meant? Lifting both would drop one silently
            problems.append(
                CaseProblem(
                    origins.find(loc)[0],
                    path or "(root)",
                    show(node),
                    "a {value: …, source: …} tag inside another tag; give the figure once, "
                    "e.g. {value: 0.15, source: '[A] …'}",
                )
            )
            while _is_tagged_value(node):  # one problem however deep: go on with the figure
                node = node["value"]
            return _lift_tags(node, loc, found, problems, origins, path)
        tag = node.get("source")
        try:
            if tag is not None and not isinstance(tag, str):
                raise ValueError("a source tag must be text such as '[S] https://…' or '[A]'")
            tag = check_source_tag(tag)
        except ValueError as exc:
            problems.append(
                CaseProblem(origins.find(loc)[0], path + ".source", show(tag), str(exc))
            )
            tag = None
        if tag is not None:
            found[path] = tag
        return _lift_tags(node["value"], loc, found, problems, origins, path)
    if isinstance(node, dict):
        return {
            k: _lift_tags(
                v,
                loc + (k,),
                found,
                problems,
                origins,
                f"{path}.{clip(str(k))}" if path else clip(str(k)),
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _lift_tags(v, loc + (n,), found, problems, origins, f"{path}[{entity_label(v, n)}]")
            for n, v in enumerate(node)
        ]
    return node
