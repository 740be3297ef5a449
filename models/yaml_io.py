"""Reading case files safely: bounded YAML, strict UTF-8, CSV tables.

YAML comes from hand-edited files, so the reader refuses what a typo or a hostile file could do:
object construction (safe loader only), alias bombs (expanded size bounded), duplicate keys (the
second would silently win), non-UTF-8 bytes and files too large to be a case.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000
MAX_NESTING = 64


class ReadProblem(Exception):
    """A file that cannot be read as a case; ``field`` locates it when known."""

    def __init__(self, message: str, field: str = "(file)", value: str = "-"):
        super().__init__(message)
        self.message, self.field, self.value = message, field, value


class _BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and bounds the size aliases expand to."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
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
                    f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """Number of nodes and depth the document has once every alias is expanded.

    Aliases are shared node objects, so sizes are memoised by identity: linear time even for a
    "billion laughs" document whose expansion is exponential.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
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
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)], depth[id(root)]


def read_text(path: Path) -> str:
    """Read a file as strict UTF-8, with a size limit; problems become :class:`ReadProblem`."""
    try:
        if path.is_dir():
            raise ReadProblem("is a directory, not a case file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ReadProblem(
                f"file is {size:,} bytes; a case file must be under {MAX_FILE_BYTES:,}"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReadProblem("file not found") from None
    except PermissionError:
        raise ReadProblem("permission denied") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadProblem(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def read_yaml(path: Path) -> Any:
    """Parse one YAML document safely and return plain Python data."""
    text = read_text(path)
    if not text.strip():
        raise ReadProblem("the file is empty; a case needs at least name, regions, segments...")
    loader = _BoundedSafeLoader(io.StringIO(text))
    try:
        node = loader.get_single_node()
        if node is None:
            raise ReadProblem("the file holds no YAML document")
        size, depth = _expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise ReadProblem(
                f"the YAML expands to more than {MAX_EXPANDED_NODES:,} values (anchors/aliases "
                "repeated too often); write the values out or split the tables into CSV files"
            )
        if depth > MAX_NESTING:
            raise ReadProblem(f"the YAML is nested {depth} levels deep; at most {MAX_NESTING}")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown place)"
        what = exc.problem or exc.context or "malformed YAML"
        raise ReadProblem(f"malformed YAML at {where}: {what}", field=where) from None
    except yaml.YAMLError as exc:
        raise ReadProblem(f"malformed YAML: {exc}") from None
    except RecursionError:
        raise ReadProblem(f"the YAML is nested too deeply; at most {MAX_NESTING} levels") from None
    finally:
        loader.dispose()


def read_csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV table as ``(line_number, {column: text})``; blank cells are dropped."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ReadProblem("the CSV table is empty; it needs a header row")
    blank = [n for n, col in enumerate(reader.fieldnames) if not (col or "").strip()]
    if blank:
        raise ReadProblem(f"column {blank[0] + 1} of the header has no name", field="header")
    rows = []
    for row in reader:
        if None in row:
            raise ReadProblem(
                f"line {reader.line_num} has more cells than the header's {len(reader.fieldnames)}",
                field=f"line {reader.line_num}",
            )
        cells = {k.strip(): v.strip() for k, v in row.items() if v is not None and v.strip()}
        if cells:
            rows.append((reader.line_num, cells))
    return rows
