"""The report layer end to end: charts, HTML, workbook, PDF and a headless browser.

A realistic synthetic :class:`ReportContext` (13 funders, 27 segments, 4 guarantee funds,
importance-sampling-like scenario weights) is built from a seeded ``default_rng``; the costly
renders (HTML, PDF) are done once per module.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

import reports
from reports import (
    Assumption,
    CapitalStack,
    ExecutiveSummary,
    Frontier,
    FunderRisk,
    GapClosure,
    GuaranteeFundRisk,
    ReportContext,
    Reproducibility,
    RiskEstimate,
    Sensitivity,
    ShadowPrice,
    StressResult,
    Table,
)
from reports._svg import weighted_histogram
from reports.context import SECTIONS
from reports.excel import sheet_names

PAYLOAD = '<script>alert("x")</script>'
QUOTES = "\"quotes\" & 'apostrophes'"
N_SCENARIOS = 4000

REGIONS = [
    "San Martín",
    "Junín (selva central)",
    "Pasco (Oxapampa)",
    "Huánuco",
    "Amazonas",
    "Cusco (La Convención)",
    "Puno (Sandia)",
    "Ucayali",
    "Loreto",
    "Madre de Dios",
]
CHAINS = [
    "Coffee",
    "Cocoa",
    "Oil palm",
    "Rice and annual crops",
    "Cattle",
    "Diversified (yuca, plantain, maize)",
    "Agroforestry and non-timber forest products",
]
PRODUCTS = [
    "Individual MFI loan",
    "Agrobanco individual loan",
    "Associative group loan",
    "Value-chain pre-finance",
    "Long-term renovation loan",
]
FUNDS = [
    "G_PUB public guarantee",
    "G_CLIM_FL climate first loss",
    "G_MUTUAL mutual fund",
    "G_EMERG disaster guarantee",
]
SOURCES = [
    ("Fondo AgroPerú (Agrobanco)", "public"),
    ("FIFPPA inclusion fund", "public"),
    ("Public guarantee capital (COFIDE)", "public"),
    ("Public disaster capital", "public"),
    ("Agroideas TA grants", "public"),
    ("Microfinance lenders (CMAC, CRAC)", "private"),
    ("Commercial banks", "private"),
    ("Social lenders (CSAF-type)", "private"),
    ("Exporters and offtakers", "private"),
    ("Private senior notes", "private"),
    ("Joint Declaration of Intent", "climate"),
    ("GCF Amazon Bioeconomy Fund", "climate"),
    ("FIP / GEF residual", "climate"),
]


# --- the synthetic context -------------------------------------------------------------------
def _risk(losses: np.ndarray, p: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Expected loss, VaR and CVaR (Rockafellar–Uryasev) under scenario probabilities."""
    order = np.argsort(losses)
    cdf = np.cumsum(p[order])
    var = float(losses[order][np.searchsorted(cdf, alpha - 1e-12)])
    cvar = var + float(p @ np.maximum(losses - var, 0.0)) / (1 - alpha)
    return float(p @ losses), var, cvar


def make_context(rng: np.random.Generator, label: str = "") -> ReportContext:
    """A realistic report context; ``label`` is appended to every user-visible name."""
    weights = rng.gamma(2.0, size=N_SCENARIOS)
    p = weights / weights.sum()  # importance-sampling-like: not uniform
    factor = rng.standard_normal(N_SCENARIOS)
    sources = [(name + label, kind) for name, kind in SOURCES]
    instruments = PRODUCTS + FUNDS
    amounts = rng.uniform(5e6, 90e6, (len(sources), len(instruments)))
    amounts *= rng.uniform(size=amounts.shape) < 0.45
    stack = pd.DataFrame(amounts, index=[s for s, _ in sources], columns=instruments)

    seg_rows = []
    for i in range(27):
        gap = rng.uniform(20e6, 160e6)
        seg_rows.append(
            {
                "region": REGIONS[i % len(REGIONS)] + (label if i == 0 else ""),
                "value_chain": CHAINS[i % len(CHAINS)],
                "gap_usd": gap,
                "credit_usd": gap * rng.uniform(0.1, 0.8),
                "deforestation_pressure": rng.uniform(0.1, 0.95),
            }
        )
    segments = pd.DataFrame(seg_rows)

    funders = []
    for name, kind in sources[5:10]:
        scale = rng.uniform(2e5, 2e6)
        losses = scale * np.exp(0.8 * factor + 0.3 * rng.standard_normal(N_SCENARIOS))
        el, var, cvar = _risk(losses, p, 0.99)
        euler = pd.Series(
            rng.dirichlet(np.ones(16)) * cvar,
            index=[f"{REGIONS[k % 10]} / {CHAINS[k % 7]}" for k in range(16)],
        )
        funders.append(
            FunderRisk(
                name=name,
                kind=kind,
                committed_usd=float(stack.loc[name].sum()) + 1e6,
                alpha=0.99,
                losses_usd=losses,
                probabilities=p,
                el=RiskEstimate(el, el * 0.01, el * 1.02, el * 0.012),
                var=RiskEstimate(var, var * 0.03, var * 1.01, var * 0.035),
                cvar=RiskEstimate(cvar, cvar * 0.04, cvar * 1.03, cvar * 0.05),
                el_limit_usd=el * 1.5,
                cvar_limit_usd=cvar * (0.97 if name.startswith("Comm") else 1.1),
                euler_usd=euler,
                euler_by="segment",
            )
        )
    funds = [
        GuaranteeFundRisk(
            name=name + label,
            capital_usd=cap,
            guaranteed_usd=cap * lev,
            leverage_cap=cap_lev,
            max_depletion_probability=0.05,
            claims_usd=np.maximum(cap * 0.3 * np.exp(0.9 * factor), 0.0),
            probabilities=p,
            depletion_probability_oos=0.0123,
        )
        for name, cap, lev, cap_lev in zip(
            FUNDS,
            (18e6, 40e6, 10e6, 30e6),
            (4.5, 9.0, 2.0, 1.5),
            (5.0, 10.0, 3.0, 4.0),
            strict=True,
        )
    ]
    x = np.linspace(20e6, 60e6, 9)
    gaps = 1.45e9 - 4.0 * x
    reasons = tuple("solver time limit" if i == 2 else "" for i in range(9))
    gaps[2] = np.nan
    return ReportContext(
        title="PPC blended finance structure" + label,
        case_name="Peruvian Amazon PPC — default case" + label,
        subtitle="Investment committee pack",
        summary=ExecutiveSummary(
            unmet_need_usd=2_380_000_000.0,
            gap_closed_usd=1_023_400_000.0,
            money_by_kind_usd={"public": 3.03e8, "private": 1.2e9, "climate": 1.01e8},
            private_per_concessional=3.1234,
            binding_limits=(
                f"The 99% CVaR limit of Private senior notes{label} binds.",
                "The leverage cap of the climate first-loss fund binds.",
            ),
            out_of_sample_breaches=(),
            out_of_sample_scenarios=100_000,
            warnings=("HiGHS returned optimal_inaccurate at stage 2; Clarabel was used.",),
        ),
        capital_stack=CapitalStack(stack, guarantee_funds=tuple(FUNDS)),
        gap_closure=GapClosure(segments),
        funder_risks=tuple(funders),
        guarantee_funds=tuple(funds),
        frontier=Frontier("Private senior notes CVaR limit (US$ m)", x, gaps, reasons),
        sensitivity=Sensitivity(
            labels=(
                "PD multiplier",
                "LGD mean",
                "Copula correlation",
                "Private amount",
                "Guarantee uptake",
                "Climate money" + label,
            ),
            low_delta_usd=rng.normal(0, 40e6, 6),
            high_delta_usd=rng.normal(0, 40e6, 6),
            base_gap_usd=1.3566e9,
            low_settings=("× 0.8", "− 10 pts", "× 0.5", "− 25%", "10%", "− 50%"),
            high_settings=("× 1.2", "+ 10 pts", "× 1.5", "+ 25%", "60%", "+ 50%"),
        ),
        shadow_prices=(
            ShadowPrice(
                "CVaR limit, Private senior notes" + label, "One more US$ 1 m of CVaR limit", 3.21e6
            ),
            ShadowPrice(
                "Capital cap, climate first-loss fund",
                "One more US$ 1 m of climate first-loss capital",
                8.7e6,
            ),
        ),
        stress_tests=tuple(
            StressResult(
                name + label,
                desc,
                rng.uniform(1.3e9, 1.8e9),
                {f.name: bool(rng.uniform() > 0.2) for f in funders},
            )
            for name, desc in (
                ("roya-2013", "Coffee-rust replay: coffee PD ×2.5, prices −30%"),
                ("El Niño (strong)", "Flood and drought year across the selva"),
                ("Guarantee non-uptake", "Lenders use 10% of guarantee capacity"),
                ("Governance failure", "State lender PD ×2"),
                ("Concessional shortfall", "Public and climate money −40%"),
            )
        ),
        assumptions=tuple(
            Assumption(
                f"products.IND_MFI.field_{i}",
                [0.36, 2500, "yes", 1.5e8][i % 4],
                "[A]" if i % 3 else "[S]",
                f"SBS via Ginocchio 2020, table {i}{label}",
            )
            for i in range(30)
        ),
        method_notes=(
            "Monte Carlo: Gaussian factor copula with discrete shock events" + label + ".",
            "CVaR by Rockafellar–Uryasev with the scenario probabilities as weights.",
        ),
        reproducibility=Reproducibility(
            case_file="inputs/peru_amazon.yaml" + label,
            case_sha256="9f2c" * 16,
            seed=7,
            n_scenarios=N_SCENARIOS,
            scenario_method="importance sampling",
            solver="HiGHS 1.7.2",
            package_versions={"ppc-finance": "0.1.0", "cvxpy": "1.5.3", "numpy": "2.1"},
            generated_at=datetime(2025, 11, 24, 1, 45, tzinfo=UTC),
            solver_fallbacks=("HiGHS → Clarabel (stage 2)",),
        ),
    )


@pytest.fixture(scope="module")
def context() -> ReportContext:
    return make_context(np.random.default_rng(20251124))


@pytest.fixture(scope="module")
def evil_context() -> ReportContext:
    return make_context(np.random.default_rng(7), label=f" {PAYLOAD} {QUOTES}")


@pytest.fixture(scope="module")
def html(context) -> str:
    return reports.render_html(context)


@pytest.fixture(scope="module")
def evil_html(evil_context) -> str:
    return reports.render_html(evil_context)


@pytest.fixture(scope="module")
def pdf_path(html, tmp_path_factory) -> Path:
    return reports.write_pdf(html, tmp_path_factory.mktemp("pdf") / "report.pdf")


def _text(html: str) -> str:
    """Visible text of the HTML, tags dropped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- charts ----------------------------------------------------------------------------------
def _chart_calls(ctx: ReportContext) -> dict[str, object]:
    f, g = ctx.funder_risks[0], ctx.guarantee_funds[0]
    fr, se = ctx.frontier, ctx.sensitivity
    return {
        "capital_stack": lambda: reports.capital_stack_svg(ctx.capital_stack.amounts_usd),
        "gap_region": lambda: reports.gap_closure_svg(ctx.gap_closure.segments, by="region"),
        "gap_chain": lambda: reports.gap_closure_svg(ctx.gap_closure.segments, by="value_chain"),
        "loss": lambda: reports.loss_distribution_svg(
            f.losses_usd,
            f.probabilities,
            f.el.in_sample_usd,
            f.var.in_sample_usd,
            f.cvar.in_sample_usd,
            f.cvar_limit_usd,
            f.name,
            alpha=0.99,
        ),
        "claims": lambda: reports.claims_distribution_svg(
            g.claims_usd, g.probabilities, g.capital_usd, g.name
        ),
        "frontier": lambda: reports.frontier_svg(
            fr.x / 1e6, fr.gap_usd, fr.x_label, fr.failed_mask
        ),
        "tornado": lambda: reports.tornado_svg(se.labels, se.low_delta_usd, se.high_delta_usd),
        "euler": lambda: reports.euler_svg(f.euler_usd.to_frame("contribution_usd")),
    }


CHARTS = [
    "capital_stack",
    "gap_region",
    "gap_chain",
    "loss",
    "claims",
    "frontier",
    "tornado",
    "euler",
]


@pytest.mark.parametrize("name", CHARTS)
def test_chart_is_valid_deterministic_svg(context, name):
    call = _chart_calls(context)[name]
    first, second = call(), call()
    assert isinstance(first, str)
    root = ET.fromstring(first.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert first == second, "same input must give the same bytes"
    assert "<dc:date>" not in first  # no timestamp in the metadata
    width_pt = float(root.get("width").removesuffix("pt"))
    assert width_pt <= 180 / 25.4 * 72, "chart must fit A4 width inside the margins"


def _bars(svg: str) -> int:
    return len(re.findall(r'id="[^"]*hist-bar-\d+"', svg))


def test_histogram_honours_scenario_probabilities():
    losses = np.linspace(0.0, 50e6, 200)
    on_one = np.zeros(200)
    on_one[150] = 1.0
    svg = reports.loss_distribution_svg(losses, on_one, 37.7e6, 37.7e6, 37.7e6, 40e6, "one")
    assert _bars(svg) == 1
    uniform = reports.loss_distribution_svg(
        losses, np.full(200, 1 / 200), 25e6, 49e6, 50e6, None, "uniform"
    )
    assert _bars(uniform) == 40
    mass, edges = weighted_histogram(losses / 1e6, on_one)
    assert mass.sum() == pytest.approx(1.0)
    assert edges[np.argmax(mass)] <= losses[150] / 1e6 <= edges[np.argmax(mass) + 1]


def test_degenerate_all_zero_losses_give_one_bar():
    zeros = np.zeros(500)
    svg = reports.loss_distribution_svg(zeros, np.full(500, 1 / 500), 0.0, 0.0, 0.0, 1e6, "zero")
    ET.fromstring(svg.encode())
    assert _bars(svg) == 1
    assert "Every scenario gives US$ 0.0 m" in svg


def test_probabilities_are_validated():
    with pytest.raises(ValueError, match="sum to 1"):
        reports.loss_distribution_svg(np.ones(3), [0.5, 0.5, 0.5], 1, 1, 1, None, "bad")
    with pytest.raises(ValueError, match="shape"):
        reports.claims_distribution_svg(np.ones(3), [0.5, 0.5], 1.0, "bad")


def test_chart_text_from_user_strings_is_escaped():
    title = "<script>alert(1)</script> \"double\" & 'single'"
    svg = reports.claims_distribution_svg(np.arange(10.0) * 1e6, np.full(10, 0.1), 5e6, title)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "<script" not in svg
    texts = [el.text for el in ET.fromstring(svg.encode()).iter("{http://www.w3.org/2000/svg}text")]
    assert title in texts, "the escaped title must read back as the original text"


def test_frontier_keeps_failed_points():
    svg = reports.frontier_svg([1, 2, 3], [5e8, np.nan, 4e8], "Limit (US$ m)", [False, True, False])
    assert "failed-points" in svg and "Failed point (no solution)" in svg


@pytest.mark.parametrize(
    ("sweep", "label", "x_label", "cells"),
    [
        ("cvar_scale", "scale on every funder's CVaR limit",
         "scale on every funder's CVaR limit (x)", ["0.50x", "2.00x"]),
        ("amount:climate", "multiple of all climate money",
         "multiple of all climate money (x)", ["0.50x", "2.00x"]),
        ("depletion:GP", "allowed depletion probability of GP",
         "allowed depletion probability of GP (%)", ["2.50%", "10.00%"]),
        ("mobilization", "private lending required per concessional US$",
         "private lending required per concessional US$", ["0.50", "2.00"]),
        ("deforestation_priority", "deforestation priority",
         "deforestation priority (weight)", ["0.50", "2.00"]),
    ],
)  # fmt: skip
def test_the_frontier_axis_says_what_the_swept_value_is(sweep, label, x_label, cells):
    # regression: every sweep was labelled "(x)" and shown as a multiplier, so a 5% depletion
    # probability read "0.05x"
    from types import SimpleNamespace

    from optimizer.analysis.frontier import Frontier as SweptFrontier
    from reports.analysis_tables import frontier_table
    from reports.formats import format_value
    from reports.from_run import _frontier

    x = [0.5, 2.0] if sweep != "depletion:GP" else [0.025, 0.10]
    table = pd.DataFrame(
        {"value": x, "weighted_gap_usd": [3e8, 2e8], "status": ["optimal"] * 2, "reason": ""}
    )
    swept = SweptFrontier(sweep=sweep, label=label, table=table, compiled_once=True)
    fr = _frontier(SimpleNamespace(frontier=swept))
    assert fr.x_label == x_label
    shown = frontier_table(fr)
    assert [format_value(v, fr.x_format) for v in shown.frame[x_label]] == cells


def test_an_inaccurate_frontier_point_keeps_its_gap_and_a_failed_one_its_reason():
    from types import SimpleNamespace

    from optimizer.analysis.frontier import Frontier as SweptFrontier
    from reports.from_run import _frontier

    table = pd.DataFrame(
        {
            "value": [0.5, 1.0, 1.5],
            "weighted_gap_usd": [3e8, 2.5e8, np.nan],
            "status": ["optimal", "optimal_inaccurate", "infeasible"],
            "reason": ["", "", "budget below zero"],
        }
    )
    swept = SweptFrontier(sweep="cvar_scale", label="scale", table=table, compiled_once=True)
    fr = _frontier(SimpleNamespace(frontier=swept))
    np.testing.assert_array_equal(fr.gap_usd, [3e8, 2.5e8, np.nan])
    assert fr.failure_reasons == ("", "", "budget below zero")


def test_tornado_marks_points_without_a_solution():
    svg = reports.tornado_svg(["PD", "LGD"], [-2e6, np.nan], [5e6, 1e6])
    ET.fromstring(svg.encode())
    assert svg.count("no solution") == 1 and "+5.0" in svg and "−2.0" in svg
    with pytest.raises(ValueError, match="finite"):
        reports.tornado_svg(["PD"], [np.inf], [1e6])


def test_sensitivity_notes_and_description_reach_the_page(context):
    se = dataclasses.replace(
        context.sensitivity,
        low_delta_usd=np.r_[np.nan, context.sensitivity.low_delta_usd[1:]],
        notes=("low: invalid (PD above 1)",) + ("",) * (len(context.sensitivity.labels) - 1),
        description="Each input ±20% in turn, on 500 scenarios of seed 7.",
    )
    out = reports.render_html(dataclasses.replace(context, sensitivity=se))
    text = _text(out)
    assert "Each input ±20% in turn, on 500 scenarios of seed 7." in text
    assert "low: invalid (PD above 1)" in text and "no solution" in out
    table = reports.report_tables(dataclasses.replace(context, sensitivity=se))["Sensitivity"]
    assert table.frame["Note"].iloc[0] == "low: invalid (PD above 1)"


def test_charts_do_not_touch_pyplot():
    code = (
        "import sys, numpy as np, reports; reports.tornado_svg(['a'], [1e6], [-1e6]); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- HTML ------------------------------------------------------------------------------------
def test_every_section_in_order(html):
    found = re.findall(r'<section id="([a-z-]+)"', html)
    assert found == [sid for sid, _ in SECTIONS]
    assert html.count("<svg") == 3 + 2 * 5 + 4 + 2  # stack, 2 gaps, loss+euler, claims, 2


def test_key_figures_and_numbers_are_formatted(html):
    text = _text(html)
    for expected in (
        "Unmet credit need US$ 2,380.0 m",
        "Gap closed US$ 1,023.4 m 43.0% of the need",
        "Remaining gap US$ 1,356.6 m",
        "Money committed US$ 1,604.0 m Public US$ 303.0 m; Private US$ 1,200.0 m; "
        "Climate US$ 101.0 m",
        "US$ 3.12 of private lending per US$ 1",
        "every limit holds on 100,000 fresh scenarios",
        "The 99% CVaR limit of Private senior notes binds.",
        # a dual is weighted gap (w = 1 + priority x pressure), and says it is the LP dual
        "One more US$ 1 m of climate first-loss capital would close US$ 8.7 m of the weighted "
        "gap (LP dual).",
        "Generated 2025-11-24 01:45:00 UTC",
    ):
        assert expected in text
    assert "4.50x" in text and "1.23%" in text  # guarantee fund leverage and depletion
    assert "failed: solver time limit" in text
    assert re.search(r'<td class="num">[\d,]+\.\d</td>', html), "US$ m cells have one decimal"
    assert '<td class="text breached">breached</td>' in html  # Commercial banks over its limit


def test_user_strings_are_escaped(evil_html):
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in evil_html
    assert "&#34;quotes&#34; &amp; &#39;apostrophes&#39;" in evil_html
    assert "<script" not in evil_html.lower()
    assert 'alert("x")</script>' not in evil_html
    # and inside the charts, where matplotlib escapes the same names
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in evil_html


def test_absent_sections_are_omitted(context):
    lean = dataclasses.replace(
        context,
        frontier=None,
        sensitivity=None,
        stress_tests=(),
        shadow_prices=(),
        funder_risks=(),
        guarantee_funds=(),
    )
    out = reports.render_html(lean)
    found = re.findall(r'<section id="([a-z-]+)"', out)
    assert found == [
        "summary",
        "capital-stack",
        "gap-closure",
        "assumptions",
        "method-notes",
        "reproducibility",
    ]
    for sid, heading in SECTIONS:
        if sid not in found:
            assert f'href="#{sid}"' not in out, f"{sid} still in the table of contents"
            assert not re.search(rf"<h2>\d+\. {heading}</h2>", out)
    assert "<svg" in out and out.count("<svg") == 3
    assert re.search(r"<h2>\d+\. Assumptions register</h2>", out)


def test_html_is_self_contained(html):
    assert "<link" not in html and "@import" not in html and " src=" not in html
    assert not re.search(r"url\((?!#)", html), "only in-document url(#id) references"
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids are unique across the inlined charts"


def test_table_formats_are_validated():
    with pytest.raises(ValueError, match="unknown format 'dollars'"):
        Table(pd.DataFrame({"a": [1.0]}), {"a": "dollars"})
    with pytest.raises(ValueError, match="lacks"):
        Table(pd.DataFrame({"a": [1.0]}), {"b": "usd"})


# --- workbook --------------------------------------------------------------------------------
def test_workbook_one_sheet_per_table_with_numbers(context, tmp_path):
    tables = reports.report_tables(context)
    raw = pd.DataFrame(
        {
            "segment": ["SM-COF", '=HYPERLINK("http://x")'],
            "gap_usd": [1.5e8, np.nan],
            "closed_share": [0.4, 0.25],
        }
    )
    path = reports.write_workbook(
        {**tables, "Raw: segments/[test]": raw},
        tmp_path / "r.xlsx",
        notes=["US$ throughout", "Case: Peruvian Amazon"],
    )
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Notes", *tables, "Raw_ segments__test_"]
    for name, table in tables.items():
        ws = wb[name]
        assert [c.value for c in ws[1]] == table.columns
        assert ws[1][0].font.bold and ws.freeze_panes == "A2"
        for i, row in enumerate(table.frame.itertuples(index=False, name=None), start=2):
            for j, expected in enumerate(row):
                cell = ws.cell(row=i, column=j + 1)
                if isinstance(expected, float | np.floating) and np.isnan(expected):
                    assert cell.value is None
                elif isinstance(expected, int | float | np.number):
                    assert cell.data_type == "n" and cell.value == pytest.approx(float(expected))
                else:
                    assert cell.value == expected
    stack = wb["Capital stack"]
    assert stack["B2"].number_format == '"US$" #,##0.0,," m"'
    assert wb["Gap by region"]["E2"].number_format == "0.0%"
    ws = wb["Raw_ segments__test_"]
    assert ws["A3"].value.startswith("=HYPERLINK") and ws["A3"].data_type == "s"
    assert ws["B2"].value == 1.5e8 and ws["B2"].number_format == '"US$" #,##0'
    assert ws["C2"].number_format == "0.0%"
    assert ws.column_dimensions["A"].width >= len('=HYPERLINK("http://x")')


def test_sheet_names_are_excel_safe_and_unique():
    names = sheet_names(["a/b", "A/B", "x" * 40, "x" * 40, "History", "'quoted'", ""])
    assert names == ["a_b", "A_B (2)", "x" * 31, "x" * 27 + " (2)", "History_", "quoted", "Sheet"]
    assert all(len(n) <= 31 and not re.search(r"[\[\]:*?/\\]", n) for n in names)


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "r.xlsx"
    path.write_bytes(b"previous")

    def boom(self, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(openpyxl.Workbook, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        reports.write_workbook({"t": pd.DataFrame({"a": [1]})}, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.xlsx"]


# --- PDF -------------------------------------------------------------------------------------
needs_poppler = pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdftoppm")),
    reason="poppler-utils (pdftotext, pdftoppm) not installed",
)


@needs_poppler
def test_pdf_holds_the_key_figures(pdf_path, html):
    assert pdf_path.read_bytes().startswith(b"%PDF")
    text = " ".join(
        subprocess.run(
            ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    for figure in (
        "US$ 2,380.0 m",
        "US$ 1,023.4 m",
        "43.0%",
        "US$ 3.12",
        "every limit holds",
        "Page 1 of",
    ):
        assert figure in text
        assert figure in _text(html) or figure.startswith("Page")


@needs_poppler
def test_pdf_pages_are_a4_and_nothing_runs_off_the_right_edge(pdf_path, tmp_path):
    from PIL import Image

    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", str(pdf_path), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 5
    for page in pages:
        img = np.asarray(Image.open(page).convert("L"))
        assert img.shape[1] == pytest.approx(210 / 25.4 * 50, abs=2)  # A4 width at 50 dpi
        strip = img[:, -max(1, round(img.shape[1] * 0.015)) :]
        assert strip.min() >= 250, f"{page.name}: content in the rightmost 1.5% of the page"
    bbox = subprocess.run(
        ["pdftotext", "-bbox", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout
    page_width = float(re.search(r'<page width="([\d.]+)"', bbox).group(1))
    right_limit = page_width - (15 / 25.4 * 72) / 2  # half the 15 mm right margin
    x_max = [float(v) for v in re.findall(r'xMax="([\d.]+)"', bbox)]
    assert x_max and max(x_max) <= right_limit


def test_pdf_rendering_fetches_nothing(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the PDF renderer tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    page = (
        '<html><body><p>offline</p><img src="http://example.com/logo.png">'
        '<link rel="stylesheet" href="https://example.com/x.css"></body></html>'
    )
    out = reports.write_pdf(page, tmp_path / "offline.pdf")
    assert out.read_bytes().startswith(b"%PDF")


# --- headless Chromium -----------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
@pytest.mark.parametrize("which", ["html", "evil_html"])
def test_chromium_opens_the_report_without_console_errors(which, request, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(request.getfixturevalue(which), encoding="utf-8")
    shot = tmp_path / "report.png"
    run = _chromium(
        [f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()], tmp_path / "profile1"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path / "profile2")
    assert dom.returncode == 0
    assert "Executive summary" in dom.stdout
    assert "<script" not in dom.stdout.lower(), "no user string became a script element"
    assert not [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
