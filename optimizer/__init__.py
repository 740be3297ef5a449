"""ppcfin's decision layer: the allocation problem, its solution and the command line.

``from optimizer import optimize`` gives the Python API; the names are imported on first use
so that ``import optimizer.door.cli`` (``ppcfin validate``) does not pay for importing cvxpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "optimize": "optimizer.solve",
    "SOLVERS": "optimizer.solve",
    "Allocation": "optimizer.result",
    "OptimizerError": "optimizer.errors",
    "InfeasibleCase": "optimizer.errors",
    "SolverFailure": "optimizer.errors",
    "ScenarioMismatch": "optimizer.errors",
    "Evaluation": "optimizer.analysis.evaluate",
    "Diagnosis": "optimizer.analysis.diagnose",
    "optimize_or_diagnose": "optimizer.analysis.diagnose",
    "sensitivity": "optimizer.analysis.sensitivity_analysis",
    "Sensitivity": "optimizer.analysis.sensitivity_analysis",
    "stress": "optimizer.analysis.stress_testing",
    "StressReport": "optimizer.analysis.stress_testing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        try:
            module = importlib.import_module(_EXPORTS[name])
        except AttributeError as exc:  # would otherwise read as "no such name" to the caller
            raise ImportError(f"importing {_EXPORTS[name]} failed: {exc}") from exc
        value = getattr(module, name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ppc-finance")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
