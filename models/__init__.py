"""ppcfin's world: the case schema and loader, the credit-loss Monte Carlo, scenario sets.

This layer never imports cvxpy or the reports.
"""

from models.crosscheck import case_warnings
from models.errors import CaseError, CaseProblem
from models.loader import DEFAULT_CASE, load_case
from models.recipe import Recipe
from models.scenarios import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, RUN_REPLICATIONS, ScenarioSet
from models.schema import (
    Case,
    FinanceSource,
    GuaranteeFund,
    GuaranteeStructure,
    LoanProduct,
    Policy,
    Segment,
    SourceKind,
)
from models.schema_risk import RiskModel, ShockEvent
from models.simulate import Method, Tilt, simulate
from models.text import printable

__all__ = [
    "DEFAULT_CASE",
    "DEFAULT_SAMPLING",
    "DEFAULT_SCENARIOS",
    "RUN_REPLICATIONS",
    "Case",
    "CaseError",
    "CaseProblem",
    "FinanceSource",
    "GuaranteeFund",
    "GuaranteeStructure",
    "LoanProduct",
    "Method",
    "Policy",
    "Recipe",
    "RiskModel",
    "ScenarioSet",
    "Segment",
    "ShockEvent",
    "SourceKind",
    "Tilt",
    "case_warnings",
    "load_case",
    "printable",
    "simulate",
]
