"""Reading case files safely: bounded YAML, strict UTF-8, CSV tables.

YAML comes from hand-edited files, so the reader refuses what a typo or a hostile file could do:
object construction (safe loader only), alias bombs (expanded size bounded) and alias loops,
duplicate keys (the second would silently win), numbers too long to be a case figure and dates
that do not exist. This module parses the YAML; the file itself is read by
:func:`models.file_io.read_text` (a regular file named ``.yaml``/``.yml``, bounded, strict UTF-8),
CSV tables by :mod:`models.csv_io`. Their names are re-exported here, so ``models.yaml_io`` stays
the one place to find how a case file is read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from models.csv_io import MAX_TABLE_CELLS, read_csv_rows
from models.file_io import (
    CASE_SUFFIXES,
    MAX_FILE_BYTES,
    SHOWN_CHARS,
    TABLE_SUFFIXES,
    ReadProblem,
    read_text,
    short,
)

__all__ = [
    "CASE_SUFFIXES",
    "MAX_EXPANDED_NODES",
    "MAX_FILE_BYTES",
    "MAX_FLOW_LEVELS",
    "MAX_INT_CHARS",
    "MAX_NESTING",
    "MAX_TABLE_CELLS",
    "MAX_YAML_BYTES",
    "SHOWN_CHARS",
    "TABLE_SUFFIXES",
    "ReadProblem",
    "read_csv_rows",
    "read_text",
    "read_yaml",
]

MAX_YAML_BYTES = 2 * 1024 * 1024
"""Largest YAML file: the pure-Python parser needs ~1-3 s per MB, so a bigger one would look
like a hang; the shipped case is ~20 kB and big tables belong in CSV files."""
MAX_EXPANDED_NODES = 200_000
MAX_NESTING = 64
MAX_FLOW_LEVELS = 4 * MAX_NESTING
"""``[[[…`` deeper than this stops the scanner, whose look-ahead is quadratic in the depth."""
MAX_INT_CHARS = 40
"""Longest integer literal: case figures are below 1e13; longer ones would only cost time."""

_LONG_QUOTE = re.compile(rf"'[^'\n]{{{SHOWN_CHARS},}}'|\"[^\"\n]{{{SHOWN_CHARS},}}\"")


def _clip_quotes(text: str) -> str:
    """PyYAML's messages quote tokens, tags and alias names whole: keep their first characters."""
    return _LONG_QUOTE.sub(lambda m: m[0][: SHOWN_CHARS - 1] + "…" + m[0][0], text)


class _BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and bounds the size aliases expand to."""

    _composed_nodes = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # Inside `[`/`{` the scanner keeps every open level as a possible key and re-checks them
        # all per token: 2 MB of `[` would take hours before the nesting check could run.
        if self.flow_level >= MAX_FLOW_LEVELS:
            raise ReadProblem(_too_deep())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # Counted while parsing, so a file of millions of tiny values stops early instead of
        # being parsed whole (slowly) before its expanded size is checked.
        self._composed_nodes += 1
        if self._composed_nodes > MAX_EXPANDED_NODES:
            raise ReadProblem(_too_many_values())
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, LookupError, AttributeError, TypeError) as exc:
            # PyYAML's own scalar constructors fail so: `2001-13-45` is read as a date that does
            # not exist (ValueError), `!!bool xyz` (KeyError), `!!int ""` (IndexError)...
            kind = str(node.tag).rsplit(":", 1)[-1]
            value = node.value if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {short(str(value))!r} as {kind}"
                + (f" ({exc})" if type(exc) is ValueError else "")
                + "; quote it (or drop its !!tag) to keep it as text",
                node.start_mark,
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if isinstance(node, yaml.ScalarNode) and len(text) > MAX_INT_CHARS:
            # `1:2:3:…` (base 60) or a long 0x… would take quadratic time to build
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the integer {short(text)!r} has {len(text):,} characters; "
                f"a case figure has at most {MAX_INT_CHARS}",
                node.start_mark,
            )
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if not isinstance(node, yaml.MappingNode):  # `!!set [1]`: the base class says why
            return super().construct_mapping(node, deep=deep)
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are allowed; explicit keys may override them
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {short(repr(key))} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", _BoundedSafeLoader.construct_yaml_int)


def _too_deep() -> str:
    return f"the YAML is nested too deeply; at most {MAX_NESTING} levels"


def _too_many_values() -> str:
    return (
        f"the YAML expands to more than {MAX_EXPANDED_NODES:,} values (anchors/aliases "
        "repeated too often); write the values out or split the tables into CSV files"
    )


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """Number of nodes and depth the document has once every alias is expanded.

    Aliases are shared node objects, so sizes are memoised by identity: linear time even for a
    "billion laughs" document whose expansion is exponential. An alias inside the node it names
    (``a: &a [*a]``) would expand forever: it is refused.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # being expanded: their children are still on the stack
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        if not done and key in open_nodes:
            mark = node.start_mark
            raise ReadProblem(
                f"an alias refers to the list or mapping that holds it (a loop, anchored at "
                f"line {mark.line + 1}); write the values out",
                field=f"line {mark.line + 1}, column {mark.column + 1}",
            )
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done or not children:
            size[key] = 1 + sum(size.get(id(c), 0) for c in children)
            depth[key] = 1 + max((depth.get(id(c), 0) for c in children), default=0)
            # cap to avoid huge ints in pathological cases
            size[key] = min(size[key], MAX_EXPANDED_NODES + 1)
            open_nodes.discard(key)
            continue
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)], depth[id(root)]


def read_yaml(path: Path, suffixes: Collection[str] | None = None) -> Any:
    """Parse one YAML document safely and return plain Python data.

    Parameters
    ----------
    path : Path
        The file; its name must end in one of ``suffixes`` (None: any name).
    suffixes : collection of str, optional
        Lower-case endings allowed, e.g. :data:`CASE_SUFFIXES` (the loader's choice for every
        case file); None, the default, reads any name.

    Raises
    ------
    ReadProblem
        The file cannot be read or is not YAML; ``plain`` then says where without quoting it.
    """
    text = read_text(path, MAX_YAML_BYTES, suffixes)
    if not text.strip():
        raise ReadProblem("the file is empty; a case needs at least name, regions, segments...")
    loader: _BoundedSafeLoader | None = None
    try:
        loader = _BoundedSafeLoader(io.StringIO(text))  # checks the first characters already
        node = loader.get_single_node()
        if node is None:
            raise ReadProblem("the file holds no YAML document")
        size, depth = _expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise ReadProblem(_too_many_values())
        if depth > MAX_NESTING:
            raise ReadProblem(f"the YAML is nested {depth} levels deep; at most {MAX_NESTING}")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        # exc.problem and exc.context only: str(exc) would add a snippet of the line's text
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown place)"
        what = _clip_quotes(exc.problem or exc.context or "malformed YAML")
        raise ReadProblem(
            f"malformed YAML at {where}: {what}",
            field=where,
            plain=f"YAML parse error at {where}",
        ) from None
    except yaml.reader.ReaderError as exc:
        raise ReadProblem(
            f"character U+{exc.character:04X} at offset {exc.position} is not allowed in YAML "
            f"({exc.reason}); remove it"
        ) from None
    except yaml.YAMLError as exc:
        raise ReadProblem(
            f"malformed YAML: {_clip_quotes(short(str(exc), 200))}",
            plain="YAML parse error",
        ) from None
    except RecursionError:
        raise ReadProblem(_too_deep()) from None
    except (ValueError, OverflowError) as exc:
        # the scanner's own conversions, e.g. the escape "\U0011FFFF" is past the last character
        mark = loader.get_mark() if loader is not None else None
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ReadProblem(
            f"malformed YAML at {where}: {short(str(exc), 200)}",
            field=where,
            plain=f"YAML parse error at {where}",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
