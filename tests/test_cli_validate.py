"""``ppcfin validate``: the summary of a good case, one clear screen of problems for a bad one.

Most tests call :func:`optimizer.door.cli.main` in-process with ``capsys``; one runs the module in a
subprocess to prove that nothing reaches stderr as a traceback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from optimizer.door.cli import main

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "inputs"
STRESS = INPUTS / "stress"
SCREEN_LINES = 60

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``ppcfin argv...`` (ANSI colour codes removed)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, _ANSI.sub("", captured.out), _ANSI.sub("", captured.err)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def dump(path: Path, case: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(case, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def source(case: dict[str, Any], source_id: str) -> dict[str, Any]:
    return next(s for s in case["sources"] if s["id"] == source_id)


# --- a good case -----------------------------------------------------------------------------
def _assert_default_summary(out: str) -> None:
    assert "Peruvian Amazon PPC — default case" in out
    assert re.search(r"segments\s+27\s", out)
    assert re.search(r"households\s+545,000", out)
    assert "credit gap US$2,380.1m" in out
    totals = {
        "total public": "303.0",
        "total private": "1,600.0",
        "total climate": "101.0",
    }
    for label, amount in totals.items():
        rows = [line for line in out.splitlines() if label in line]
        assert len(rows) == 1, label
        assert re.search(rf"\s{re.escape(amount)}\s", rows[0]), rows[0]
    assert re.search(r"│ total\s+│\s+│\s+2,004\.0 │", out)
    for sid in ("PRIV_SENIOR", "CLIM_GCF", "PUB_AGROPERU"):
        assert sid in out
    assert "The case is valid." in out


def test_validate_default_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "validate")
    assert code == 0
    assert err == ""
    _assert_default_summary(out)
    assert f"file {INPUTS / 'peru_amazon.yaml'}" in out


def test_validate_default_case_by_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "validate", INPUTS / "peru_amazon.yaml")
    assert (code, err) == (0, "")
    _assert_default_summary(out)


def test_validate_a_case_in_a_folder_whose_name_looks_like_markup(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # regression: the path went into rich markup unescaped, and "[/]" closed a tag that was
    # never opened (MarkupError, a traceback instead of the summary)
    folder = tmp_path / "odd[/]"
    shutil.copytree(INPUTS, folder)
    case_file = folder / "peru_amazon.yaml"
    assert "[/]" in str(case_file)
    code, out, err = run_cli(capsys, "validate", case_file)
    assert (code, err) == (0, "")
    _assert_default_summary(out)
    assert str(case_file) in out.replace("\n", "")  # a long path may be folded over lines


@pytest.mark.parametrize("stem", sorted(p.stem for p in STRESS.glob("*.yaml")))
def test_validate_stress_overlay(capsys: pytest.CaptureFixture[str], stem: str) -> None:
    code, out, err = run_cli(capsys, "validate", STRESS / f"{stem}.yaml")
    assert (code, err) == (0, "")
    assert f"{stem}.yaml" in out
    assert "The case is valid." in out


def test_validate_concessional_shortfall_prints_the_halved_climate_money(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "validate", STRESS / "concessional_shortfall.yaml")
    assert code == 0
    [row] = [line for line in out.splitlines() if "total climate" in line]
    assert re.search(r"\s50\.5\s", row)


def test_validate_stress_overlay_prints_its_stress_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "validate", STRESS / "roya_2013.yaml")
    assert code == 0
    assert "Roya-2013 replay" in out


# --- bad cases -------------------------------------------------------------------------------
def _minimal(minimal: dict[str, Any], tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    edit(minimal)
    return dump(tmp_path / "case.yaml", minimal)


def _missing_field(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    return _minimal(minimal, tmp_path, lambda c: source(c, "PRIV").pop("amount_usd"))


def _unknown_key(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    return _minimal(minimal, tmp_path, lambda c: source(c, "PRIV").update(amount_usdd=5))


def _dangling(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    return _minimal(minimal, tmp_path, lambda c: c["funds"][0]["eligible_products"].append("GHOST"))


def _negative_amount(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    case_file = inputs / "peru_amazon.yaml"
    replace_once(case_file, "amount_usd: {value: 750000000,", "amount_usd: {value: -750000000,")
    return case_file


def _supply_above_need(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    replace_once(inputs / "segments.csv", ",26880000,", ",179200001,")
    return inputs / "peru_amazon.yaml"


def _malformed(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text("name: Broken\nregions:\n  - id: R1\n   name: One\n", encoding="utf-8")
    return path


def _latin1(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    path = tmp_path / "case.yaml"
    path.write_bytes("name: Junín\n".encode("latin-1"))
    return path


def _bomb(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, 10)]
    path = tmp_path / "case.yaml"
    path.write_text("\n".join([*lines, "name: *l9"]) + "\n", encoding="utf-8")
    return path


def _bad_tag(minimal: dict[str, Any], tmp_path: Path, inputs: Path) -> Path:
    return _minimal(
        minimal,
        tmp_path,
        lambda c: source(c, "PRIV").update(amount_usd={"value": 1, "source": "from a friend"}),
    )


BROKEN: dict[str, tuple[Callable[..., Path], list[str]]] = {
    "missing-field": (_missing_field, ["sources[PRIV].amount_usd = -", "required field"]),
    "unknown-key": (_unknown_key, ["sources[PRIV].amount_usdd", "did you mean 'amount_usd'?"]),
    "dangling-ref": (_dangling, ["funds[G1].eligible_products[2] = 'GHOST'", "unknown product"]),
    "negative-amount": (_negative_amount, ["sources[PRIV_MFI].amount_usd = -750000000"]),
    "supply-above-need": (
        _supply_above_need,
        ["segments.csv line 2", "segments[SM-COF].supply_usd = 179200001.0"],
    ),
    "malformed-yaml": (_malformed, ["line 4, column 4", "malformed YAML at line 4"]),
    "not-utf8": (_latin1, ["(file)", "not UTF-8 text (byte 0xed"]),
    "yaml-bomb": (_bomb, ["(file)", "expands to more than 200,000 values"]),
    "bad-tag": (_bad_tag, ["sources[PRIV].amount_usd.source = 'from a friend'"]),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_validate_broken_case(
    capsys: pytest.CaptureFixture[str],
    minimal_case_dict: dict[str, Any],
    inputs_copy: Path,
    tmp_path: Path,
    name: str,
) -> None:
    build, expected = BROKEN[name]
    path = build(minimal_case_dict, tmp_path, inputs_copy)
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 2
    assert out == ""
    assert err.startswith("The case cannot be used: 1 problem(s).\n")
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert len(err.splitlines()) < SCREEN_LINES


def test_validate_a_hundred_problems_fits_one_screen(
    capsys: pytest.CaptureFixture[str], minimal_case_dict: dict[str, Any], tmp_path: Path
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
    code, out, err = run_cli(capsys, "validate", dump(tmp_path / "case.yaml", minimal_case_dict))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) < SCREEN_LINES
    assert lines[0] == "The case cannot be used: 100 problem(s)."
    assert "sources[S000].amount_usd = -1" in err
    assert "sources[S024].amount_usd = -25" in err
    assert "sources[S025]" not in err
    assert lines[-1].strip() == "… and 75 more."
    assert "Traceback" not in err


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "absent_case.yaml"
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 2
    assert out == ""
    assert str(path) in err
    assert "(file) = -: file not found" in err
    assert len(err.splitlines()) < SCREEN_LINES


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("validate", "a.yaml", "b.yaml"), "unexpected extra argument"),
        (("validate", "--bogus"), "No such option: --bogus"),
    ],
    ids=["extra-argument", "unknown-option"],
)
def test_validate_usage_error_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_validate_prints_event_field_paths_intact(
    capsys: pytest.CaptureFixture[str], minimal_case_dict: dict[str, Any], tmp_path: Path
) -> None:
    minimal_case_dict["risk_model"]["events"][0]["probability"] = 1.5
    code, _, err = run_cli(capsys, "validate", dump(tmp_path / "case.yaml", minimal_case_dict))
    assert code == 2
    assert "risk_model.events[rust].probability = 1.5" in err


def test_validate_value_with_markup_characters(
    capsys: pytest.CaptureFixture[str], minimal_case_dict: dict[str, Any], tmp_path: Path
) -> None:
    source(minimal_case_dict, "PRIV")["amount_usd"] = "[/x]"
    code, _, err = run_cli(capsys, "validate", dump(tmp_path / "case.yaml", minimal_case_dict))
    assert code == 2
    assert "sources[PRIV].amount_usd = '[/x]'" in err


# --- as a separate process -------------------------------------------------------------------
def _run_module(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optimizer.door.cli", "validate", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_module_validate_broken_case_in_a_subprocess(inputs_copy: Path) -> None:
    case_file = inputs_copy / "peru_amazon.yaml"
    replace_once(case_file, "amount_usd: {value: 750000000,", "amount_usd: {value: -750000000,")
    # supply > need is a cross-field check: it runs only once every field passes its bounds
    replace_once(inputs_copy / "segments.csv", ",26880000,", ",179200001,")
    replace_once(case_file, "coverage_ratio: {value: 0.70,", "coverage_ratio: {value: 0,")
    proc = _run_module(case_file)
    err = _ANSI.sub("", proc.stderr)
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert proc.stdout == ""
    assert err.splitlines()[0] == "The case cannot be used: 2 problem(s)."
    assert "sources[PRIV_MFI].amount_usd = -750000000" in err
    assert "funds[G_PUB].coverage_ratio = 0" in err
    assert len(err.splitlines()) < SCREEN_LINES
