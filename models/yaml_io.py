"""Reading case files safely: bounded YAML, strict UTF-8, CSV tables.

YAML comes from hand-edited files, so the reader refuses what a typo or a hostile file could do:
object construction (safe loader only), alias bombs (expanded size bounded) and alias loops,
duplicate keys (the second would silently win), numbers too long to be a case figure, dates that
do not exist, non-UTF-8 bytes, devices and pipes, and files too large to be a case.

A case may name other files (tables, a base case), so a file's name must say what it is before a
byte of it is read: ``.yaml``/``.yml`` for cases, ``.csv`` for tables. A CSV table's header must
be the expected table's columns, each once: a file that is not such a table is refused by its
header alone, and its columns are named by number, so no message prints another file's text.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import stat
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from models.text import first_control

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file read at all (CSV tables; csv parses in C, quickly)."""
MAX_YAML_BYTES = 2 * 1024 * 1024
"""Largest YAML file: the pure-Python parser needs ~1-3 s per MB, so a bigger one would look
like a hang; the shipped case is ~20 kB and big tables belong in CSV files."""
MAX_EXPANDED_NODES = 200_000
MAX_NESTING = 64
MAX_FLOW_LEVELS = 4 * MAX_NESTING
"""``[[[…`` deeper than this stops the scanner, whose look-ahead is quadratic in the depth."""
MAX_INT_CHARS = 40
"""Longest integer literal: case figures are below 1e13; longer ones would only cost time."""
MAX_TABLE_CELLS = 200_000
"""Most cells (rows x columns) in one CSV table: the counterpart of MAX_EXPANDED_NODES."""
CASE_SUFFIXES = (".yaml", ".yml")
"""How the name of a case, an overlay or a base case ends (in any letter case)."""
TABLE_SUFFIXES = (".csv",)
"""How the name of a CSV table ends (in any letter case)."""
SHOWN_CHARS = 40
"""Most characters of a file's text that a message quotes (a token, a key)."""


class ReadProblem(Exception):
    """A file that cannot be read as a case; ``field`` locates it when known.

    ``plain`` says the same without quoting any of the file's text (for a file the case only
    names, which may be anything); it is ``message`` when that quotes nothing.
    """

    def __init__(
        self, message: str, field: str = "(file)", value: str = "-", plain: str | None = None
    ):
        super().__init__(message)
        self.message, self.field, self.value = message, field, value
        self.plain = message if plain is None else plain


def _short(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


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
                f"cannot read {_short(str(value))!r} as {kind}"
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
                f"the integer {_short(text)!r} has {len(text):,} characters; "
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
                    f"duplicate key {_short(repr(key))} (first at line {seen[key] + 1})",
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


def read_text(
    path: Path, max_bytes: int = MAX_FILE_BYTES, suffixes: Collection[str] | None = None
) -> str:
    """Read a file as strict UTF-8, with a size limit; problems become :class:`ReadProblem`.

    Only regular files are read: a device or a pipe (``/dev/zero``, ``/dev/stdin``) would never
    end. At most ``max_bytes + 1`` bytes are read even if the size on disk says less. With
    ``suffixes`` (e.g. :data:`TABLE_SUFFIXES`), a file whose name ends otherwise is refused
    before it is opened.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ReadProblem("is a directory, not a case file")
        if not stat.S_ISREG(info.st_mode):
            raise ReadProblem("is not a regular file (a device or a pipe?); give a case file")
        if suffixes is not None and path.suffix.lower() not in suffixes:
            raise ReadProblem(_wrong_suffix(suffixes))
        hint = (
            "; move big tables to CSV files ({csv: file.csv})" if max_bytes < MAX_FILE_BYTES else ""
        )
        if info.st_size > max_bytes:
            raise ReadProblem(
                f"file is {info.st_size:,} bytes; a case file must be under {max_bytes:,}{hint}"
            )
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # /proc-like files report a size of 0
        if len(data) > max_bytes:
            raise ReadProblem(f"file is over {max_bytes:,} bytes; a case file must be under that")
    except (FileNotFoundError, NotADirectoryError):
        raise ReadProblem("file not found") from None
    except PermissionError:
        raise ReadProblem("permission denied") from None
    except OSError as exc:
        raise ReadProblem(f"cannot be read: {exc.strerror or exc}") from None
    except ValueError:  # os.stat refuses a path with a NUL character
        raise ReadProblem("not a usable file name (it holds a NUL character)") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadProblem(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _wrong_suffix(suffixes: Collection[str]) -> str:
    ends = " or ".join(suffixes)
    if tuple(suffixes) == TABLE_SUFFIXES:
        what = "a table (csv: …) must be a CSV file"
    elif tuple(suffixes) == CASE_SUFFIXES:
        what = "a case, an overlay and a base_case must be YAML files"
    else:
        what = "the file must be one"
    return f"the file name does not end in {ends}; {what} whose name ends so (it was not read)"


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
            f"malformed YAML: {_clip_quotes(_short(str(exc), 200))}",
            plain="YAML parse error",
        ) from None
    except RecursionError:
        raise ReadProblem(_too_deep()) from None
    except (ValueError, OverflowError) as exc:
        # the scanner's own conversions, e.g. the escape "\U0011FFFF" is past the last character
        mark = loader.get_mark() if loader is not None else None
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ReadProblem(
            f"malformed YAML at {where}: {_short(str(exc), 200)}",
            field=where,
            plain=f"YAML parse error at {where}",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_csv_rows(
    path: Path,
    columns: Collection[str] | None = None,
    table: str = "table",
    suffixes: Collection[str] | None = TABLE_SUFFIXES,
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV table as ``(line_number, {column: text})``; blank cells are dropped.

    Parameters
    ----------
    path : Path
        The table; its name must end in one of ``suffixes`` (None: any name).
    columns : collection of str, optional
        Every column the table may have. Given, a header naming none of them is "not this
        table" and one naming others is refused, before any row is read.
    table : str
        What the table holds (``segments``), for messages.
    suffixes : collection of str, optional
        Lower-case endings allowed, :data:`TABLE_SUFFIXES` by default.

    Raises
    ------
    ReadProblem
        The file cannot be read, is not this table, or repeats a column. No message quotes a
        cell, and a header column is quoted only when it is a near miss of a valid one.
    """
    text = read_text(path, suffixes=suffixes)
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _rows(reader, columns, table)
    except csv.Error as exc:  # e.g. a cell over the csv module's 131,072-character limit
        line = reader.reader.line_num  # DictReader's own count lags on a failed row
        raise ReadProblem(f"malformed CSV at line {line}: {exc}", field=f"line {line}") from None


def _check_header(names: list[str], columns: Collection[str] | None, table: str) -> None:
    """Refuse a header with a blank, unknown or repeated column (named by number)."""
    blank = [n for n, name in enumerate(names, start=1) if not name]
    if blank:
        raise ReadProblem(f"column {blank[0]} of the header has no name", field="header")
    if columns is not None:
        main = [c for c in columns if not c.endswith(".source")]
        listing = ", ".join(main)
        unknown = [n for n, name in enumerate(names, start=1) if name not in columns]
        if len(unknown) == len(names):
            # another file altogether: say so, and quote none of it
            raise ReadProblem(
                f"not a CSV table with the columns {listing}: its header has {len(names)} "
                "column(s) and none of them is one of these",
                field="header",
            )
        if unknown:
            named = [_unknown_column(n, names[n - 1], main) for n in unknown[:10]]
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise ReadProblem(
                f"{', '.join(named)}{more} of the header "
                f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the "
                f"{table} table; valid columns: {listing} (and <column>.source for a "
                "figure's provenance tag)",
                field="header",
            )
    first: dict[str, int] = {}
    for n, name in enumerate(names, start=1):
        if name in first:
            shown = name if columns is not None else _short(name)  # a known column: not file text
            raise ReadProblem(
                f"column {n} of the header repeats column {first[name]} ({shown!r}); each "
                "column may appear once (the last one would silently win)",
                field="header",
            )
        first[name] = n


def _unknown_column(number: int, name: str, valid: list[str]) -> str:
    """``column 4 ('houseolds': did you mean 'households'?)``, or ``column 4`` for a far miss."""
    close = difflib.get_close_matches(name, valid, n=1)
    if close:  # a near miss of a column name is a typo, not another file's text
        return f"column {number} ({_short(name)!r}: did you mean {close[0]!r}?)"
    return f"column {number}"


def _rows(
    reader: csv.DictReader, columns: Collection[str] | None, table: str
) -> list[tuple[int, dict[str, str]]]:
    if not reader.fieldnames:
        raise ReadProblem("the CSV table is empty; it needs a header row")
    _check_header([(col or "").strip() for col in reader.fieldnames], columns, table)
    rows = []
    for n_read, row in enumerate(reader, start=1):
        if n_read * len(reader.fieldnames) > MAX_TABLE_CELLS:
            raise ReadProblem(
                f"the CSV table has more than {MAX_TABLE_CELLS:,} cells (rows x columns); "
                "a case table is at most that large",
                field=f"line {reader.line_num}",
            )
        if None in row:
            raise ReadProblem(
                f"line {reader.line_num} has more cells than the header's {len(reader.fieldnames)}",
                field=f"line {reader.line_num}",
            )
        cells = {k.strip(): _trim(v) for k, v in row.items() if v is not None and _trim(v)}
        if cells:
            rows.append((reader.line_num, cells))
    return rows


def _trim(cell: str) -> str:
    """A cell without the spaces around it; a control character there stays for the schema to
    refuse (``str.strip`` counts U+001C-U+001F and NEL as spaces and would drop it silently)."""
    trimmed = cell.strip()
    around = cell[: len(cell) - len(cell.lstrip())] + cell[len(cell.rstrip()) :]
    return cell if first_control(around) else trimmed
