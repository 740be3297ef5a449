"""Shared fixtures of the case-loading tests.

``minimal_case_dict`` is the smallest valid case, as plain Python data: tests break one field of
it, dump it with ``yaml.safe_dump`` through ``write_case`` and check the :class:`CaseError`.
``inputs_copy`` is a scratch copy of the shipped ``inputs/`` tree (YAML, CSV and stress overlays)
for edits of the default case.
"""

from __future__ import annotations

import copy
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# A test run started as a background job (`pytest &` in a script, nohup) inherits SIGINT
# ignored, and ppcfin rightly leaves an ignored signal ignored: the Ctrl-C tests (here and in
# the processes they start, which inherit it across exec) need SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "inputs"

MINIMAL_CASE: dict[str, Any] = {
    "name": "Minimal test case",
    "regions": [{"id": "R1", "name": "Region one"}, {"id": "R2", "name": "Region two"}],
    "value_chains": [{"id": "coffee", "name": "Coffee"}, {"id": "cocoa", "name": "Cocoa"}],
    "segments": [
        {
            "id": "R1-COF",
            "region": "R1",
            "value_chain": "coffee",
            "households": 1000,
            "need_usd": 5_000_000,
            "supply_usd": 500_000,
            "deforestation_pressure": 0.5,
        },
        {
            "id": "R2-CAC",
            "region": "R2",
            "value_chain": "cocoa",
            "households": 2000,
            "need_usd": 8_000_000,
            "supply_usd": 800_000,
            "deforestation_pressure": 0.7,
        },
    ],
    "products": [
        {
            "id": "IND",
            "name": "Individual loan",
            "rate": 0.30,
            "tenor_months": 12,
            "avg_ticket_usd": 2500,
            "base_pd": 0.07,
            "lgd_mean": 0.6,
            "lgd_sd": 0.2,
            "transaction_cost_rate": 0.10,
        },
        {
            "id": "VCF",
            "name": "Value-chain finance",
            "rate": 0.12,
            "tenor_months": 6,
            "avg_ticket_usd": 4000,
            "base_pd": 0.025,
            "lgd_mean": 0.35,
            "transaction_cost_rate": 0.03,
            "eligible_chains": ["coffee", "cocoa"],
        },
    ],
    "funds": [
        {
            "id": "G1",
            "name": "Guarantee fund",
            "coverage_ratio": 0.7,
            "leverage_cap": 5.0,
            "fee_rate": 0.015,
            "max_depletion_probability": 0.05,
            "eligible_products": ["IND", "VCF"],
        },
    ],
    "sources": [
        {
            "id": "PUB",
            "name": "Public money",
            "kind": "public",
            "amount_usd": 10_000_000,
            "cost_of_funds_rate": 0.05,
            "products": ["IND"],
            "funds": ["G1"],
        },
        {
            "id": "PRIV",
            "name": "Private lender",
            "kind": "private",
            "amount_usd": 20_000_000,
            "cost_of_funds_rate": 0.07,
            "products": ["IND", "VCF"],
            "cvar_alpha": 0.99,
            "cvar_limit_share": 0.10,
        },
        {
            "id": "CLIM",
            "name": "Climate fund",
            "kind": "climate",
            "amount_usd": 5_000_000,
            "cost_of_funds_rate": 0.0,
            "funds": ["G1"],
            "technical_assistance": True,
        },
    ],
    "risk_model": {
        "copula": {"rho_macro": 0.04, "rho_chain": 0.08, "rho_region": 0.04},
        "price_factors": {"coffee": {"volatility": 0.32}},
        "chain_correlations": [{"chains": ["coffee", "cocoa"], "correlation": 0.25}],
        "events": [
            {
                "id": "rust",
                "name": "Coffee rust",
                "probability": 0.04,
                "pd_multiplier": 5.0,
                "chains": ["coffee"],
            }
        ],
    },
}
"""The smallest valid case: 2 regions, 2 chains, 2 segments, 2 products, 1 fund, 3 sources."""


def default_signals() -> None:
    """``preexec_fn`` for a ``ppcfin`` subprocess a test signals: SIGINT, SIGTERM and SIGHUP at
    their default disposition, whatever the runner's. A runner under ``nohup`` (SIGHUP ignored)
    or a background job of a non-interactive shell (SIGINT ignored) hands those on, and ppcfin
    rightly keeps an ignored signal ignored: the test would then wait for a signal that never
    lands."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def minimal_case_dict() -> dict[str, Any]:
    """A fresh deep copy of :data:`MINIMAL_CASE`, free to edit."""
    return copy.deepcopy(MINIMAL_CASE)


@pytest.fixture
def write_case(tmp_path: Path) -> Callable[..., Path]:
    """Write a case into ``tmp_path``: a dict (YAML-dumped), ``text=`` or raw ``data=`` bytes."""

    def write(
        case: Any = None,
        name: str = "case.yaml",
        *,
        text: str | None = None,
        data: bytes | None = None,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        elif text is not None:
            path.write_text(text, encoding="utf-8")
        else:
            path.write_text(
                yaml.safe_dump(case, sort_keys=False, allow_unicode=True), encoding="utf-8"
            )
        return path

    return write


@pytest.fixture
def inputs_copy(tmp_path: Path) -> Path:
    """A scratch copy of the shipped ``inputs/`` folder; returns the copy's folder."""
    dest = tmp_path / "inputs"
    shutil.copytree(INPUTS, dest)
    return dest
