"""Fuzzing the door: whatever the files hold, ``load_case`` gives a Case or a CaseError.

Hypothesis writes random structures, raw text and bytes, mutants of the minimal case of
``conftest.py`` and of the shipped ``inputs/`` tree (YAML, CSV, stress overlays), broken CSV
tables and broken overlays to files and loads them. The properties: loading returns a valid
:class:`Case` or raises :class:`CaseError` whose every problem names file, field, value and
message; nothing else escapes; no example runs long (a hypothesis deadline, plus a hard
``SIGALRM`` timeout that also stops an endless Python loop or a blocking read). A number set
beyond its schema bound is reported at its exact field path. ``ppcfin validate`` on fuzzed files
exits 2 with no traceback. Inputs that once broke these properties are pinned at the end.

Issue #14 ("do no harm") adds properties every outcome must have: no problem carries a raw control
character, and no text of the files planted in every example's folder (fake account records, an
application's YAML with a secret, a broken YAML) ever appears, however a case names them. And
what was once silently accepted is always refused: a yes/no value for a number, a repeated CSV
column, a provenance tag inside a tag, a control character in a name, description or tag.

The default suite runs the examples counted in :data:`PROPERTIES` (:data:`FAST_EXAMPLES`, 1,780,
in a fixed derandomised order, with no hypothesis deadline: a shared machine's spikes do
not fail it, and the hard timeout still stops a hang); the ``slow`` variant runs
:data:`SLOW_FACTOR` times as many, with fresh random draws each run and the 5 s deadline.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
import shutil
import signal
import tempfile
import time
import typing
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import INPUTS, MINIMAL_CASE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from models import Case, CaseError, CaseProblem, load_case
from models import schema as S
from models import schema_risk as R
from optimizer.door.cli import main

HARD_TIMEOUT_S = 20
"""An example still running after this is a hang (the deadline below is only checked after)."""
settings.register_profile(
    "loader-fuzz",
    deadline=timedelta(seconds=5),  # ~100x a typical example: spikes on a shared machine pass
    database=None,
    derandomize=True,  # the default suite is the same on every run
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile(
    "loader-fuzz-slow", settings.get_profile("loader-fuzz"), derandomize=False
)
FUZZ = settings.get_profile("loader-fuzz")  # applied per test below, never loaded globally
SLOW_FUZZ = settings.get_profile("loader-fuzz-slow")
SLOW_FACTOR = 12


class ExampleHung(Exception):
    """An example ran over :data:`HARD_TIMEOUT_S`; plain Exception so no layer converts it."""


@contextlib.contextmanager
def hard_timeout(seconds: float = HARD_TIMEOUT_S) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise ExampleHung(f"the example ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


LOADS = [0]
"""Calls of :func:`load_outcome`: one per example, so a test can count the examples it ran."""


def load_outcome(path: Path) -> Case | CaseError:
    """Load ``path``; assert the outcome is a Case or a CaseError that names its fields.

    A CaseError's text holds no raw control character and nothing from the planted files.
    """
    LOADS[0] += 1
    with hard_timeout():
        try:
            case = load_case(path)
        except CaseError as exc:
            assert exc.problems, "a CaseError lists at least one problem"
            for problem in exc.problems:
                assert isinstance(problem, CaseProblem)
                for part in (problem.file, problem.field, problem.value, problem.message):
                    assert isinstance(part, str) and part, problem
                    assert_harmless(part)
            assert str(exc).count("\n") >= len(exc.problems)  # every problem is printable
            for line in str(exc).split("\n"):
                assert_harmless(line)
            return exc
    assert isinstance(case, Case)
    return case


def assert_harmless(text: str) -> None:
    """No raw control character, no text of a planted file."""
    control = [ch for ch in text if unicodedata.category(ch) == "Cc"]
    assert not control, f"raw control character {control[0]!r} in {text!r}"
    for secret in PLANTED_SECRETS:
        assert secret not in text, f"planted text {secret!r} echoed in {text!r}"


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --- values ----------------------------------------------------------------------------------
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
NASTY_NUMBERS = st.sampled_from(
    [0, -0.0, -1, 1, 1e-320, -5e-324, 1e13, 1e13 + 2, 1e308, -1e308, 2**63, -(2**63), 10**39,
     10**45, math.nan, math.inf, -math.inf, 0.5, 1.0, 1.5, 100, 101, 360, 361]
)  # fmt: skip
NASTY_TEXT = st.sampled_from(
    ["", " ", "nan", "inf", "-inf", "1e400", "0x1F", "1_000", "~", "null", "yes", "no", "[A]",
     "[S] https://x", "{{7*7}}", "${HOME}", "__import__('os').system('true')", "<script>",
     "a" * 70, "é" * 201, "\u202e\u200b", "🌳", "\x00", "line\nbreak", "R1", "coffee", "IND",
     "G1", "PRIV", "rust", "0.5", "1:30", "2001-13-45", "!!python/object:os.system"]
)  # fmt: skip
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    SAFE_TEXT,
    st.dates(min_value=date(1, 1, 1)),
    NASTY_NUMBERS,
    NASTY_TEXT,
)
KEYS = st.one_of(SAFE_TEXT, st.integers(-5, 5), st.sampled_from(["id", "value", "source", "csv"]))
STRUCTURES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
YAML_TOKENS = st.sampled_from(
    ["{", "}", "[", "]", ":", ": ", "- ", ",", "&a ", "*a", "&b ", "*b", "<<: ", "? ", "|", ">",
     "'", '"', "\n", "\n  ", "  ", "\t", "#", "%YAML 1.1\n", "---\n", "...\n", "!!binary ",
     "!!set ", "!!omap ", "!!python/object/apply:os.system ", "!!python/name:os.system ",
     "!!int ", "!!float ", "!<tag:x> ", "2001-13-45", "0x", "1:2:3", ".nan", "-.inf", "~",
     "\\U0011FFFF", '"\\x', "name", "regions", "segments", "base_case", "changes", "id",
     "value", "source", "csv", "segments.csv", "../peru_amazon.yaml", "\ufeff", "\x85", "é"]
)  # fmt: skip


# --- the schema's numeric bounds -------------------------------------------------------------
def _constraints(annotation: Any) -> tuple[dict[str, float], bool]:
    """The ge/gt/le/lt bounds inside a field's annotation, and whether it is an integer."""
    bounds: dict[str, float] = {}
    is_int = False

    def walk(node: Any) -> None:
        nonlocal is_int
        if node is int:
            is_int = True
        if isinstance(node, FieldInfo):
            for item in node.metadata:
                walk(item)
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(getattr(node, name, None), int | float):
                bounds[name] = getattr(node, name)
        for arg in typing.get_args(node):
            walk(arg)

    walk(annotation)
    return bounds, is_int


def numeric_fields(model: type[BaseModel]) -> list[tuple[str, dict[str, float], bool]]:
    """``(name, bounds, is_int)`` of every bounded scalar number field of ``model``."""
    out = []
    for name, field in model.model_fields.items():
        if "dict" in str(field.annotation) or "tuple" in str(field.annotation):
            continue
        bounds, is_int = _constraints(field.annotation)
        for item in field.metadata:
            more, _ = _constraints(item)
            bounds.update(more)
        if bounds:
            out.append((name, bounds, is_int))
    return out


# Where each entity model sits in MINIMAL_CASE: (path of keys/indices, model).
ENTITIES: list[tuple[tuple[str | int, ...], type[BaseModel]]] = [
    ((), S.Case),
    *[(("segments", i), S.Segment) for i in range(2)],
    *[(("products", i), S.LoanProduct) for i in range(2)],
    (("funds", 0), S.GuaranteeFund),
    *[(("sources", i), S.FinanceSource) for i in range(3)],
    (("risk_model",), R.RiskModel),
    (("risk_model", "copula"), R.Copula),
    (("risk_model", "price_factors", "coffee"), R.PriceFactor),
    (("risk_model", "chain_correlations", 0), R.ChainCorrelation),
    (("risk_model", "events", 0), R.ShockEvent),
    (("policy",), S.Policy),
]
NUMBER_FIELDS = [
    (path, name, bounds, is_int)
    for path, model in ENTITIES
    for name, bounds, is_int in numeric_fields(model)
]


def field_path(case: dict[str, Any], path: tuple[str | int, ...], name: str) -> str:
    """How a problem names ``path + (name,)``: entities by id, ``sources[PRIV].amount_usd``."""
    out, node = "", case
    for part in path:
        if isinstance(part, int):
            node = node[part]
            out += f"[{node['id']}]" if isinstance(node.get("id"), str) else f"[{part}]"
        else:
            node = node[part]
            out += ("." if out else "") + part
    return f"{out}.{name}" if out else name


def entity(case: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    node: Any = case
    for part in path:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    return node


def beyond(bounds: dict[str, float], is_int: bool) -> list[Any]:
    """Values on an open bound, just past and far past every bound; each must be refused."""
    out: list[Any] = [math.nan, math.inf, -math.inf, "abc", [1], {"a": 1}]
    out += [1.5, "1e3"] if is_int else []

    def down(x: float) -> list[float]:  # the next float below: the smallest step past
        return [] if is_int else [math.nextafter(x, -math.inf)]

    def up(x: float) -> list[float]:
        return [] if is_int else [math.nextafter(x, math.inf)]

    if "ge" in bounds:
        out += [bounds["ge"] - 1, bounds["ge"] - 10**6, *down(bounds["ge"])]
    if "gt" in bounds:
        out += [bounds["gt"], bounds["gt"] - 1, *down(bounds["gt"])]
    if "le" in bounds:
        out += [bounds["le"] + 1, bounds["le"] * 10 + 1, *up(bounds["le"])]
    if "lt" in bounds:
        out += [bounds["lt"], bounds["lt"] + 1, *up(bounds["lt"])]
    return out


def at(bounds: dict[str, float], is_int: bool) -> list[Any]:
    """Values on or just inside every bound; the field itself accepts them."""
    out = [bounds[k] for k in ("ge", "le") if k in bounds]
    if not is_int:
        out += [math.nextafter(bounds["gt"], math.inf)] if "gt" in bounds else []
        out += [math.nextafter(bounds["lt"], -math.inf)] if "lt" in bounds else []
    else:
        out += [bounds["gt"] + 1] if "gt" in bounds else []
        out += [bounds["lt"] - 1] if "lt" in bounds else []
    return out


# --- mutations of a case tree ----------------------------------------------------------------
def _paths(node: Any, here: tuple = ()) -> list[tuple]:
    """Every path to a node of a plain tree (the root included)."""
    out = [here]
    if isinstance(node, dict):
        items: Any = node.items()
    else:
        items = enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out += _paths(child, (*here, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to four random edits: delete, replace, add, wrap, nest, duplicate."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(tree)))
        if not path:
            continue
        parent = entity(tree, path[:-1]) if path[:-1] else tree
        key, op = path[-1], draw(st.sampled_from(OPS))
        old = parent[key]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(STRUCTURES)
        elif op == "add_key" and isinstance(old, dict):
            old[draw(KEYS | st.sampled_from(["field_sources", "source_file", "base_case"]))] = draw(
                LEAVES
            )
        elif op == "tag":
            parent[key] = {"value": old, "source": draw(NASTY_TEXT | SAFE_TEXT)}
        elif op == "nest":
            for _ in range(draw(st.integers(1, 120))):
                old = [old] if draw(st.booleans()) else {"k": old}
            parent[key] = old
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(old))
        elif op == "huge_text":
            parent[key] = draw(st.sampled_from(["x", "é", "🌳", "[S] "])) * draw(
                st.integers(150, 150_000)
            )
        elif op == "to_list":
            parent[key] = list(old.values()) if isinstance(old, dict) else [old]
        else:
            parent[key] = draw(NASTY_NUMBERS | NASTY_TEXT)
    return tree


OPS = ["delete", "replace", "add_key", "tag", "nest", "duplicate", "huge_text", "to_list", "nasty"]


# --- files on disk ---------------------------------------------------------------------------
SECRET = "SECRET-7f3a9c-TOKEN"
PASSWD_HEADER = "root:x:0:0:root:/root:/bin/bash"
PLANTED: dict[str, str] = {
    "accounts": f"{PASSWD_HEADER}\nalice:{SECRET}:1000:1000:Alice:/home/alice:/bin/sh\n",
    "accounts.csv": f"{PASSWD_HEADER}\nalice:{SECRET}:1000:1000:Alice:/home/alice:/bin/sh\n",
    "users.csv": f"id,password_hash\nR1,{SECRET}\nPUB,{SECRET}\n",
    "columns.csv": f"id,name,{SECRET}\nR1,Region one,x\n",
    "accounts.yaml": f"{PASSWD_HEADER}\nalice:{SECRET}:1000:1000:Alice:/home/alice:/bin/sh\n",
    "app.yml": f"user: alice\npassword: {SECRET}\ntoken: [{SECRET}]\n",
    "broken.yaml": f"password: [{SECRET}\n",
    "tabbed.yaml": f"password: {SECRET}\n\t- {SECRET}\n",
}
"""Files planted in every example's folder: none is a case or a table, and none may be echoed."""
PLANTED_SECRETS = (SECRET, PASSWD_HEADER, "password_hash")
PLANTED_REFS = st.sampled_from(sorted(PLANTED)).flatmap(
    lambda name: st.sampled_from([name, f"./{name}", f"sub/../{name}", f"../{{here}}/{name}"])
)
"""How a case may name a planted file; ``{here}`` becomes the folder's own name."""


@contextlib.contextmanager
def scratch(root: Path) -> Iterator[Path]:
    """A fresh folder under ``root`` for one example, with :data:`PLANTED` files; removed after."""
    with tempfile.TemporaryDirectory(dir=root) as folder:
        for name, text in PLANTED.items():
            (Path(folder) / name).write_text(text, encoding="utf-8")
        yield Path(folder)


def planted_ref(ref: str, folder: Path, depth: int = 0) -> str:
    """``ref`` as a case ``depth`` folders below ``folder`` names it."""
    return "../" * depth + ref.replace("{here}", folder.name)


def copy_inputs(folder: Path) -> Path:
    dest = folder / "inputs"
    shutil.copytree(INPUTS, dest)
    return dest


SHIPPED_YAML = (INPUTS / "peru_amazon.yaml").read_text(encoding="utf-8")
SHIPPED_CSV = (INPUTS / "segments.csv").read_text(encoding="utf-8")
STRESS_NAMES = sorted(p.name for p in (INPUTS / "stress").glob("*.yaml"))


@st.composite
def text_mutant(draw: st.DrawFn, text: str) -> str:
    """``text`` with one to three line- or character-level edits."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "splice", "indent", "truncate"]))
        if op == "delete":
            del lines[n]
        elif op == "duplicate":
            lines.insert(n, lines[n])
        elif op == "indent":
            lines[n] = (" " if draw(st.booleans()) else "") + lines[n][draw(st.integers(0, 2)) :]
        elif op == "truncate":
            lines = lines[: n + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        else:
            line = lines[n]
            a = draw(st.integers(0, len(line)))
            b = draw(st.integers(a, min(len(line), a + 12)))
            new = draw(st.one_of(YAML_TOKENS, NASTY_TEXT, NASTY_NUMBERS.map(str), SAFE_TEXT))
            lines[n] = line[:a] + new + line[b:]
        if not lines:
            lines = [""]
    return "\n".join(lines)


# --- CSV tables --------------------------------------------------------------------------------
TABLE_KEYS = {"regions": (), "value_chains": (), "segments": (), "products": (), "funds": (),
              "sources": (), "events": ("risk_model",)}  # fmt: skip


def to_cell(value: Any) -> str:
    if isinstance(value, list):
        return ";".join(map(str, value))
    if isinstance(value, dict):
        return ";".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


@st.composite
def csv_case(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """The minimal case with one table moved to a CSV file, then broken: (case, csv text)."""
    case = copy.deepcopy(MINIMAL_CASE)
    table = draw(st.sampled_from(sorted(TABLE_KEYS)))
    holder = entity(case, TABLE_KEYS[table])
    rows = holder[table]
    holder[table] = {"csv": "table.csv"}
    header = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[to_cell(row.get(k, "")) for k in header] for row in rows]
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["cell", "column", "row", "drop_row", "source_column"]))
        if op == "cell" and cells:
            r = draw(st.integers(0, len(cells) - 1))
            c = draw(st.integers(0, len(cells[r]) - 1)) if cells[r] else 0
            cells[r][c : c + 1] = [draw(NASTY_TEXT | SAFE_TEXT | NASTY_NUMBERS.map(str))]
        elif op == "column":
            header.append(draw(SAFE_TEXT | st.sampled_from(["source", ".source", "id", "x.y"])))
            for row in cells:
                row.append(draw(NASTY_TEXT))
        elif op == "source_column":
            header.append(draw(st.sampled_from(header)) + ".source")
            for row in cells:
                row.append(draw(st.sampled_from(["[A]", "[S] x", "bad", ""])))
        elif op == "row":
            cells.append(draw(st.lists(NASTY_TEXT | SAFE_TEXT, max_size=len(header) + 2)))
        elif cells:
            del cells[draw(st.integers(0, len(cells) - 1))]
    out = io.StringIO()
    if draw(st.booleans()):
        csv.writer(out, lineterminator="\n").writerows([header, *cells])
    else:  # naive joining: quotes, commas and newlines left as they fall
        out.write("\n".join(",".join(map(str, row)) for row in [header, *cells]))
    return case, out.getvalue()


# --- overlays ----------------------------------------------------------------------------------
BASE_REFS = st.sampled_from(
    ["../peru_amazon.yaml", "fuzz.yaml", "roya_2013.yaml", "../segments.csv", "missing.yaml",
     "", ".", "..", "/", "/dev/zero", "a\x00b", "x" * 300, "../" * 40 + "etc/passwd",
     *(f"../../{name}" for name in PLANTED)]
) | st.none() | st.integers() | STRUCTURES  # fmt: skip
OVERLAY_ENTITIES = {"sources": ["CLIM_JDI", "PRIV_MFI"], "funds": ["G_PUB"],
                    "products": ["VCF", "IND_MFI"], "segments": ["SM-COF"]}  # fmt: skip
OVERLAY_FIELDS = st.sampled_from(["amount_usd", "uptake_share", "base_pd", "need_usd", "name"])
PLAUSIBLE = st.sampled_from([0.1, 0.5, 2_000_000, "New name", {"value": 0.2, "source": "[A] x"}])


@st.composite
def overlay(draw: st.DrawFn) -> dict[str, Any]:
    """A stress overlay: a plausible one with broken parts, or random keys."""
    good = draw(st.integers(0, 2)) > 0
    out: dict[str, Any] = {"base_case": "../peru_amazon.yaml" if good else draw(BASE_REFS)}
    if draw(st.booleans()):
        stress = {"id": "fuzz", "name": "Fuzz", "description": "x"}
        out["stress"] = draw(mutated(stress)) if draw(st.booleans()) else stress
    changes: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        group = draw(st.sampled_from(sorted(OVERLAY_ENTITIES)))
        item = {"id": draw(st.sampled_from([*OVERLAY_ENTITIES[group], "NEW_ID"]))}
        if draw(st.booleans()):  # a change that may well be valid
            item[draw(OVERLAY_FIELDS)] = draw(PLAUSIBLE)
        else:
            item[draw(SAFE_TEXT | OVERLAY_FIELDS)] = draw(
                LEAVES | st.fixed_dictionaries({"value": LEAVES, "source": NASTY_TEXT})
            )
        if draw(st.integers(0, 5)) == 0:
            del item["id"]
        changes.setdefault(group, []).append(item)
    if draw(st.integers(0, 3)) == 0:
        changes["risk_model"] = draw(
            st.fixed_dictionaries({"events": st.lists(STRUCTURES, max_size=2)}) | STRUCTURES
        )
    if draw(st.integers(0, 4)) == 0:
        changes["segments"] = {
            "csv": draw(st.sampled_from(["../segments.csv", "none.csv", ".", "../../users.csv"]))
        }
    out["changes"] = draw(st.just(changes) | STRUCTURES) if draw(st.integers(0, 5)) else changes
    if draw(st.integers(0, 6)) == 0:
        out[draw(SAFE_TEXT)] = draw(LEAVES)
    return out


# --- the properties ----------------------------------------------------------------------------
def prop_random_structure(root: Path) -> Callable[..., None]:
    @given(data=STRUCTURES)
    def check(data: Any) -> None:
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(data), encoding="utf-8")
            assert isinstance(load_outcome(folder / "case.yaml"), CaseError)

    return check


def prop_raw_text(root: Path) -> Callable[..., None]:
    tokens = st.lists(YAML_TOKENS | SAFE_TEXT | NASTY_TEXT, max_size=40).map("".join)
    deep = st.integers(1, 3000).map(lambda n: "name: " + "[" * n + "]" * n)

    @given(text=tokens | deep | st.binary(max_size=300))
    def check(text: str | bytes) -> None:
        with scratch(root) as folder:
            path = folder / "case.yaml"
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(text, encoding="utf-8", errors="surrogatepass")
            assert isinstance(load_outcome(path), CaseError)

    return check


def prop_minimal_mutant(root: Path) -> Callable[..., None]:
    @given(case=mutated(MINIMAL_CASE))
    def check(case: dict[str, Any]) -> None:
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            load_outcome(folder / "case.yaml")

    return check


def prop_number_beyond_bound(root: Path) -> Callable[..., None]:
    @given(data=st.data(), where=st.sampled_from(NUMBER_FIELDS))
    def check(data: st.DataObject, where: tuple) -> None:
        path, name, bounds, is_int = where
        case = copy.deepcopy(MINIMAL_CASE)
        value = data.draw(st.sampled_from(beyond(bounds, is_int)), label="value")
        entity(case, path)[name] = value
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            outcome = load_outcome(folder / "case.yaml")
        assert isinstance(outcome, CaseError), f"{name} = {value!r} was accepted"
        assert field_path(case, path, name) in outcome.fields, outcome.fields

    return check


def prop_number_at_bound(root: Path) -> Callable[..., None]:
    @given(data=st.data(), where=st.sampled_from(NUMBER_FIELDS))
    def check(data: st.DataObject, where: tuple) -> None:
        path, name, bounds, is_int = where
        case = copy.deepcopy(MINIMAL_CASE)
        value = data.draw(st.sampled_from(at(bounds, is_int)), label="value")
        entity(case, path)[name] = value
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            outcome = load_outcome(folder / "case.yaml")
        if isinstance(outcome, CaseError):  # only a check across fields may object
            assert all("should be" not in p.message for p in outcome.problems), outcome

    return check


def prop_shipped_mutant(root: Path) -> Callable[..., None]:
    @given(data=st.data(), which=st.sampled_from(["yaml", "csv", "both"]))
    def check(data: st.DataObject, which: str) -> None:
        with scratch(root) as folder:
            inputs = copy_inputs(folder)
            if which in ("yaml", "both"):
                text = data.draw(text_mutant(SHIPPED_YAML), label="yaml")
                (inputs / "peru_amazon.yaml").write_text(text, encoding="utf-8")
            if which in ("csv", "both"):
                text = data.draw(text_mutant(SHIPPED_CSV), label="csv")
                (inputs / "segments.csv").write_text(text, encoding="utf-8")
            stress = data.draw(st.sampled_from([None, *STRESS_NAMES]), label="overlay")
            load_outcome(inputs / "stress" / stress if stress else inputs / "peru_amazon.yaml")

    return check


def prop_csv_table(root: Path) -> Callable[..., None]:
    @given(case_and_table=csv_case())
    def check(case_and_table: tuple[dict[str, Any], str]) -> None:
        case, table = case_and_table
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            (folder / "table.csv").write_text(table, encoding="utf-8", errors="surrogatepass")
            load_outcome(folder / "case.yaml")

    return check


def prop_overlay(root: Path) -> Callable[..., None]:
    @given(layer=overlay())
    def check(layer: dict[str, Any]) -> None:
        with scratch(root) as folder:
            inputs = copy_inputs(folder)
            path = inputs / "stress" / "fuzz.yaml"
            path.write_text(dump(layer), encoding="utf-8")
            load_outcome(path)

    return check


def prop_cli_validate(root: Path) -> Callable[..., None]:
    @given(case=mutated(MINIMAL_CASE) | STRUCTURES)
    def check(case: Any) -> None:
        with scratch(root) as folder:
            path = folder / "case.yaml"
            path.write_text(dump(case), encoding="utf-8")
            expected = load_outcome(path)
            out, err = io.StringIO(), io.StringIO()
            with hard_timeout(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["validate", str(path)])
        assert "Traceback" not in err.getvalue() + out.getvalue()
        if isinstance(expected, CaseError):
            assert code == 2
            assert err.getvalue().startswith("The case cannot be used:")
        else:
            assert code == 0

    return check


# --- issue #14: what must never pass, what must never be echoed --------------------------------
def prop_planted_secret(root: Path) -> Callable[..., None]:
    """A case, an overlay or its changes name a planted file, or it is loaded directly."""

    @given(
        ref=PLANTED_REFS,
        mode=st.sampled_from(["table", "base_case", "overlay-table", "direct"]),
        table=st.sampled_from(sorted(TABLE_KEYS)),
    )
    def check(ref: str, mode: str, table: str) -> None:
        with scratch(root) as folder:
            case = copy.deepcopy(MINIMAL_CASE)
            if mode == "table":
                entity(case, TABLE_KEYS[table])[table] = {"csv": planted_ref(ref, folder)}
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            path = folder / "case.yaml"
            if mode in ("base_case", "overlay-table"):
                layer: dict[str, Any] = {"base_case": planted_ref(ref, folder, depth=1)}
                if mode == "overlay-table":
                    changes = {table: {"csv": planted_ref(ref, folder, depth=1)}}
                    if table == "events":
                        changes = {"risk_model": changes}
                    layer = {"base_case": "../case.yaml", "changes": changes}
                path = folder / "stress" / "x.yaml"
                path.parent.mkdir()
                path.write_text(dump(layer), encoding="utf-8")
            elif mode == "direct":
                path = folder / planted_ref(ref, folder)
            assert isinstance(load_outcome(path), CaseError)  # no planted file is a case part

    return check


BOOL_WORDS = st.sampled_from(
    [w for word in ("true", "false", "yes", "no", "on", "off") for w in (word, word.title(),
     word.upper())]
)  # fmt: skip
"""Every spelling PyYAML reads as True or False."""
BOOL_SENTINEL = "PUT_A_BOOL_HERE"
CSV_NUMBER_FIELDS = [f for f in NUMBER_FIELDS if f[0] and f[0][0] in TABLE_KEYS]
"""Number fields of entities a CSV table can hold (segments, products, funds, sources)."""


def write_table(
    case: dict[str, Any], table: str, folder: Path, quoting: int = csv.QUOTE_MINIMAL
) -> None:
    """Move ``table`` of ``case`` to ``folder / table.csv`` (every cell as text)."""
    holder = entity(case, TABLE_KEYS[table])
    rows = holder[table]
    header = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=quoting)
    writer.writerows([header, *([to_cell(row.get(k, "")) for k in header] for row in rows)])
    (folder / "table.csv").write_text(out.getvalue(), encoding="utf-8")
    holder[table] = {"csv": "table.csv"}


def prop_bool_as_number(root: Path) -> Callable[..., None]:
    """A yes/no word for a number: in YAML (read as True/False) or as a CSV cell (text)."""

    @given(data=st.data(), word=BOOL_WORDS, in_csv=st.booleans())
    def check(data: st.DataObject, word: str, in_csv: bool) -> None:
        pool = CSV_NUMBER_FIELDS if in_csv else NUMBER_FIELDS
        path, name, _, _ = data.draw(st.sampled_from(pool), label="field")
        case = copy.deepcopy(MINIMAL_CASE)
        entity(case, path)  # a section the minimal case omits (policy) is added empty
        expected = field_path(case, path, name)
        with scratch(root) as folder:
            if in_csv:
                entity(case, path)[name] = word
                write_table(case, path[0], folder)
                text = dump(case)
            else:
                entity(case, path)[name] = BOOL_SENTINEL
                text = dump(case).replace(BOOL_SENTINEL, word)
            (folder / "case.yaml").write_text(text, encoding="utf-8")
            outcome = load_outcome(folder / "case.yaml")
        assert isinstance(outcome, CaseError), f"{name}: {word} was accepted as a number"
        [problem] = [p for p in outcome.problems if p.field == expected]
        if in_csv:
            assert problem.value == repr(word)
            assert "valid number" in problem.message or "valid integer" in problem.message
        else:
            assert problem.value == str(word.lower() in ("true", "yes", "on"))
            assert problem.message.startswith("true/false is not a number")

    return check


def prop_duplicate_column(root: Path) -> Callable[..., None]:
    """A CSV table with one of its columns repeated (padded or not, anywhere in the header)."""

    @given(
        data=st.data(),
        table=st.sampled_from(sorted(TABLE_KEYS)),
        pad=st.sampled_from(["", " ", "  ", "\t"]),
        same_cells=st.booleans(),
    )
    def check(data: st.DataObject, table: str, pad: str, same_cells: bool) -> None:
        case = copy.deepcopy(MINIMAL_CASE)
        rows = entity(case, TABLE_KEYS[table])[table]
        header = list(dict.fromkeys(k for row in rows for k in row))
        column = data.draw(st.sampled_from(header), label="column")
        at_n = data.draw(st.integers(0, len(header)), label="at")
        cells = [[to_cell(row.get(k, "")) for k in header] for row in rows]
        for row, line in zip(rows, cells, strict=True):
            line.insert(at_n, to_cell(row.get(column, "")) if same_cells else "9")
        header.insert(at_n, pad + column + pad[::-1])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *cells])
        entity(case, TABLE_KEYS[table])[table] = {"csv": "table.csv"}
        with scratch(root) as folder:
            (folder / "table.csv").write_text(out.getvalue(), encoding="utf-8")
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            outcome = load_outcome(folder / "case.yaml")
        assert isinstance(outcome, CaseError), f"{table}: column {column} twice was accepted"
        [problem] = outcome.problems
        assert problem.field == ".".join([*TABLE_KEYS[table], table]) + ".csv (header)"
        assert "repeats column" in problem.message and repr(column) in problem.message

    return check


def prop_nested_tag(root: Path) -> Callable[..., None]:
    """A figure wrapped in two to four ``{value: …, source: …}`` tags."""

    @given(
        data=st.data(),
        where=st.sampled_from(NUMBER_FIELDS),
        sources=st.lists(st.booleans(), min_size=2, max_size=4),
    )
    def check(data: st.DataObject, where: tuple, sources: list[bool]) -> None:
        path, name, _, _ = where
        case = copy.deepcopy(MINIMAL_CASE)
        node = entity(case, path)
        value: Any = node.get(name, data.draw(st.sampled_from([0.5, 1, "0.2"]), label="value"))
        for tagged in sources:
            value = {"value": value, **({"source": "[A] fuzz"} if tagged else {})}
        node[name] = value
        with scratch(root) as folder:
            (folder / "case.yaml").write_text(dump(case), encoding="utf-8")
            outcome = load_outcome(folder / "case.yaml")
        assert isinstance(outcome, CaseError), f"{name}: a tag in a tag was accepted"
        [problem] = [p for p in outcome.problems if p.field == field_path(case, path, name)]
        assert problem.message.startswith("a {value: …, source: …} tag inside another tag")

    return check


TEXT_FIELDS: list[tuple[tuple[str | int, ...], str, str]] = [
    ((), "name", "name"),
    ((), "description", "free"),
    (("stress",), "name", "name"),
    (("stress",), "description", "free"),
    *[
        ((group, n), field, kind)
        for group, count in [("regions", 2), ("value_chains", 2), ("products", 2), ("funds", 1),
                             ("sources", 3)]
        for n in range(count)
        for field, kind in [("name", "name"), ("source", "tag")]
    ],
    (("risk_model", "events", 0), "name", "name"),
    (("risk_model", "events", 0), "source", "tag"),
    (("risk_model",), "source", "tag"),
    (("policy",), "source", "tag"),
]  # fmt: skip
"""Text fields of the minimal case: names (one line), descriptions and provenance tags."""
CONTROL_CHARACTERS = st.characters(categories=["Cc"])


def prop_control_character(root: Path) -> Callable[..., None]:
    """A control character in a name, description or tag, in YAML or a CSV cell; in a file name."""

    @given(
        data=st.data(),
        where=st.sampled_from(TEXT_FIELDS),
        in_csv=st.booleans(),
        file_char=st.none() | CONTROL_CHARACTERS.filter(lambda ch: ch != "\x00"),
    )
    def check(data: st.DataObject, where: tuple, in_csv: bool, file_char: str | None) -> None:
        path, name, kind = where
        allowed = "" if kind == "name" else "\n\t"
        chars = CONTROL_CHARACTERS.filter(lambda ch: ch not in allowed)
        if in_csv and path and path[0] in TABLE_KEYS:
            chars = chars.filter(lambda ch: ch != "\x00")  # the csv module refuses NUL itself
        else:
            in_csv = False
        case = copy.deepcopy(MINIMAL_CASE)
        if path == ("stress",):
            case["stress"] = {"id": "fuzz", "name": "Fuzz"}
        node = entity(case, path)
        text = str(node.get(name) or ("[A] fuzz note" if kind == "tag" else "Fuzz text"))
        at_n = data.draw(st.integers(0, len(text)), label="at")
        node[name] = text[:at_n] + data.draw(chars, label="control") + text[at_n:]
        expected = field_path(case, path, name)
        case_name = f"case{file_char or ''}.yaml"
        with scratch(root) as folder:
            if in_csv:
                # quoted: unquoted, a CR before the line end would read as a CRLF line ending
                write_table(case, str(path[0]), folder, quoting=csv.QUOTE_ALL)
            # escaped, not raw: PyYAML's emitter writes a raw NEL that its reader folds to a space
            text = yaml.safe_dump(case, sort_keys=False, allow_unicode=False)
            (folder / case_name).write_text(text, encoding="utf-8")
            outcome = load_outcome(folder / case_name)
        assert isinstance(outcome, CaseError), f"{expected} = {node[name]!r} was accepted"
        [problem] = [p for p in outcome.problems if p.field == expected]
        assert "control character U+" in problem.message

    return check


PROPERTIES: dict[str, tuple[Callable[[Path], Callable[..., None]], int]] = {
    "random-structure": (prop_random_structure, 40),
    "raw-text": (prop_raw_text, 100),
    "minimal-mutant": (prop_minimal_mutant, 100),
    "number-beyond-bound": (prop_number_beyond_bound, 60),
    "number-at-bound": (prop_number_at_bound, 25),
    "shipped-mutant": (prop_shipped_mutant, 20),
    "csv-table": (prop_csv_table, 80),
    "overlay": (prop_overlay, 40),
    "cli-validate": (prop_cli_validate, 15),
    "planted-secret": (prop_planted_secret, 300),
    "bool-as-number": (prop_bool_as_number, 300),
    "duplicate-column": (prop_duplicate_column, 200),
    "nested-tag": (prop_nested_tag, 200),
    "control-character": (prop_control_character, 300),
}
"""Each property and its number of examples in the default suite."""
FAST_EXAMPLES = sum(n for _, n in PROPERTIES.values())


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_fuzz_loader(name: str, tmp_path: Path) -> None:
    build, examples = PROPERTIES[name]
    LOADS[0] = 0
    settings(FUZZ, max_examples=examples, deadline=None)(build(tmp_path))()
    assert LOADS[0] >= examples  # every example was generated and loaded: the count is real


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_fuzz_loader_slow(name: str, tmp_path: Path) -> None:
    build, examples = PROPERTIES[name]
    settings(SLOW_FUZZ, max_examples=examples * SLOW_FACTOR)(build(tmp_path))()


def test_every_bounded_number_field_is_fuzzed() -> None:
    # a guard on the schema walker: were pydantic to store bounds elsewhere, it would find none
    names = {name for _, name, _, _ in NUMBER_FIELDS}
    assert len(NUMBER_FIELDS) >= 90 and len(names) >= 55
    assert {
        "amount_usd",
        "households",
        "cvar_alpha",
        "t_degrees_of_freedom",
        "probability",
    } <= names


# --- regressions: inputs fuzzing found, each raised something other than CaseError or hung -----
def write(folder: Path, text: str, name: str = "case.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(path: Path) -> CaseProblem:
    with hard_timeout(), pytest.raises(CaseError) as info:
        load_case(path)
    assert len(info.value.problems) == 1, info.value.fields
    return info.value.problems[0]


def test_impossible_date_names_its_place(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "name: 2001-13-45\n"))  # was ValueError
    assert problem.field == "line 1, column 7"
    assert problem.message == (
        "malformed YAML at line 1, column 7: cannot read '2001-13-45' as timestamp "
        "(month must be in 1..12); quote it (or drop its !!tag) to keep it as text"
    )


@pytest.mark.parametrize(
    "literal",
    ["9" * 5000, "0x" + "f" * 5000, ":".join(["1"] * 3000), "-" + "1" * 41],
    ids=["decimal", "hex", "base-60", "41-digits"],
)
def test_integer_literal_too_long_is_refused(tmp_path: Path, literal: str) -> None:
    # was ValueError (Python's 4,300-digit limit) or quadratic time (base 60)
    problem = only_problem(write(tmp_path, f"households: {literal}\n"))
    assert problem.field == "line 1, column 13"
    assert f"has {len(literal):,} characters; a case figure has at most 40" in problem.message


def test_unicode_escape_past_the_last_character(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, 'name: "\\U0011FFFF"\n'))  # was ValueError
    assert problem.field == "line 1, column 10"  # where the hex digits start
    assert problem.message.endswith("chr() arg not in range(0x110000)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!int ''", "cannot read '' as int;"),  # was IndexError
        ("!!float ''", "cannot read '' as float;"),  # was IndexError
        ("!!bool maybe", "cannot read 'maybe' as bool;"),  # was KeyError
        ("!!timestamp soon", "cannot read 'soon' as timestamp;"),  # was AttributeError
        ("!!set [1]", "expected a mapping node, but found sequence"),  # was TypeError
        ("!!map x", "expected a mapping node, but found scalar"),  # was ValueError
    ],
)
def test_explicit_tag_on_an_unreadable_value(tmp_path: Path, text: str, message: str) -> None:
    problem = only_problem(write(tmp_path, f"name: {text}\n"))
    assert problem.field == "line 1, column 7"
    assert message in problem.message


def test_control_character_first_in_the_file(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "\x1bname: x\n"))  # was yaml ReaderError
    assert problem.message == (
        "character U+001B at offset 0 is not allowed in YAML (special characters are not "
        "allowed); remove it"
    )


@pytest.mark.parametrize("value", ["5", "[1, 2]", "x"])
def test_whole_file_as_one_tagged_value(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"{{value: {value}, source: '[A]'}}\n")  # was TypeError
    problem = only_problem(path)
    assert (problem.file, problem.field) == (str(path), "(root)")
    assert problem.message == "a case file must be a mapping of keys (name:, segments:, ...)"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [('"a\\0b"', "embedded null byte"), ("x" * 5000, "File name too long")],
    ids=["nul", "too-long"],
)
def test_unusable_base_case_path(tmp_path: Path, ref: str, reason: str) -> None:
    problem = only_problem(write(tmp_path, f"base_case: {ref}\n"))  # was ValueError/OSError
    assert problem.field == "base_case"
    assert problem.message.startswith(f"not a usable path ({reason}); give the path")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ('"a\\0b"', "not a usable file name (it holds a NUL character)"),
        ("x" * 5000, "cannot be read: File name too long"),
        ("case.yaml/table.csv", "file not found"),  # was NotADirectoryError
    ],
    ids=["nul", "too-long", "below-a-file"],
)
def test_unusable_csv_path(tmp_path: Path, ref: str, message: str) -> None:
    problem = only_problem(write(tmp_path, f"segments: {{csv: {ref}}}\n"))
    assert problem.field == "segments.csv"
    assert problem.message == message


def test_csv_cell_over_the_csv_field_limit(tmp_path: Path) -> None:
    write(tmp_path, "id,name\nR1," + "x" * 200_000 + "\n", "regions.csv")
    path = write(tmp_path, dump({**MINIMAL_CASE, "regions": {"csv": "regions.csv"}}))
    problem = only_problem(path)  # was _csv.Error
    assert (problem.file, problem.field) == (str(tmp_path / "regions.csv"), "regions.csv (line 2)")
    assert problem.message == "malformed CSV at line 2: field larger than field limit (131072)"


@pytest.mark.parametrize(("key", "field"), [("1: x", "1"), ("'': x", "''")], ids=["int", "blank"])
def test_overlay_with_an_odd_unknown_key(tmp_path: Path, key: str, field: str) -> None:
    path = write(tmp_path, f"base_case: case.yaml\nzz: 1\n{key}\n", "overlay.yaml")
    problem = only_problem(path)  # mixed key types were a TypeError in sorted()
    assert problem.field == field
    assert problem.message == "unknown overlay key; an overlay has base_case, stress, changes"


def test_duplicate_value_chain_with_a_chain_correlation(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["value_chains"].append({"id": "cocoa", "name": "Cocoa again"})
    problem = only_problem(write(tmp_path, dump(case)))  # was IndexError in the PSD check
    assert problem.field == "value_chains[cocoa].id"
    assert problem.message == "duplicate value chain id; ids must be unique"


def test_thousands_of_empty_lists_are_reported_in_linear_time(tmp_path: Path) -> None:
    text = "f: &f {eligible_products: []}\nfunds: [" + ", ".join(["*f"] * 6000) + "]\n"
    start = time.perf_counter()
    with hard_timeout(), pytest.raises(CaseError) as info:
        load_case(write(tmp_path, text))
    assert time.perf_counter() - start < 8.0  # was ~100 s: every too_short scanned every error
    assert "funds[5999].eligible_products" in info.value.fields
    assert len(info.value.problems) > 6000 * 7


def test_thousands_of_dangling_ids_keep_messages_short(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["regions"] += [{"id": f"Region{n:05d}", "name": "n"} for n in range(3000)]
    case["risk_model"]["events"][0]["regions"] = ["ZZ"] * 3000
    with hard_timeout(), pytest.raises(CaseError) as info:
        load_case(write(tmp_path, dump(case)))
    assert len(info.value.problems) == 3000
    message = info.value.problems[0].message
    assert message == (  # was every valid id in every message: gigabytes for 12,000 of each
        "unknown region id; valid ids: R1, R2, "
        + ", ".join(f"Region{n:05d}" for n in range(28))
        + ", … (3,002 in all)"
    )


def test_many_values_are_refused_while_parsing(tmp_path: Path, monkeypatch) -> None:
    import models.yaml_io as yaml_io

    def unreachable(node: Any) -> tuple[int, int]:
        raise AssertionError("the whole document was parsed before the check")

    monkeypatch.setattr(yaml_io, "MAX_EXPANDED_NODES", 1_000)
    monkeypatch.setattr(yaml_io, "_expanded_size", unreachable)
    problem = only_problem(write(tmp_path, "name: [" + "a, " * 5_000 + "]\n"))
    assert problem.message.startswith("the YAML expands to more than 1,000 values")


def test_more_value_chains_than_the_limit(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["value_chains"] += [{"id": f"c{n}", "name": "n"} for n in range(S.MAX_VALUE_CHAINS)]
    with pytest.raises(CaseError) as info:
        load_case(write(tmp_path, dump(case)))
    [problem] = [p for p in info.value.problems if p.field == "value_chains"]
    assert problem.message == "Tuple should have at most 500 items after validation, not 502"


def test_case_file_whose_name_is_not_utf8(tmp_path: Path) -> None:
    # a Latin-1 file name reaches Python as a lone surrogate: hashing it was a UnicodeEncodeError
    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/Jun\xedn.yaml"))
    latin1.write_text(dump(MINIMAL_CASE), encoding="utf-8")
    case = load_case(latin1)
    assert case.source_file == str(latin1)
    assert len(case.content_sha256) == 64
