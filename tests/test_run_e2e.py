"""``ppcfin run`` / ``report`` / ``optimize`` end to end on the shipped case (small scenario count)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess

import pytest
from openpyxl import load_workbook

from optimizer.door.cli import main
from optimizer.result import Allocation

N = "1200"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "-n", N, "--seed", "5", "--out", str(out)]) == 0
    return out


def test_run_writes_every_file(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"result.json", "allocation.csv", "run.json", "scenarios.npz", "report.html",
            "report.pdf", "report.xlsx"} <= names  # fmt: skip
    assert not [n for n in names if n.startswith(".")]
    meta = json.loads((run_dir / "run.json").read_text())
    assert len(meta["stresses"]) == 6 and meta["out_of_sample"] is not None


def test_same_figures_in_html_pdf_and_workbook(run_dir):
    result = Allocation.from_json((run_dir / "result.json").read_text())
    closed = f"{result.gap_closed_usd / 1e6:,.1f}"
    html = (run_dir / "report.html").read_text()
    assert closed in html
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(run_dir / "report.pdf"), "-"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert closed in text
    book = load_workbook(run_dir / "report.xlsx", read_only=True)
    values = [c for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row]
    numbers = [v for v in values if isinstance(v, int | float)]
    assert any(abs(v - result.gap_closed_usd) < 1.0 for v in numbers)
    # every committed source appears in all three
    for sid in result.sources.loc[result.sources["committed_usd"] > 0, "source"]:
        assert sid in html and sid in values


def _without_timestamps(html: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}( UTC|\+00:00)?", "<time>", html)


def test_report_rerenders_the_same_report_without_solving(run_dir, monkeypatch):
    before = (run_dir / "report.html").read_text()

    def no_solve(*args, **kwargs):
        raise AssertionError("report must not solve")

    monkeypatch.setattr("optimizer.solve.optimize", no_solve)
    assert main(["report", str(run_dir), "--format", "html"]) == 0
    after = (run_dir / "report.html").read_text()
    assert _without_timestamps(after) == _without_timestamps(before)
    assert (run_dir / "report.pdf").exists()  # kept: only html was re-rendered


def test_a_run_that_fails_midway_leaves_the_previous_output_intact(run_dir, monkeypatch, capsys):
    """The disk fills while the report is written, after result.json and run.json are staged."""
    from optimizer.door.run_files import load_run

    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    computed = load_run(run_dir)  # what the run computes is the fixture's (tested above)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("optimizer.door.run.run_case", lambda *a, **k: computed)
    monkeypatch.setattr("optimizer.door.cli_report._render", boom)
    code = main(["run", "-n", "300", "--out", str(run_dir)])
    assert code == 1
    assert "No space left" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert after == before
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("command", ["optimize", "run", "frontier", "sensitivity", "stress"])
def test_an_unknown_sampling_method_is_refused_before_any_work(command, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([command, "--sampling", "[bold]quasi\x1b", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--sampling '[bold]quasi\\x1b': choose from mc, antithetic, sobol, importance" in err
    assert not out.exists()


def test_report_on_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a ppcfin results folder" in capsys.readouterr().err


def test_optimize_command_writes_result_and_allocation(tmp_path, capsys):
    out = tmp_path / "opt"
    # the marginal values' lines: tests/test_marginal.py
    assert main(["optimize", "-n", "800", "--no-marginal", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gap closed" in printed
    result = Allocation.from_json((out / "result.json").read_text())
    assert 0 < result.gap_closed_share < 1
    assert (out / "allocation.csv").read_text().startswith("source,")


def test_bad_format_exits_2(tmp_path, capsys):
    assert main(["run", "-n", "100", "--out", str(tmp_path / "x"), "--format", "docx"]) == 2
    assert "choose from html, pdf, xlsx" in capsys.readouterr().err


def test_frontier_command_writes_one_row_per_point(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "front"
    assert main(["frontier", "-n", "300", "--points", "3", "--out", str(out)]) == 0
    table = pd.read_csv(out / "frontier.csv")
    assert list(table["value"]) == [0.5, 1.0, 2.0]  # x1.25 gives way to the case itself
    assert (table["status"] == "optimal").all()
    assert (
        table["weighted_gap_usd"].is_monotonic_decreasing
        or (table["weighted_gap_usd"].diff().dropna() <= 1.0).all()
    )


def test_run_report_has_the_frontier_section(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "Efficient frontier" in html
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["frontier"] is not None


def test_every_analysis_of_a_run_is_on_the_headline_scenario_set(run_dir):
    from optimizer.door.run import OUT_OF_SAMPLE_SEED_OFFSET
    from optimizer.door.run_files import load_run

    record = load_run(run_dir)
    headline = record.allocation
    draws = json.loads((run_dir / "run.json").read_text())["analyses"]
    assert set(draws) == {"headline", "out_of_sample", "frontier", "sensitivity", "stresses",
                          "replications"}  # fmt: skip
    for name, draw in draws.items():
        seed = 5 + OUT_OF_SAMPLE_SEED_OFFSET if name == "out_of_sample" else 5
        assert draw == {"n_scenarios": int(N), "seed": seed, "scenario_method": "importance",
                        "dtype": "float64"}, name  # fmt: skip
    assert record.scenarios.method == "importance"  # models.DEFAULT_SAMPLING, kept at this count
    html = (run_dir / "report.html").read_text()
    assert "Scenario sets (count, seed, precision): the allocation 1,200 (seed 5, float64)" in html
    assert "the sensitivity sweep 1,200 (seed 5, float64)" in html
    # the frontier's x1 point is the case itself on the same scenarios: the headline
    table = record.frontier.table
    own = table.loc[table["value"] == 1.0]
    assert len(own) == 1
    assert own["weighted_gap_usd"].iloc[0] == pytest.approx(
        headline.objective_weighted_gap_usd, rel=1e-6
    )
    # (its money columns are one stage-1 optimal vertex; the headline's is stage 2's choice)
    assert own["gap_closed_usd"].iloc[0] == pytest.approx(headline.gap_closed_usd, rel=1e-2)
    # the tornado starts from the headline, not from a smaller set's optimum
    assert record.sensitivity.base_weighted_gap_usd == headline.objective_weighted_gap_usd
    assert record.sensitivity.base_gap_closed_usd == headline.gap_closed_usd


def test_run_holds_limits_at_95_percent_and_gives_the_gap_closed_its_error_bar(run_dir):
    from optimizer.analysis.replicate import replication_seeds
    from optimizer.door.run_files import load_run

    record = load_run(run_dir)
    conf = record.allocation.confidence
    assert conf is not None and conf.confidence == 0.95
    assert conf.cost_gap_closed_usd == pytest.approx(
        conf.unmargined_gap_closed_usd - record.allocation.gap_closed_usd, abs=1.0
    )
    reps = record.replications
    assert (reps.replications, reps.n_scenarios, reps.confidence) == (4, int(N), 0.95)
    assert reps.table["seed"].tolist() == replication_seeds(5, 4)
    sd = reps.table["gap_closed_usd"].std(ddof=1)  # recomputed from the replications
    assert reps.gap_closed_se_usd == pytest.approx(sd, rel=1e-12)
    html = (run_dir / "report.html").read_text()
    assert f"± US${sd / 1e6:,.1f}m (standard deviation over 4 independent replications" in html
    assert "Risk limits held at 95% confidence out of sample" in html
    rows = list(load_workbook(run_dir / "report.xlsx", read_only=True)["Summary"].values)
    se_rows = [r for r in rows if r[0] == "Gap closed, Monte Carlo error (SD over replications)"]
    assert len(se_rows) == 1 and se_rows[0][1] == pytest.approx(sd, rel=1e-9)


def test_run_report_has_the_sensitivity_tornado(run_dir):
    from optimizer.door.run_files import load_run
    from reports.formats import ColumnFormat, format_value

    sens = load_run(run_dir).sensitivity
    assert sens is not None and (sens.n_scenarios, sens.seed) == (int(N), 5)
    assert len(sens.table) == 16 and sens.table["status"].str.startswith("optimal").all()
    html = (run_dir / "report.html").read_text()
    assert '<section id="sensitivity"' in html and "Sensitivity tornado" in html
    t = sens.tornado
    for value in (*t["low_change_usd"], *t["high_change_usd"]):
        assert format_value(value, ColumnFormat.USD_M) in html
    rows = list(load_workbook(run_dir / "report.xlsx", read_only=True)["Sensitivity"].values)
    header, body = rows[0], rows[1:]
    low = [r[header.index("Weighted gap change, low (US$ m)")] for r in body]
    high = [r[header.index("Weighted gap change, high (US$ m)")] for r in body]
    assert low == pytest.approx(list(t["low_change_usd"]), abs=1e-6)
    assert high == pytest.approx(list(t["high_change_usd"]), abs=1e-6)


def test_run_refuses_a_bad_confidence_or_replication_count_before_simulating(
    monkeypatch, capsys, tmp_path
):
    import optimizer.door.run as run
    from models import Recipe, load_case

    # every draw of a run goes through the recipe's models.simulate.simulate
    simulate_module = importlib.import_module("models.simulate")
    monkeypatch.setattr(simulate_module, "simulate", lambda *a, **k: pytest.fail("simulated"))
    case = load_case()
    with pytest.raises(ValueError, match="confidence must be 0"):
        run.run_case(case, Recipe(100), confidence=0.3)
    with pytest.raises(ValueError, match="replications must be 0"):
        run.run_case(case, Recipe(100), replications=1)
    assert main(["run", "-n", "100", "--replications", "1", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert "replications must be 0 (none) or at least 2, got 1" in capsys.readouterr().err
