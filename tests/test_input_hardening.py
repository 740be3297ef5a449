"""Issue #14, "Do no harm": a case file can neither print other files nor the terminal's escapes.

Each section reproduces one defect and pins its fix:

1. **Leaks.** A case could name any file as a table (``segments: {csv: /etc/passwd}``) or a base
   case and get its lines echoed in the error list. Now only ``.csv`` tables and
   ``.yaml``/``.yml`` cases are read (they may lie outside the case's folder), a file that is not
   the expected table or case is reported by name and reason only, and values are cut to 40
   characters. The "account records" here are a fake file in ``tmp_path`` with a recognisable
   secret; no test reads a real system file.
2. **Control characters** in names, descriptions, tags and file names are refused or escaped:
   no problem carries a raw control character.
3. **Wrongly accepted input**: yes/no values as numbers, a repeated CSV column, a tag in a tag.
4. **Warnings** for a loan product no source can fund and a fund no source can capitalise.
"""

from __future__ import annotations

import copy
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import INPUTS, MINIMAL_CASE

from models import CaseError, CaseProblem, case_warnings, load_case
from models.errors import one_line
from models.problems import show
from optimizer.door.cli import main

SECRET = "SECRET-7f3a9c-TOKEN"
PASSWD_HEADER = "root:x:0:0:root:/root:/bin/bash"
ACCOUNTS = f"{PASSWD_HEADER}\nalice:{SECRET}:1000:1000:Alice:/home/alice:/bin/sh\n"
"""A file of account records, as /etc/passwd holds them."""


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def case_with(tmp_path: Path, name: str = "case.yaml", **changes: Any) -> Path:
    """The minimal case with top-level ``changes``, written to ``tmp_path / name``."""
    return write(tmp_path / name, dump({**copy.deepcopy(MINIMAL_CASE), **changes}))


def load_error(path: Path) -> CaseError:
    with pytest.raises(CaseError) as info:
        load_case(path)
    return info.value


def texts(exc: CaseError) -> list[str]:
    """Everything a CaseError can show: its message's lines and every part of every problem."""
    out = str(exc).split("\n")  # one line per problem: the only line breaks it holds
    for p in exc.problems:
        out += [p.file, p.field, p.value, p.message]
    return out


def assert_nothing_leaked(exc: CaseError, *secrets: str) -> None:
    for text in texts(exc):
        for secret in (SECRET, PASSWD_HEADER, *secrets):
            assert secret not in text, f"{secret!r} echoed in {text!r}"


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def validate_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --- 1. leaks ----------------------------------------------------------------------------------
def test_table_that_is_not_a_csv_file_is_refused_unread(tmp_path: Path) -> None:
    write(tmp_path / "etc" / "passwd", ACCOUNTS)
    path = case_with(tmp_path / "case", segments={"csv": "../etc/passwd"})
    problem = load_error(path).problems[0]  # was 8 problems, the last quoting both lines
    assert problem.file == str(tmp_path / "case" / "../etc/passwd")
    assert problem.field == "segments.csv"
    assert problem.message.startswith("the file name does not end in .csv;")
    assert problem.message.endswith("(it was not read)")
    assert_nothing_leaked(load_error(path))


def test_account_records_renamed_csv_are_not_a_table(tmp_path: Path) -> None:
    write(tmp_path / "accounts.csv", ACCOUNTS)
    exc = load_error(case_with(tmp_path, segments={"csv": "accounts.csv"}))
    [problem] = exc.problems
    assert (problem.file, problem.field) == (
        str(tmp_path / "accounts.csv"),
        "segments.csv (header)",
    )
    assert problem.message.startswith(
        "not a CSV table with the columns source, id, region, value_chain, households, "
    )
    assert problem.message.endswith("its header has 1 column(s) and none of them is one of these")
    assert_nothing_leaked(exc)


def test_csv_with_a_foreign_column_names_it_by_number_and_no_cell(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", f"id,name,password_hash\nR1,Alice,{SECRET}\n")
    exc = load_error(case_with(tmp_path, regions={"csv": "users.csv"}))
    [problem] = exc.problems
    assert problem.message.startswith(
        "column 3 of the header is not a column of the regions table; valid columns: source, id, "
        "name (and <column>.source for a figure's provenance tag)"
    )
    assert_nothing_leaked(exc, "password_hash")


def test_foreign_header_row_is_never_echoed(tmp_path: Path) -> None:
    # a header that is one long "column name": it is file content, named by number only
    write(tmp_path / "t.csv", f"id,{PASSWD_HEADER}\nR1,{SECRET}\n")
    exc = load_error(case_with(tmp_path, regions={"csv": "t.csv"}))
    assert exc.problems[0].message.startswith("column 2 of the header is not a column")
    assert_nothing_leaked(exc)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("passwd", ACCOUNTS, "the file name does not end in .yaml or .yml;"),
        ("accounts.yaml", ACCOUNTS, "a case file must be a mapping of keys"),  # one YAML text
        ("app.yaml", f"user: alice\npassword: {SECRET}\n", "is not a case file: none of its"),
        ("broken.yaml", f"password: [{SECRET}\n", "is not a case file: YAML parse"),
    ],
    ids=["not-yaml", "yaml-text", "yaml-mapping", "yaml-unparsable"],
)
def test_base_case_that_is_not_a_case_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, message: str
) -> None:
    write(tmp_path / "elsewhere" / name, text)
    overlay = write(tmp_path / "stress" / "x.yaml", f"base_case: ../elsewhere/{name}\n")
    exc = load_error(overlay)  # "accounts.yaml" was: (root) = 'root:x:0:0:root:/root:/bin/bash …
    [problem] = exc.problems
    assert problem.file == str((tmp_path / "elsewhere" / name).resolve())
    assert problem.message.startswith(message)
    assert problem.message.endswith(f"(it is the base_case of {overlay})")
    assert_nothing_leaked(exc)
    code, shown = validate_cli(overlay, capsys)
    assert code == 2
    assert "Traceback" not in shown and SECRET not in shown


def test_yaml_error_quotes_no_line_text(tmp_path: Path) -> None:
    # PyYAML's own str() adds a snippet of the offending line: it is never used
    path = write(tmp_path / "case.yaml", f"name: {SECRET}\nregions:\n\t- id: R1\n")
    exc = load_error(path)
    assert exc.problems[0].field == "line 3, column 1"
    assert_nothing_leaked(exc)


def test_long_value_is_cut_to_forty_characters(tmp_path: Path) -> None:
    long_id = "x" * 60 + SECRET + " " * 10_000
    exc = load_error(case_with(tmp_path, regions=[{"id": long_id, "name": "n"}]))
    problem = next(p for p in exc.problems if p.field.endswith(".id"))
    assert problem.value == repr(long_id)[:40] + "…"
    assert show("y" * 500) == "'" + "y" * 39 + "…"
    assert_nothing_leaked(exc)


def test_unknown_key_with_a_huge_value_is_cut(tmp_path: Path) -> None:
    exc = load_error(case_with(tmp_path, notes="a" * 100 + SECRET))
    problem = next(p for p in exc.problems if p.field == "notes")
    assert len(problem.value) == 41
    assert_nothing_leaked(exc)


def test_tables_and_base_cases_may_live_in_sibling_folders(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write(shared / "regions.CSV", "id,name\nR1,Region one\nR2,Region two\n")
    path = case_with(tmp_path / "case", "base.yml", regions={"csv": "../shared/regions.CSV"})
    assert [r.id for r in load_case(path).regions] == ["R1", "R2"]
    overlay = write(shared / "stress.yaml", f"base_case: {path}\nchanges: {{name: Stressed}}\n")
    assert load_case(overlay).name == "Stressed"


def test_case_given_directly_must_be_a_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path / "accounts.txt", ACCOUNTS)
    [problem] = load_error(path).problems
    assert problem.message.startswith("the file name does not end in .yaml or .yml;")


def test_validate_prints_no_secret_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "accounts.csv", ACCOUNTS)
    write(tmp_path / "passwd", ACCOUNTS)
    for table in ("accounts.csv", "passwd"):
        code, shown = validate_cli(case_with(tmp_path, segments={"csv": table}), capsys)
        assert code == 2
        assert "The case cannot be used: 1 problem(s)." in shown
        assert "Traceback" not in shown
        assert SECRET not in shown and PASSWD_HEADER not in shown


# --- 2. control characters ---------------------------------------------------------------------
def _set(case: dict[str, Any], where: tuple[Any, ...], value: Any) -> None:
    node: Any = case
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        (("name",), "Clear\x1b[2J", "name"),
        (("regions", 0, "name"), "\x1b[2J", "regions[R1].name"),
        (("sources", 1, "name"), "Private\tlender", "sources[PRIV].name"),
        (("sources", 1, "name"), "two\nlines", "sources[PRIV].name"),
        (("risk_model", "events", 0, "name"), "bell\x07\x9b", "risk_model.events[rust].name"),
        (("description",), "a\n\tb\x1b]0;title\x07", "description"),
        (("funds", 0, "source"), "[A] note\x1b[31m", "funds[G1].source"),
        (("stress",), {"id": "s", "name": "S\x00"}, "stress.name"),
        (("stress",), {"id": "s", "name": "S", "description": "\r"}, "stress.description"),
    ],
    ids=["case", "region", "tab", "newline", "c1", "description", "tag", "stress", "cr"],
)
def test_control_character_in_text_is_refused(
    tmp_path: Path, where: tuple[Any, ...], value: Any, field: str
) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    _set(case, where, value)
    exc = load_error(write(tmp_path / "case.yaml", dump(case)))  # each was accepted
    [problem] = exc.problems
    assert problem.field == field
    assert "control character U+00" in problem.message
    assert not any(has_control_character(t) for t in texts(exc))


def test_tag_on_a_figure_with_a_control_character_is_refused(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["products"][0]["rate"] = {"value": 0.3, "source": "[A] x\x1b[2J"}
    [problem] = load_error(write(tmp_path / "case.yaml", dump(case))).problems
    assert problem.field == "products[IND].rate.source"
    assert problem.value == "'[A] x\\x1b[2J'"
    assert problem.message.startswith("a source tag holds the control character U+001B")


def test_line_breaks_and_tabs_stay_allowed_in_free_text(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["description"] = "First line\n\tindented"
    case["funds"][0]["source"] = "[A] one\n[S] two"
    loaded = load_case(write(tmp_path / "case.yaml", dump(case)))
    assert loaded.description == "First line\n\tindented"


def test_one_line_escapes_every_control_character() -> None:
    assert one_line("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert one_line("\t\n\r\x00\x7f\x85\u202e\u2028") == "\\t\\n\\x0d\\x00\\x7f\\x85\\u202e\\u2028"
    assert one_line("Jun\udcedn.yaml") == "Jun\\xedn.yaml"  # a Latin-1 byte of a file name
    assert one_line("Junín 🌳 C:\\cases") == "Junín 🌳 C:\\cases"
    assert show("\x1b[2J") == "'\\x1b[2J'"


def test_problem_parts_never_hold_a_raw_control_character() -> None:
    problem = CaseProblem("case\x1b[2J.yaml", "a.\x07b", "\x9b", "bad\nthing")
    assert problem == CaseProblem("case\\x1b[2J.yaml", "a.\\x07b", "\\x9b", "bad\\nthing")


def test_file_name_with_an_escape_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = case_with(tmp_path, segments={"csv": "seg\x1b[2J.csv"})  # a table that is missing
    exc = load_error(path)
    [problem] = exc.problems
    assert problem.file == str(tmp_path / "seg\\x1b[2J.csv")
    assert problem.value == "'seg\\x1b[2J.csv'"
    assert not any(has_control_character(t) for t in texts(exc))
    bad = write(tmp_path / "bad\x1b[2J.yaml", "name: [\n")
    assert load_error(bad).problems[0].file == str(tmp_path / "bad\\x1b[2J.yaml")
    code, shown = validate_cli(bad, capsys)
    assert code == 2 and "\x1b[2J" not in shown


def test_control_character_in_a_key_is_escaped_in_the_field_path(tmp_path: Path) -> None:
    exc = load_error(case_with(tmp_path, **{"\x1b[2Jpolicy": {}}))
    assert "\\x1b[2Jpolicy" in exc.fields
    assert not any(has_control_character(t) for t in texts(exc))


# --- 3. wrongly accepted input -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "new", "field", "value"),
    [
        ("coverage_ratio: 0.7", "coverage_ratio: on", "funds[G1].coverage_ratio", "True"),
        ("amount_usd: 10000000", "amount_usd: true", "sources[PUB].amount_usd", "True"),
        ("households: 1000", "households: yes", "segments[R1-COF].households", "True"),
        ("cvar_alpha: 0.99", "cvar_alpha: off", "sources[PRIV].cvar_alpha", "False"),
        ("tenor_months: 6", "tenor_months: True", "products[VCF].tenor_months", "True"),
        ("name: Minimal test case", "name: x\nschema_version: true", "schema_version", "True"),
        (
            "pd_multiplier: 5.0",
            "pd_multiplier_by_chain: {coffee: no}",
            "risk_model.events[rust].pd_multiplier_by_chain.coffee",
            "False",
        ),
    ],
    ids=["on", "true", "yes", "off-optional", "True-int", "literal", "mapping-value"],
)
def test_yes_no_value_is_not_a_number(
    tmp_path: Path, line: str, new: str, field: str, value: str
) -> None:
    text = dump(MINIMAL_CASE)
    assert text.count(line + "\n") == 1
    exc = load_error(write(tmp_path / "case.yaml", text.replace(line + "\n", new + "\n")))
    [problem] = exc.problems  # each was read as 1 or 0: coverage_ratio: on meant 100 %
    assert (problem.field, problem.value) == (field, value)
    assert problem.message == (
        "true/false is not a number (YAML also reads yes/no and on/off as true/false); write "
        "the figure itself, e.g. 1 or 0.5"
    )


def test_integers_and_numeric_text_still_convert(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["funds"][0]["leverage_cap"] = 5  # an int for a float
    case["segments"][0]["households"] = 1000.0  # an integral float for an int
    case["products"][0]["rate"] = "0.30"  # numeric text, as a CSV cell arrives
    loaded = load_case(write(tmp_path / "case.yaml", dump(case)))
    assert loaded.fund("G1").leverage_cap == 5.0
    assert loaded.segment("R1-COF").households == 1000
    assert loaded.product("IND").rate == 0.30


@pytest.mark.parametrize("cell", ["true", "on", "yes"])
def test_csv_cell_true_for_a_number_is_refused(tmp_path: Path, cell: str) -> None:
    write(
        tmp_path / "segments.csv",
        "id,region,value_chain,households,need_usd,supply_usd,deforestation_pressure\n"
        f"R1-COF,R1,coffee,1000,5000000,500000,{cell}\nR2-CAC,R2,cocoa,2000,8000000,800000,0.7\n",
    )
    [problem] = load_error(case_with(tmp_path, segments={"csv": "segments.csv"})).problems
    assert (problem.field, problem.value) == (
        "segments[R1-COF].deforestation_pressure",
        f"'{cell}'",
    )
    assert problem.file == f"{tmp_path / 'segments.csv'} line 2"


def test_repeated_csv_column_is_refused(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "regions.csv", "id,name, name\nR1,Old name,New name\nR2,a,b\n")
    [problem] = load_error(case_with(tmp_path, regions={"csv": "regions.csv"})).problems
    assert (problem.file, problem.field) == (str(csv_path), "regions.csv (header)")  # last won
    assert problem.message == (
        "column 3 of the header repeats column 2 ('name'); each column may appear once (the "
        "last one would silently win)"
    )


@pytest.mark.parametrize(
    "rate",
    [{"value": {"value": 0.15}}, {"value": {"value": 0.15, "source": "[A]"}, "source": "[S] x"}],
    ids=["bare", "both-tagged"],
)
def test_tag_inside_a_tag_is_refused(tmp_path: Path, rate: dict[str, Any]) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["products"][0]["rate"] = rate  # was lifted twice: 0.15, one tag silently dropped
    [problem] = load_error(write(tmp_path / "case.yaml", dump(case))).problems
    assert problem.field == "products[IND].rate"
    assert problem.message.startswith("a {value: …, source: …} tag inside another tag;")


# --- 4. warnings -------------------------------------------------------------------------------
def test_product_and_fund_no_source_can_fund_are_warned(tmp_path: Path) -> None:
    case = copy.deepcopy(MINIMAL_CASE)
    case["products"].append({**case["products"][1], "id": "LT", "name": "Long-term loan"})
    case["funds"].append({**case["funds"][0], "id": "G2", "name": "Orphan fund"})
    loaded = load_case(write(tmp_path / "case.yaml", dump(case)))  # still a valid case
    assert case_warnings(loaded) == [
        "loan product LT (Long-term loan) is in no finance source's products, so no money can "
        "reach it; add its id to the products of a source that may lend it, or remove it",
        "guarantee fund G2 (Orphan fund) is in no finance source's funds, so nothing can "
        "capitalise it and it guarantees nothing; add its id to the funds of a source, or "
        "remove it",
    ]


def test_shipped_cases_have_no_warning() -> None:
    for path in [INPUTS / "peru_amazon.yaml", *sorted((INPUTS / "stress").glob("*.yaml"))]:
        assert case_warnings(load_case(path)) == [], path
