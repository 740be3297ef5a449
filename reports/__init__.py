"""ppcfin's telling: HTML and PDF reports, Excel workbooks and charts built from result objects."""

from reports.analysis_sections import Frontier, Sensitivity, ShadowPrice, StressResult
from reports.charts import (
    capital_stack_svg,
    claims_distribution_svg,
    euler_svg,
    frontier_svg,
    gap_closure_svg,
    loss_distribution_svg,
    tornado_svg,
)
from reports.context import (
    Assumption,
    CapitalStack,
    ExecutiveSummary,
    GapClosure,
    ReportContext,
    Reproducibility,
)
from reports.excel import write_workbook
from reports.formats import ColumnFormat, Table
from reports.html import render_html
from reports.pdf import write_pdf
from reports.risk_sections import FunderRisk, GuaranteeFundRisk, RiskEstimate
from reports.tables import report_tables

__all__ = [
    "Assumption",
    "CapitalStack",
    "ColumnFormat",
    "ExecutiveSummary",
    "Frontier",
    "FunderRisk",
    "GapClosure",
    "GuaranteeFundRisk",
    "ReportContext",
    "Reproducibility",
    "RiskEstimate",
    "Sensitivity",
    "ShadowPrice",
    "StressResult",
    "Table",
    "capital_stack_svg",
    "claims_distribution_svg",
    "euler_svg",
    "frontier_svg",
    "gap_closure_svg",
    "loss_distribution_svg",
    "render_html",
    "report_tables",
    "tornado_svg",
    "write_pdf",
    "write_workbook",
]
