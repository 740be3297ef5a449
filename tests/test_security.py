"""Security of the door and the outputs: safe YAML, bounded reads, no code run, escaped text,
no network.

* YAML: ``!!python/...`` tags are refused (nothing is constructed), alias bombs, alias loops,
  deep nesting, huge files, devices and pipes are refused quickly.
* Strings that would run code somewhere (Python, Jinja, shell, HTML, rich markup) are plain text
  in names and descriptions; in ids they are refused. A marker file proves nothing ran.
* A copy of the shipped case whose names and provenance tags are such strings goes through the
  whole pipeline in-process (load, 300 scenarios, optimize, evaluate out of sample, HTML and PDF)
  with inet sockets blocked: nothing tries the network, the HTML escapes every string and the
  PDF shows it as text. The ``slow`` variant runs ``ppcfin run`` in a subprocess whose
  ``sitecustomize.py`` blocks the same sockets.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import INPUTS, MINIMAL_CASE

from models import CaseError, load_case, simulate
from models.yaml_io import MAX_FILE_BYTES, MAX_YAML_BYTES
from optimizer.analysis.evaluate import evaluate
from optimizer.door.cli import main
from optimizer.door.run import OUT_OF_SAMPLE_SEED_OFFSET, RunRecord
from optimizer.solve import optimize

REPO = Path(__file__).resolve().parent.parent
N_SCENARIOS = 300
QUICK_S = 2.0
"""A refusal that takes longer than this is a hang guard failing (generous for a loaded box)."""


def load_error(path: Path) -> CaseError:
    with pytest.raises(CaseError) as info:
        load_case(path)
    return info.value


def timed_error(path: Path) -> tuple[CaseError, float]:
    start = time.perf_counter()
    exc = load_error(path)
    return exc, time.perf_counter() - start


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --- YAML loaded safely ------------------------------------------------------------------------
PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/object:subprocess.Popen {{args: [touch, '{marker}']}}",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/tuple [1, 2]",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
    "!!binary aW1wb3J0IG9z",  # allowed by YAML, read as bytes: a name must be text
]


@pytest.mark.parametrize("tagged", PYTHON_TAGS)
def test_python_tags_construct_nothing(tmp_path: Path, tagged: str) -> None:
    marker = tmp_path / "MARKER"
    case = tmp_path / "case.yaml"
    case.write_text(f"name: {tagged.format(marker=marker)}\n", encoding="utf-8")
    exc = load_error(case)
    assert not marker.exists()
    if "python" in tagged:
        [problem] = exc.problems
        assert problem.field == "line 1, column 7"
        assert "could not determine a constructor for the tag" in problem.message


def test_python_tag_inside_a_valid_case_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    text = dump(MINIMAL_CASE).replace(
        "name: Minimal test case", f"name: !!python/object/apply:os.system ['touch {marker}']"
    )
    (tmp_path / "case.yaml").write_text(text, encoding="utf-8")
    assert "could not determine a constructor" in str(load_error(tmp_path / "case.yaml"))
    assert not marker.exists()


def _bomb(kind: str, levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" document: each level repeats the previous one ``width`` times."""
    lines = ["l0: &l0 {" + ", ".join(f"k{j}: lol" for j in range(width)) + "}"]
    for n in range(1, levels + 1):
        if kind == "merge":  # `<<:` copies every key of every merged mapping
            body = "{<<: [" + ", ".join([f"*l{n - 1}"] * width) + f"], k: {n}}}"
        elif kind == "keys":  # aliases as values of many distinct keys
            body = "{" + ", ".join(f"k{j}: *l{n - 1}" for j in range(width)) + "}"
        else:
            body = "[" + ", ".join([f"*l{n - 1}"] * width) + "]"
        lines.append(f"l{n}: &l{n} {body}")
    return "\n".join(lines) + f"\nname: *l{levels}\n"


@pytest.mark.parametrize("kind", ["sequence", "keys", "merge"])
def test_alias_bomb_is_refused_quickly(tmp_path: Path, kind: str) -> None:
    (tmp_path / "case.yaml").write_text(_bomb(kind), encoding="utf-8")
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S, f"the {kind} bomb took {elapsed_s:.1f} s"
    assert exc.problems[0].message.startswith("the YAML expands to more than 200,000 values")


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a {<<: *a}\n", "a: &a [1, [2, {c: *a}]]\nb: *a\n"],
    ids=["list", "mapping", "merge", "nested"],
)
def test_alias_loop_is_refused_quickly(tmp_path: Path, text: str) -> None:
    # regression: _expanded_size went round the loop for ever
    (tmp_path / "case.yaml").write_text(text, encoding="utf-8")
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S
    [problem] = exc.problems
    assert problem.field == "line 1, column 4"
    assert problem.message.startswith("an alias refers to the list or mapping that holds it")


@pytest.mark.parametrize(
    "text",
    [
        "name: " + "[" * 1_000_000,  # regression: the scanner's look-ahead was quadratic
        "name: " + "{a: " * 200_000,
        "".join(" " * i + "a:\n" for i in range(1_400)),
        "- " * 500_000,
    ],
    ids=["flow-lists", "flow-mappings", "block-mappings", "block-lists"],
)
def test_deep_nesting_is_refused_quickly(tmp_path: Path, text: str) -> None:
    (tmp_path / "case.yaml").write_text(text, encoding="utf-8")
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S, f"took {elapsed_s:.1f} s"
    assert exc.problems[0].message == "the YAML is nested too deeply; at most 64 levels"


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)  # no data written: only the size on disk says huge
    return path


def test_yaml_over_its_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "case.yaml", MAX_YAML_BYTES + 1)
    exc, elapsed_s = timed_error(path)
    assert elapsed_s < QUICK_S
    [problem] = exc.problems
    assert (problem.file, problem.field) == (str(path), "(file)")
    assert problem.message == (
        f"file is {MAX_YAML_BYTES + 1:,} bytes; a case file must be under {MAX_YAML_BYTES:,}; "
        "move big tables to CSV files ({csv: file.csv})"
    )


def test_csv_over_its_size_limit_is_refused_unread(tmp_path: Path) -> None:
    case = {**MINIMAL_CASE, "segments": {"csv": "big.csv"}}
    (tmp_path / "case.yaml").write_text(dump(case), encoding="utf-8")
    _sparse(tmp_path / "big.csv", MAX_FILE_BYTES + 1)
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S
    [problem] = exc.problems
    assert problem.file == str(tmp_path / "big.csv")
    assert problem.message.startswith(f"file is {MAX_FILE_BYTES + 1:,} bytes")


def test_csv_table_over_its_cell_limit_is_refused(tmp_path: Path) -> None:
    case = {**MINIMAL_CASE, "regions": {"csv": "regions.csv"}}
    (tmp_path / "case.yaml").write_text(dump(case), encoding="utf-8")
    rows = "".join(f"R{n},Region {n}\n" for n in range(100_001))
    (tmp_path / "regions.csv").write_text("id,name\n" + rows, encoding="utf-8")
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S
    [problem] = exc.problems
    assert problem.field == "regions.csv (line 100002)"  # header + 100,001 rows
    assert problem.message.startswith("the CSV table has more than 200,000 cells")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/stdin"])
def test_csv_table_that_is_a_device_is_refused(tmp_path: Path, device: str) -> None:
    # regression: /dev/zero as a table was read for ever
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    case = {**MINIMAL_CASE, "segments": {"csv": device}}
    (tmp_path / "case.yaml").write_text(dump(case), encoding="utf-8")
    exc, elapsed_s = timed_error(tmp_path / "case.yaml")
    assert elapsed_s < QUICK_S
    assert exc.problems[0].message.startswith("is not a regular file")


def test_case_file_that_is_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "case.yaml"
    os.mkfifo(fifo)  # opening it to read would wait for a writer for ever
    exc, elapsed_s = timed_error(fifo)
    assert elapsed_s < QUICK_S
    assert exc.problems[0].message.startswith("is not a regular file")


@pytest.mark.slow
def test_yaml_just_under_its_size_limit_is_parsed_in_bounded_time(tmp_path: Path) -> None:
    # the slowest text per byte for the pure-Python scanner: blank lines
    path = tmp_path / "case.yaml"
    path.write_text("name: x\n" + "\n" * (MAX_YAML_BYTES - 10), encoding="utf-8")
    exc, elapsed_s = timed_error(path)
    assert elapsed_s < 60
    assert "regions = -" in str(exc)


# --- no code execution -------------------------------------------------------------------------
def payloads(marker: Path) -> list[str]:
    """Strings that would run ``touch marker`` if any layer evaluated them (each <= 200 chars)."""
    return [
        f"__import__('os').system('touch {marker}')",
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}} {{{{7*7}}}}",
        f"$(touch {marker}) `touch {marker}` ${{HOME}} %(x)s",
        "<script>alert(1)</script> <img src=x onerror=alert(2)> \"double\" & 'single'",
        "[bold red]markup[/] [link=http://example.com]x[/link] {0} {x!r} %s",
    ]


@pytest.mark.parametrize("n", range(5))
def test_payload_in_an_id_is_refused_and_shown_as_text(tmp_path: Path, n: int) -> None:
    marker = tmp_path / "MARKER"
    text = payloads(marker)[n]
    case = {**MINIMAL_CASE, "regions": [{"id": text, "name": "x"}, *MINIMAL_CASE["regions"]]}
    (tmp_path / "case.yaml").write_text(dump(case), encoding="utf-8")
    exc = load_error(tmp_path / "case.yaml")
    problem = next(p for p in exc.problems if p.field.endswith(".id"))
    assert problem.value.startswith(repr(text)[:40])
    assert not marker.exists()


def _evil_inputs(dest: Path, marker: Path) -> tuple[Path, list[str]]:
    """A copy of the shipped inputs whose names, description and some tags are payloads."""
    shutil.copytree(INPUTS, dest)
    texts = payloads(marker)
    case = yaml.safe_load((dest / "peru_amazon.yaml").read_text(encoding="utf-8"))
    case["name"] = texts[3]
    case["description"] = " | ".join(texts)
    for group in ("regions", "value_chains", "products", "funds", "sources"):
        for n, item in enumerate(case[group]):
            item["name"] = texts[n % len(texts)]
    for event in case["risk_model"]["events"]:
        event["name"] = texts[0]
    case["products"][0]["rate"] = {"value": 0.36, "source": "[A] " + texts[3]}
    case["funds"][0]["fee_rate"] = {"value": 0.015, "source": "[S] " + texts[1]}
    (dest / "peru_amazon.yaml").write_text(dump(case), encoding="utf-8")
    stress = dest / "stress" / "roya_2013.yaml"
    overlay = yaml.safe_load(stress.read_text(encoding="utf-8"))
    overlay["stress"]["name"], overlay["stress"]["description"] = texts[4], texts[2]
    stress.write_text(dump(overlay), encoding="utf-8")
    return dest / "peru_amazon.yaml", texts


def test_payloads_in_names_load_as_plain_text(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path, texts = _evil_inputs(tmp_path / "inputs", marker)
    case = load_case(path)
    assert case.name == texts[3]
    assert case.description == " | ".join(texts)
    assert [r.name for r in case.regions[:5]] == texts
    assert case.field_sources["products[IND_MFI].rate"] == "[A] " + texts[3]
    stressed = load_case(path.parent / "stress" / "roya_2013.yaml")
    assert (stressed.stress.name, stressed.stress.description) == (texts[4], texts[2])
    assert not marker.exists()


@pytest.mark.parametrize("which", ["peru_amazon.yaml", "stress/roya_2013.yaml"])
def test_validate_prints_payloads_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    marker = tmp_path / "MARKER"
    path, texts = _evil_inputs(tmp_path / "inputs", marker)
    assert main(["validate", str(path.parent / which)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert texts[3] in out  # the case name, with its brackets and quotes
    if which.startswith("stress"):
        assert texts[4] in out  # rich markup in the stress name is printed, not applied
    assert not marker.exists()


# --- the pipeline with the network blocked -------------------------------------------------------
class NetworkBlocked(OSError):
    """Raised by the socket guard; an OSError, as a real refused connection would be."""


@contextlib.contextmanager
def network_blocked(attempts: list[str]) -> Iterator[None]:
    """Block inet sockets (AF_UNIX is left alone); every attempt is recorded in ``attempts``."""

    def refuse(what: str) -> None:
        attempts.append(what)
        raise NetworkBlocked(f"network access attempted: {what}")

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        refuse(f"connect {address!r}")

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family == socket.AF_UNIX:
            return real_connect_ex(self, address)
        refuse(f"connect_ex {address!r}")
        return 1

    def sendto(self: socket.socket, *args: Any) -> int:
        if self.family == socket.AF_UNIX:
            return real_sendto(self, *args)
        refuse(f"sendto {args[-1]!r}")
        return 0

    def getaddrinfo(host: Any, port: Any, family: int = 0, *args: Any, **kwargs: Any) -> list:
        refuse(f"getaddrinfo {host!r}:{port!r}")
        return []

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        refuse(f"create_connection {address!r}")
        raise AssertionError("unreachable")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket.socket, "sendto", sendto)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket, "create_connection", create_connection)
        yield


def test_the_socket_guard_blocks_inet_and_leaves_unix_sockets() -> None:
    attempts: list[str] = []
    with network_blocked(attempts):
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", 9), timeout=0.1)
        with pytest.raises(NetworkBlocked):
            socket.getaddrinfo("example.com", 443)
        with socket.socket(socket.AF_INET) as sock, pytest.raises(NetworkBlocked):
            sock.connect(("127.0.0.1", 9))
        left, right = socket.socketpair(socket.AF_UNIX)
        with left, right:
            left.sendall(b"ok")
            assert right.recv(2) == b"ok"
    assert len(attempts) == 3


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The pipeline on the shipped case with payload names, in-process, with sockets blocked."""
    from reports import render_html, write_pdf  # tests may; only the CLI does in the package
    from reports.from_run import report_context

    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    path, texts = _evil_inputs(root / "inputs", marker)
    attempts: list[str] = []
    with network_blocked(attempts):
        case = load_case(path)
        scenarios = simulate(case, N_SCENARIOS, seed=7)
        allocation = optimize(case, scenarios)
        fresh = simulate(case, N_SCENARIOS, seed=7 + OUT_OF_SAMPLE_SEED_OFFSET)
        record = RunRecord(
            case=case,
            scenarios=scenarios,
            allocation=allocation,
            out_of_sample=evaluate(case, allocation, fresh),
            stresses=(),
            seed=7,
            n_scenarios=N_SCENARIOS,
            scenario_method="mc",
        )
        html = render_html(report_context(record))
        pdf = write_pdf(html, root / "report.pdf")
    return {"html": html, "pdf": pdf, "texts": texts, "marker": marker, "attempts": attempts,
            "allocation": allocation}  # fmt: skip


def test_pipeline_opens_no_network_connection(evil_run: dict[str, Any]) -> None:
    assert evil_run["attempts"] == []
    assert evil_run["allocation"].gap_closed_usd > 0
    assert evil_run["pdf"].read_bytes().startswith(b"%PDF")


def test_pipeline_ran_no_payload(evil_run: dict[str, Any]) -> None:
    assert not evil_run["marker"].exists()


def test_case_strings_are_escaped_in_the_html(evil_run: dict[str, Any]) -> None:
    html = evil_run["html"]
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the case name, as text
    assert "&#34;double&#34; &amp; &#39;single&#39;" in html
    assert "{{7*7}}" in html  # a template in a provenance tag was not evaluated


needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed"
)


@needs_pdftotext
def test_case_strings_are_text_in_the_pdf(evil_run: dict[str, Any]) -> None:
    text = subprocess.run(
        ["pdftotext", "-raw", str(evil_run["pdf"]), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flat = " ".join(text.split())
    assert "<script>alert(1)</script> <img src=x onerror=alert(2)>" in flat  # as typed
    assert "\"double\" & 'single'" in flat or "“double” & ‘single’" in flat
    assert "&lt;" not in flat and "&amp;" not in flat  # not double-escaped


SITECUSTOMIZE = '''\
"""Blocks inet sockets in every Python process started with this folder on PYTHONPATH."""
import os, socket

_LOG = os.environ["PPCFIN_NET_LOG"]
open(_LOG + ".armed", "w").close()


def _refuse(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError("network access attempted: " + what)


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto


def connect(self, address):
    return _connect(self, address) if self.family == socket.AF_UNIX else _refuse(f"connect {address!r}")


def connect_ex(self, address):
    return _connect_ex(self, address) if self.family == socket.AF_UNIX else _refuse(f"connect_ex {address!r}")


def sendto(self, *args):
    return _sendto(self, *args) if self.family == socket.AF_UNIX else _refuse(f"sendto {args[-1]!r}")


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo = lambda host, port, *a, **k: _refuse(f"getaddrinfo {host!r}:{port!r}")
socket.create_connection = lambda address, *a, **k: _refuse(f"create_connection {address!r}")
'''


def _ppcfin() -> list[str]:
    script = Path(sys.executable).with_name("ppcfin")
    return [str(script)] if script.exists() else [sys.executable, "-m", "optimizer.door.cli"]


@pytest.mark.slow
def test_ppcfin_run_in_a_subprocess_without_network(tmp_path: Path) -> None:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]),
        "PPCFIN_NET_LOG": str(log),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode != 0 and "network access attempted" in probe.stderr
    log.unlink()
    out = tmp_path / "out"
    run = subprocess.run(
        [*_ppcfin(), "run", "--scenarios", str(N_SCENARIOS), "--out", str(out),
         "--format", "html,pdf"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert Path(str(log) + ".armed").exists(), "the guard was not loaded in the run"
    assert not log.exists(), log.read_text()
    for name in ("report.html", "report.pdf", "result.json"):
        assert (out / name).stat().st_size > 0
    assert re.search(r"Written to .*report\.pdf", " ".join(run.stdout.split()))
