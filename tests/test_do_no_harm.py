"""Crashes, silent acceptance, signals and packaging of issue #14, each reproduced as written.

- a valid case whose optimum lends nothing (the README's own example case) runs to a report;
- a case file whose name is not UTF-8 runs to a report;
- the same stress given twice is refused, not counted twice;
- Ctrl-C while starting, and Ctrl-C pressed again and again, give one line and exit 130;
- ``ppcfin --version``; a plain (non-editable) install finds the shipped case from any folder.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import INPUTS, MINIMAL_CASE, REPO, default_signals

from models import load_case, simulate
from models.text import printable
from optimizer import __version__
from optimizer.analysis.stress_testing import shipped_stresses, stress
from optimizer.door.cli import main
from optimizer.door.cli_signals import interrupt_signals
from optimizer.solve import optimize


def readme_example_case(folder: Path) -> Path:
    """The case the README shows under "The case format", with a one-row segments table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(schema_version: 1.*?)```", text, re.S)
    assert block, "the README lost its example case"
    path = folder / "my_case.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    (folder / "segments.csv").write_text(
        "id,region,value_chain,households,need_usd,supply_usd,pd_multiplier,"
        "deforestation_pressure,remote,source\n"
        "SM-COF,SM,coffee,1000,5000000,1000000,1.0,0.5,false,[A] test row\n",
        encoding="utf-8",
    )
    return path


def test_a_case_whose_optimum_lends_nothing_gets_its_report(tmp_path, capsys):
    case_file = readme_example_case(tmp_path)
    case = load_case(case_file)
    res = optimize(case, simulate(case, 300, seed=7))
    assert res.allocation["amount_usd"].sum() == pytest.approx(0.0, abs=1.0)  # the premise
    out = tmp_path / "out"
    assert main(["run", str(case_file), "-n", "300", "--out", str(out), "--format", "html"]) == 0
    assert (out / "report.html").stat().st_size > 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_case_file_name_that_is_not_utf8_runs_to_its_report(tmp_path, capsys):
    name = os.fsdecode(b"Jun\xedn.yaml")  # Latin-1 bytes, as a Windows share would give
    case_file = tmp_path / name
    case_file.write_text(yaml.safe_dump(MINIMAL_CASE, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(case_file), "-n", "300", "--out", str(out), "--format", "html"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Jun\\xedn.yaml" in html  # the undecodable byte shown escaped
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def default_allocation():
    case = load_case()
    return case, optimize(case, simulate(case, 300, seed=7))


def test_the_same_stress_twice_is_refused_before_any_work(default_allocation, monkeypatch):
    case, allocation = default_allocation
    roya = next(p for p in shipped_stresses() if p.stem == "roya_2013")
    # every draw goes through the recipe's models.simulate.simulate
    simulate_module = importlib.import_module("models.simulate")
    monkeypatch.setattr(simulate_module, "simulate", lambda *a, **k: pytest.fail("simulated"))
    with pytest.raises(ValueError, match="given twice"):
        stress(case, allocation, [roya, roya], n_scenarios=300, seed=7)
    with pytest.raises(ValueError, match="given twice"):
        stress(case, allocation, [roya, INPUTS / "stress" / ".." / "stress" / roya.name], 300, 7)


def test_two_overlays_with_one_stress_id_are_refused(default_allocation, tmp_path, inputs_copy):
    roya = inputs_copy / "stress" / "roya_2013.yaml"
    twin = inputs_copy / "stress" / "roya_again.yaml"
    twin.write_text(roya.read_text(encoding="utf-8"), encoding="utf-8")
    case = load_case(inputs_copy / "peru_amazon.yaml")
    allocation = optimize(case, simulate(case, 300, seed=7))
    with pytest.raises(ValueError, match="same stress id 'roya_2013'"):
        stress(case, allocation, [roya, twin], n_scenarios=300, seed=7)


def test_a_product_no_source_can_fund_is_warned_about(tmp_path, capsys):
    case = copy.deepcopy(MINIMAL_CASE)
    orphan = case["products"][-1]["id"]
    for source in case["sources"]:
        source["products"] = [p for p in source.get("products", []) if p != orphan]
    for fund in case["funds"]:
        fund["eligible_products"] = [p for p in fund["eligible_products"] if p != orphan] or [
            case["products"][0]["id"]
        ]
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(case, sort_keys=False), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "Warning:" in err and orphan in err


def test_control_characters_in_user_text_reach_the_terminal_escaped(tmp_path, capsys):
    assert printable("a\x1b[2Jb\u202ec\x9b") == "a\\x1b[2Jb\\u202ec\\x9b"
    evil = tmp_path / "out\x1b[2J"
    evil.write_text("a file", encoding="utf-8")
    case_file = tmp_path / "case.yaml"
    case_file.write_text(yaml.safe_dump(MINIMAL_CASE, sort_keys=False), encoding="utf-8")
    assert main(["optimize", str(case_file), "-n", "300", "--out", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "out\\x1b[2J" in err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ppcfin {__version__}"


def ppcfin(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optimizer.door.entry", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def _entry_with_cli_import_raising(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the ``ppcfin`` entry point with ``import optimizer.door.cli`` replaced by ``body``
    (Python statements that raise)."""
    script = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'optimizer.door.cli':\n"
        f"{textwrap.indent(body, ' ' * 8)}\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from optimizer.door.entry import entry\n"
        "entry()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("how", ["KeyboardInterrupt()", "ImportError('initialization failed')"])
def test_ctrl_c_while_a_compiled_module_initialises_is_one_line_and_exit_130(how, tmp_path):
    # a Ctrl-C that lands while a pybind11 extension initialises (scipy's HiGHS module, 0.63 s
    # into `ppcfin run`) comes back as ImportError("initialization failed") from it
    body = f"try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt as exc:\n    raise {how} from exc"
    done = _entry_with_cli_import_raising(body, tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "Interrupted (SIGINT) while starting: nothing was done.\n"


def test_an_import_error_that_is_not_an_interrupt_still_shows(tmp_path):
    done = _entry_with_cli_import_raising("raise ImportError('no such thing')", tmp_path)
    assert done.returncode == 1 and "ImportError: no such thing" in done.stderr


@pytest.mark.parametrize("delays_s", [(1.0,), (4.0, 0.05, 0.05), (4.0, 0.4, 0.4)])
def test_ctrl_c_once_or_again_and_again_is_one_line_and_exit_130(delays_s, tmp_path):
    proc = ppcfin("run", "-n", "40000", "--jobs", "2", "--out", str(tmp_path / "o"), cwd=tmp_path)
    try:
        for delay in delays_s:
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Interrupted (SIGINT)")
    assert not (tmp_path / "o").exists()


def test_only_the_first_signal_interrupts_so_stopping_is_not_cut_short():
    with interrupt_signals() as received:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises before this ends
        os.kill(os.getpid(), signal.SIGINT)  # while stopping: noted, not raised
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
    assert received == [signal.SIGINT, signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_a_plain_install_finds_the_shipped_case_from_any_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(REPO)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import models, optimizer.door.cli as c, sys; "
        f"assert models.__file__.startswith({str(target)!r}), models.__file__; "
        "sys.exit(c.main(sys.argv[1:]))"
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code, *args], cwd=elsewhere, env=env, capture_output=True,
            text=True,
        )  # fmt: skip

    assert run("--version").stdout.strip() == f"ppcfin {__version__}"
    assert run("validate").returncode == 0
    done = run("optimize", "-n", "300", "--out", str(elsewhere / "o"))
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "o" / "result.json").is_file()
    assert (target / "models" / "inputs" / "stress" / "roya_2013.yaml").is_file()
