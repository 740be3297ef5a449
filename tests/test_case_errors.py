"""Broken cases: each raises one :class:`CaseError` naming file, exact field path and value.

Most cases are the minimal valid case of ``conftest.py`` with one edit, dumped as YAML into
``tmp_path``; the others are scratch copies of the shipped default case (YAML + CSV) with one
edit, or hand-written YAML text for the reader's own checks (syntax, encoding, alias bombs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from models import CaseError, CaseProblem, load_case

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "inputs"

WriteCase = Callable[..., Path]


def load_error(path: Path) -> CaseError:
    """The CaseError that loading ``path`` raises."""
    with pytest.raises(CaseError) as info:
        load_case(path)
    return info.value


def problem_at(exc: CaseError, field: str) -> CaseProblem:
    """The one problem reported at ``field`` (an exact field path)."""
    assert field in exc.fields, f"{field!r} not among {exc.fields}"
    matches = [p for p in exc.problems if p.field == field]
    assert len(matches) == 1, matches
    return matches[0]


def only_problem(exc: CaseError) -> CaseProblem:
    assert len(exc.problems) == 1, exc.fields
    return exc.problems[0]


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def source(case: dict[str, Any], source_id: str) -> dict[str, Any]:
    return next(s for s in case["sources"] if s["id"] == source_id)


# --- the fixture itself ----------------------------------------------------------------------
def test_minimal_case_is_valid(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    case = load_case(write_case(minimal_case_dict))
    assert [s.id for s in case.sources] == ["PUB", "PRIV", "CLIM"]
    assert case.total_gap_usd == pytest.approx(11_700_000.0)
    assert case.total_households == 3000


def test_error_message_lists_every_problem(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    source(minimal_case_dict, "PRIV")["amount_usd"] = -1
    path = write_case(minimal_case_dict)
    exc = load_error(path)
    assert isinstance(exc, ValueError)
    assert str(exc).startswith("1 problem in the case:\n  - ")
    assert str(exc.problems[0]) == (
        f"{path}: sources[PRIV].amount_usd = -1: Input should be greater than or equal to 0"
    )


# --- field bounds and types ------------------------------------------------------------------
def test_missing_required_field(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    del source(minimal_case_dict, "PRIV")["amount_usd"]
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert problem.field == "sources[PRIV].amount_usd"
    assert problem.file == str(path)
    assert problem.value == "-"
    assert problem.message == "required field is missing"


def test_missing_required_top_level_field(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    del minimal_case_dict["risk_model"]
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("risk_model", "-")


def test_string_for_a_number(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    source(minimal_case_dict, "PRIV")["amount_usd"] = "lots"
    path = write_case(minimal_case_dict)
    problem = problem_at(load_error(path), "sources[PRIV].amount_usd")
    assert problem.file == str(path)
    assert problem.value == "'lots'"
    assert "valid number" in problem.message


def test_fraction_for_an_integer(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["products"][0]["tenor_months"] = 12.5
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("products[IND].tenor_months", "12.5")
    assert "integer" in problem.message


def test_negative_amount_in_the_default_case(inputs_copy: Path) -> None:
    case_file = inputs_copy / "peru_amazon.yaml"
    replace_once(case_file, "amount_usd: {value: 750000000,", "amount_usd: {value: -750000000,")
    problem = only_problem(load_error(case_file))
    assert problem.field == "sources[PRIV_MFI].amount_usd"
    assert problem.file == str(case_file)
    assert problem.value == "-750000000"
    assert problem.message == "Input should be greater than or equal to 0"


def test_probability_above_one(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["risk_model"]["events"][0]["probability"] = 1.5
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert problem.field == "risk_model.events[rust].probability"
    assert (problem.file, problem.value) == (str(path), "1.5")
    assert problem.message == "Input should be less than or equal to 1"


def test_default_probability_must_stay_below_one(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["products"][1]["base_pd"] = 1.0
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("products[VCF].base_pd", "1.0")
    assert problem.message == "Input should be less than 1"


def test_coverage_zero(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["funds"][0]["coverage_ratio"] = 0
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file, problem.value) == (
        "funds[G1].coverage_ratio",
        str(path),
        "0",
    )
    assert problem.message == "Input should be greater than 0"


def test_leverage_below_one(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["funds"][0]["leverage_cap"] = 0.5
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("funds[G1].leverage_cap", "0.5")
    assert problem.message == "Input should be greater than or equal to 1"


def test_nan_is_refused(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    text = yaml.safe_dump(minimal_case_dict, sort_keys=False).replace(
        "rate: 0.3\n", "rate: .nan\n", 1
    )
    problem = only_problem(load_error(write_case(text=text)))
    assert (problem.field, problem.value) == ("products[IND].rate", "nan")


# --- unknown keys ----------------------------------------------------------------------------
def test_unknown_top_level_key(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["polcy"] = {"max_share_per_segment": 0.2}
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file) == ("polcy", str(path))
    assert problem.value == "{'max_share_per_segment': 0.2}"
    assert problem.message.startswith("unknown field; did you mean 'policy'? valid fields: ")


@pytest.mark.parametrize(
    ("edit", "field", "suggestion"),
    [
        (
            lambda c: source(c, "PRIV").update(amount_usdd=5),
            "sources[PRIV].amount_usdd",
            "amount_usd",
        ),
        (
            lambda c: c["risk_model"]["copula"].update(rho_macr=0.1),
            "risk_model.copula.rho_macr",
            "rho_macro",
        ),
        (
            lambda c: c["risk_model"]["events"][0].update(probabilty=0.1),
            "risk_model.events[rust].probabilty",
            "probability",
        ),
        (
            lambda c: c["risk_model"]["price_factors"]["coffee"].update(volatilty=0.3),
            "risk_model.price_factors.coffee.volatilty",
            "volatility",
        ),
        (
            lambda c: c["funds"][0].update(leverage_capp=3),
            "funds[G1].leverage_capp",
            "leverage_cap",
        ),
    ],
    ids=["source", "copula", "event", "price_factor", "fund"],
)
def test_unknown_nested_key_suggests_the_close_name(
    minimal_case_dict: dict[str, Any],
    write_case: WriteCase,
    edit: Callable[[dict[str, Any]], None],
    field: str,
    suggestion: str,
) -> None:
    edit(minimal_case_dict)
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file) == (field, str(path))
    assert f"did you mean {suggestion!r}?" in problem.message
    assert suggestion in problem.message.split("valid fields: ")[1].split(", ")


def test_unknown_csv_column_is_refused_once_by_the_header(inputs_copy: Path) -> None:
    # was one problem per row quoting every cell of the column: a foreign CSV printed whole
    csv_path = inputs_copy / "segments.csv"
    replace_once(csv_path, "id,region,value_chain,households,", "id,region,value_chain,houseolds,")
    problem = only_problem(load_error(inputs_copy / "peru_amazon.yaml"))
    assert (problem.file, problem.field) == (str(csv_path), "segments.csv (header)")
    assert problem.message.startswith(
        "column 4 ('houseolds': did you mean 'households'?) of the header is not a column of "
        "the segments table; valid columns: source, id, region, value_chain, households, "
    )


def test_field_set_by_the_loader_is_refused(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["content_sha256"] = "0" * 64
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert problem.field == "content_sha256"
    assert problem.message == "set by the loader; remove it"


# --- references and ids ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "field", "value", "valid"),
    [
        (
            lambda c: source(c, "PRIV")["products"].append("NOPE"),
            "sources[PRIV].products[2]",
            "'NOPE'",
            "unknown product id; valid ids: IND, VCF",
        ),
        (
            lambda c: source(c, "PUB")["funds"].append("G_GHOST"),
            "sources[PUB].funds[1]",
            "'G_GHOST'",
            "unknown fund id; valid ids: G1",
        ),
        (
            lambda c: c["funds"][0]["eligible_products"].insert(0, "GHOST"),
            "funds[G1].eligible_products[0]",
            "'GHOST'",
            "unknown product id; valid ids: IND, VCF",
        ),
        (
            lambda c: c["risk_model"]["events"][0]["chains"].append("tea"),
            "risk_model.events[rust].chains[1]",
            "'tea'",
            "unknown value chain id; valid ids: cocoa, coffee",
        ),
        (
            lambda c: c["segments"][1].update(region="R9"),
            "segments[R2-CAC].region",
            "'R9'",
            "unknown region id; valid ids: R1, R2",
        ),
        (
            lambda c: c["funds"][0].update(active_only_in_events=["drought"]),
            "funds[G1].active_only_in_events[0]",
            "'drought'",
            "unknown event id; valid ids: rust",
        ),
    ],
    ids=[
        "source-product",
        "source-fund",
        "fund-product",
        "event-chain",
        "segment-region",
        "fund-event",
    ],
)
def test_dangling_reference(
    minimal_case_dict: dict[str, Any],
    write_case: WriteCase,
    edit: Callable[[dict[str, Any]], None],
    field: str,
    value: str,
    valid: str,
) -> None:
    edit(minimal_case_dict)
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file, problem.value) == (field, str(path), value)
    assert problem.message == valid


def test_duplicate_id(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["sources"].append(dict(source(minimal_case_dict, "PUB"), name="Again"))
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file, problem.value) == ("sources[PUB].id", str(path), "'PUB'")
    assert problem.message == "duplicate source id; ids must be unique"


def test_duplicate_segment_in_the_default_csv(inputs_copy: Path) -> None:
    csv_path = inputs_copy / "segments.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    csv_path.write_text("".join([*lines, lines[1]]), encoding="utf-8")  # SM-COF again, line 29
    exc = load_error(inputs_copy / "peru_amazon.yaml")
    dup = problem_at(exc, "segments[SM-COF].id")
    assert dup.file == f"{csv_path} line 29"
    assert dup.message == "duplicate segment id; ids must be unique"
    # the second SM-COF also repeats the region x chain pair, once reported per copy
    assert exc.fields.count("segments[SM-COF].value_chain") == 2
    assert len(exc.problems) == 3


# --- CSV tables ------------------------------------------------------------------------------
def test_supply_above_need_in_a_csv_row(inputs_copy: Path) -> None:
    csv_path = inputs_copy / "segments.csv"
    replace_once(csv_path, ",26880000,", ",179200001,")  # SM-COF, line 2
    replace_once(csv_path, ",12276000,", ",999999999,")  # OS-DIV, line 28
    exc = load_error(inputs_copy / "peru_amazon.yaml")
    assert exc.fields == ["segments[SM-COF].supply_usd", "segments[OS-DIV].supply_usd"]
    first = problem_at(exc, "segments[SM-COF].supply_usd")
    assert first.file == f"{csv_path} line 2"
    assert first.value == "179200001.0"
    assert first.message == "current supply exceeds the need of 179,200,000; it must be <= need"
    last = problem_at(exc, "segments[OS-DIV].supply_usd")
    assert (last.file, last.value) == (f"{csv_path} line 28", "999999999.0")


def test_missing_csv_file(inputs_copy: Path) -> None:
    case_file = inputs_copy / "peru_amazon.yaml"
    replace_once(case_file, "{csv: segments.csv}", "{csv: segmentz.csv}")
    problem = only_problem(load_error(case_file))
    assert problem.file == str(inputs_copy / "segmentz.csv")
    assert problem.field.startswith("segments.csv")
    assert problem.value == "'segmentz.csv'"
    assert problem.message == "file not found"


def test_csv_row_with_too_many_cells(inputs_copy: Path) -> None:
    csv_path = inputs_copy / "segments.csv"
    replace_once(csv_path, "[S] households: inforegion 2013", "[S] inforegion,extra")
    problem = only_problem(load_error(inputs_copy / "peru_amazon.yaml"))
    assert problem.file == str(csv_path)
    assert "line 2" in problem.field
    assert "more cells than the header" in problem.message


# --- reading files ---------------------------------------------------------------------------
def test_malformed_yaml_reports_the_line(write_case: WriteCase) -> None:
    text = "name: Broken\nregions:\n  - id: R1\n   name: One\nsegments: []\n"
    path = write_case(text=text)
    problem = only_problem(load_error(path))
    assert problem.file == str(path)
    assert problem.field == "line 4, column 4"
    assert problem.message.startswith("malformed YAML at line 4, column 4: ")


def test_unclosed_flow_sequence_reports_the_line(write_case: WriteCase) -> None:
    text = "name: Broken\nregions:\n  - {id: R1, name: One}\nsegments: [unclosed\nproducts: []\n"
    problem = only_problem(load_error(write_case(text=text)))
    assert problem.field == "line 5, column 9"
    assert "line 5" in problem.message


def test_tab_indentation_reports_the_line(write_case: WriteCase) -> None:
    problem = only_problem(load_error(write_case(text="name: x\nregions:\n\t- id: R1\n")))
    assert problem.field == "line 3, column 1"
    assert "'\\t'" in problem.message


def test_missing_case_file(tmp_path: Path) -> None:
    path = tmp_path / "no_such_case.yaml"
    problem = only_problem(load_error(path))
    assert (problem.file, problem.field, problem.value) == (str(path), "(file)", "-")
    assert problem.message == "file not found"


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    problem = only_problem(load_error(tmp_path))
    assert (problem.file, problem.message) == (str(tmp_path), "is a directory, not a case file")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; a case needs at least name, regions, segments..."),
        ("  \n\n\t\n", "the file is empty; a case needs at least name, regions, segments..."),
        ("# only a comment\n", "the file holds no YAML document"),
    ],
    ids=["empty", "blank", "comment-only"],
)
def test_empty_file(write_case: WriteCase, text: str, message: str) -> None:
    path = write_case(text=text)
    problem = only_problem(load_error(path))
    assert (problem.file, problem.field, problem.value) == (str(path), "(file)", "-")
    assert problem.message == message


def test_empty_csv_table(inputs_copy: Path) -> None:
    (inputs_copy / "segments.csv").write_bytes(b"")
    problem = only_problem(load_error(inputs_copy / "peru_amazon.yaml"))
    assert problem.file == str(inputs_copy / "segments.csv")
    assert problem.message == "the CSV table is empty; it needs a header row"


def test_root_that_is_not_a_mapping(write_case: WriteCase) -> None:
    path = write_case(text="- name: a list\n- of things\n")
    problem = only_problem(load_error(path))
    assert (problem.file, problem.field) == (str(path), "(root)")
    assert problem.message.startswith("a case file must be a mapping")


def test_yaml_file_in_latin1(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    minimal_case_dict["regions"][0]["name"] = "Junín"
    text = yaml.safe_dump(minimal_case_dict, sort_keys=False, allow_unicode=True)
    offset = text.encode("latin-1").index(b"\xed")
    path = write_case(data=text.encode("latin-1"))
    problem = only_problem(load_error(path))
    assert (problem.file, problem.field) == (str(path), "(file)")
    assert problem.message == (
        f"not UTF-8 text (byte 0xed at offset {offset}); save the file as UTF-8"
    )


def test_csv_file_in_latin1(inputs_copy: Path) -> None:
    csv_path = inputs_copy / "segments.csv"
    csv_path.write_bytes(csv_path.read_text(encoding="utf-8").encode("latin-1"))
    problem = only_problem(load_error(inputs_copy / "peru_amazon.yaml"))
    assert problem.file == str(csv_path)
    assert problem.message.startswith("not UTF-8 text (byte 0xa7 at offset ")  # the '§'


def test_utf8_bom_is_accepted(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    text = yaml.safe_dump(minimal_case_dict, sort_keys=False)
    case = load_case(write_case(data=b"\xef\xbb\xbf" + text.encode("utf-8")))
    assert case.name == "Minimal test case"


def _alias_bomb(levels: int = 9, width: int = 9, mapping: bool = False) -> str:
    """A "billion laughs" document: each level repeats the previous one ``width`` times."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for n in range(1, levels + 1):
        if mapping:
            body = "{" + ", ".join(f"k{j}: *l{n - 1}" for j in range(width)) + "}"
        else:
            body = "[" + ", ".join([f"*l{n - 1}"] * width) + "]"
        lines.append(f"l{n}: &l{n} {body}")
    lines.append(f"name: *l{levels}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("mapping", [False, True], ids=["sequences", "mappings"])
def test_yaml_bomb_is_refused_quickly(write_case: WriteCase, mapping: bool) -> None:
    path = write_case(text=_alias_bomb(9, 9, mapping=mapping))
    start = time.perf_counter()
    exc = load_error(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"the alias bomb took {elapsed:.1f} s"  # a hang guard
    problem = only_problem(exc)
    assert (problem.file, problem.field) == (str(path), "(file)")
    assert problem.message.startswith("the YAML expands to more than 200,000 values")


def test_small_aliases_still_work(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    text = yaml.safe_dump(minimal_case_dict, sort_keys=False).replace(
        "- id: IND\n", "- id: IND\n  eligible_chains: &chains [coffee, cocoa]\n", 1
    )
    text = text.replace(
        "  eligible_chains:\n  - coffee\n  - cocoa\n", "  eligible_chains: *chains\n"
    )
    assert "*chains" in text
    case = load_case(write_case(text=text))
    assert case.product("IND").eligible_chains == case.product("VCF").eligible_chains


def test_deep_nesting_is_refused(write_case: WriteCase) -> None:
    path = write_case(text="name: " + "[" * 100 + "]" * 100 + "\n")
    problem = only_problem(load_error(path))
    assert problem.message == "the YAML is nested 101 levels deep; at most 64"


def test_duplicate_yaml_key(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    text = "name: First\n" + yaml.safe_dump(minimal_case_dict, sort_keys=False)
    path = write_case(text=text)
    problem = only_problem(load_error(path))
    assert problem.file == str(path)
    assert problem.field == "line 2, column 1"
    assert problem.message == (
        "malformed YAML at line 2, column 1: duplicate key 'name' (first at line 1)"
    )


def test_duplicate_nested_yaml_key(write_case: WriteCase) -> None:
    text = "name: x\nrisk_model:\n  copula: {rho_macro: 0.1, rho_macro: 0.2}\n"
    problem = only_problem(load_error(write_case(text=text)))
    assert problem.message.endswith("duplicate key 'rho_macro' (first at line 3)")
    assert problem.field.startswith("line 3, column ")


def test_yaml_merge_keys_work(minimal_case_dict: dict[str, Any], write_case: WriteCase) -> None:
    text = yaml.safe_dump(minimal_case_dict, sort_keys=False)
    text = text.replace("- id: IND\n", "- &loan\n  id: IND\n", 1)
    text = text.replace("- id: VCF\n", "- <<: *loan\n  id: VCF\n", 1)
    assert "<<: *loan" in text
    case = load_case(write_case(text=text))
    assert case.product("VCF").lgd_sd == pytest.approx(0.2)  # inherited from IND
    assert case.product("VCF").tenor_months == 6  # its own value wins


# --- cross-field checks ----------------------------------------------------------------------
def test_cvar_limit_without_cvar_alpha(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    del source(minimal_case_dict, "PRIV")["cvar_alpha"]
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file, problem.value) == (
        "sources[PRIV].cvar_alpha",
        str(path),
        "null",
    )
    assert problem.message.startswith("a CVaR limit needs its confidence level cvar_alpha")


def test_cvar_limit_in_usd_and_as_share(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    source(minimal_case_dict, "PRIV")["cvar_limit_usd"] = 30_000_000
    exc = load_error(write_case(minimal_case_dict))
    assert exc.fields == ["sources[PRIV].cvar_limit_share", "sources[PRIV].cvar_limit_usd"]
    assert problem_at(exc, "sources[PRIV].cvar_limit_usd").value == "30000000.0"
    assert "exceeds the source's amount of 20,000,000" in exc.problems[1].message


@pytest.mark.parametrize(
    ("rhos", "total"),
    [((0.5, 0.3, 0.2), "1.0"), ((0.6, 0.3, 0.3), "1.2")],
    ids=["equal-1", "above-1"],
)
def test_rho_sum_at_least_one(
    minimal_case_dict: dict[str, Any],
    write_case: WriteCase,
    rhos: tuple[float, float, float],
    total: str,
) -> None:
    minimal_case_dict["risk_model"]["copula"] = dict(
        zip(("rho_macro", "rho_chain", "rho_region"), rhos, strict=True)
    )
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file, problem.value) == ("risk_model.copula", str(path), total)
    assert problem.message == "rho_macro + rho_chain + rho_region must be < 1"


def test_bad_provenance_tag_on_a_figure(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    source(minimal_case_dict, "PRIV")["amount_usd"] = {"value": 2e7, "source": "from a friend"}
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file) == ("sources[PRIV].amount_usd.source", str(path))
    assert problem.value == "'from a friend'"
    assert problem.message.startswith("a source tag must start with [S] (sourced), [D] (derived)")


def test_bad_provenance_tag_on_an_entity(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["funds"][0]["source"] = "from a friend"
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("funds[G1].source", "'from a friend'")
    assert "a source tag must start with [S]" in problem.message


def test_bad_provenance_tag_in_a_csv_column(inputs_copy: Path) -> None:
    csv_path = inputs_copy / "segments.csv"
    replace_once(csv_path, ",[D] 70000 households", ",from a friend: 70000 households")
    problem = only_problem(load_error(inputs_copy / "peru_amazon.yaml"))
    assert problem.field == "segments[LO-DIV].need_usd.source"
    assert problem.file == f"{csv_path} line 22"
    assert problem.value.startswith("'from a friend: 70000 households")
    assert problem.value.endswith("…") and len(problem.value) == 41  # 40 characters shown


def test_non_string_provenance_tag_is_refused(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    source(minimal_case_dict, "PRIV")["amount_usd"] = {"value": 2e7, "source": 2019}
    exc = load_error(write_case(minimal_case_dict))
    assert problem_at(exc, "sources[PRIV].amount_usd.source").value == "2019"


def test_non_psd_chain_correlations(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["value_chains"].append({"id": "palm", "name": "Oil palm"})
    minimal_case_dict["risk_model"]["chain_correlations"] = [
        {"chains": ["coffee", "cocoa"], "correlation": 0.9},
        {"chains": ["coffee", "palm"], "correlation": 0.9},
        {"chains": ["cocoa", "palm"], "correlation": -0.9},
    ]
    path = write_case(minimal_case_dict)
    problem = only_problem(load_error(path))
    assert (problem.field, problem.file) == ("risk_model.chain_correlations", str(path))
    assert problem.value == "'min eigenvalue -0.8000'"
    assert "not positive semi-definite" in problem.message


def test_chain_correlation_of_a_chain_with_itself(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["risk_model"]["chain_correlations"].append(
        {"chains": ["cocoa", "cocoa"], "correlation": 0.5}
    )
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == (
        "risk_model.chain_correlations[1].chains",
        "'cocoa, cocoa'",
    )


def test_first_loss_fund_without_cap(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["funds"][0]["structure"] = "first_loss"
    problem = only_problem(load_error(write_case(minimal_case_dict)))
    assert (problem.field, problem.value) == ("funds[G1].first_loss_cap_share", "null")


# --- several problems at once ----------------------------------------------------------------
def test_several_field_problems_are_reported_together(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    del source(minimal_case_dict, "PRIV")["amount_usd"]
    source(minimal_case_dict, "PUB")["amount_usd"] = -1
    minimal_case_dict["funds"][0]["coverage_ratio"] = 0
    minimal_case_dict["products"][0]["rate"] = "high"
    minimal_case_dict["risk_model"]["events"][0]["probability"] = 2
    minimal_case_dict["polcy"] = {}
    path = write_case(minimal_case_dict)
    exc = load_error(path)
    assert len(exc.problems) == 6
    assert str(exc).startswith("6 problems in the case:\n")
    assert set(exc.fields) == {
        "sources[PRIV].amount_usd",
        "sources[PUB].amount_usd",
        "funds[G1].coverage_ratio",
        "products[IND].rate",
        "risk_model.events[rust].probability",
        "polcy",
    }
    assert {p.file for p in exc.problems} == {str(path)}


def test_several_cross_field_problems_are_reported_together(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    source(minimal_case_dict, "PRIV")["products"].append("NOPE")
    del source(minimal_case_dict, "PRIV")["cvar_alpha"]
    minimal_case_dict["segments"][0]["supply_usd"] = 6_000_000
    minimal_case_dict["products"].append(dict(minimal_case_dict["products"][1]))
    minimal_case_dict["risk_model"]["copula"]["rho_macro"] = 0.9
    minimal_case_dict["risk_model"]["events"][0]["chains"] = ["coffee", "tea"]
    exc = load_error(write_case(minimal_case_dict))
    assert len(exc.problems) == 6
    assert set(exc.fields) == {
        "segments[R1-COF].supply_usd",
        "sources[PRIV].cvar_alpha",
        "risk_model.copula",
        "products[VCF].id",
        "sources[PRIV].products[2]",
        "risk_model.events[rust].chains[1]",
    }


def test_a_hundred_problems_are_all_listed(
    minimal_case_dict: dict[str, Any], write_case: WriteCase
) -> None:
    minimal_case_dict["sources"] += [
        {
            "id": f"S{n:03d}",
            "name": f"Lender {n}",
            "kind": "private",
            "amount_usd": -n - 1,
            "cost_of_funds_rate": 0.05,
            "products": ["IND"],
        }
        for n in range(100)
    ]
    exc = load_error(write_case(minimal_case_dict))
    assert len(exc.problems) == 100
    assert exc.fields == [f"sources[S{n:03d}].amount_usd" for n in range(100)]
    assert [p.value for p in exc.problems[:3]] == ["-1", "-2", "-3"]


# --- overlays --------------------------------------------------------------------------------
def test_overlay_with_a_misspelt_key(tmp_path: Path) -> None:
    overlay = tmp_path / "typo.yaml"
    overlay.write_text(
        f"base_case: {INPUTS / 'peru_amazon.yaml'}\nchnages: {{}}\n", encoding="utf-8"
    )
    problem = only_problem(load_error(overlay))
    assert (problem.file, problem.field) == (str(overlay), "chnages")
    assert problem.message == "unknown overlay key; an overlay has base_case, stress, changes"


def test_overlay_problem_names_the_overlay_file(tmp_path: Path) -> None:
    overlay = tmp_path / "bad_amount.yaml"
    overlay.write_text(
        f"base_case: {INPUTS / 'peru_amazon.yaml'}\n"
        "changes:\n  sources:\n    - {id: CLIM_GCF, amount_usd: -5}\n",
        encoding="utf-8",
    )
    problem = only_problem(load_error(overlay))
    assert (problem.file, problem.field, problem.value) == (
        str(overlay),
        "sources[CLIM_GCF].amount_usd",
        "-5",
    )


def test_overlay_entity_without_id(tmp_path: Path) -> None:
    overlay = tmp_path / "no_id.yaml"
    overlay.write_text(
        f"base_case: {INPUTS / 'peru_amazon.yaml'}\n"
        "changes:\n  funds:\n    - {uptake_share: 0.2}\n",
        encoding="utf-8",
    )
    problem = only_problem(load_error(overlay))
    assert (problem.file, problem.field) == (str(overlay), "funds")
    assert problem.message == "each changed entity needs its id"


def test_overlay_cycle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base_case: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("base_case: a.yaml\n", encoding="utf-8")
    start = time.perf_counter()
    problem = only_problem(load_error(tmp_path / "a.yaml"))
    assert time.perf_counter() - start < 2.0
    assert problem.field == "base_case"
    assert problem.message == "overlays nest more than 8 deep (a cycle?)"


def test_overlay_csv_does_not_steal_the_origin_of_base_rows(inputs_copy: Path) -> None:
    base_csv = inputs_copy / "segments.csv"
    replace_once(base_csv, ",26880000,", ",179200001,")  # SM-COF, base line 2: supply > need
    (inputs_copy / "stress" / "changes.csv").write_text(
        "id,supply_usd\nOS-DIV,12000000\n", encoding="utf-8"
    )
    overlay = inputs_copy / "stress" / "csv_overlay.yaml"
    overlay.write_text(
        "base_case: ../peru_amazon.yaml\nchanges:\n  segments: {csv: changes.csv}\n",
        encoding="utf-8",
    )
    problem = only_problem(load_error(overlay))
    assert problem.field == "segments[SM-COF].supply_usd"
    assert problem.file == f"{base_csv} line 2"
