"""The report's risk tables: each funder's risk figures against its limits, the guarantee funds.

Built from the risk sections (:class:`~reports.risk_sections.FunderRisk`,
:class:`~reports.risk_sections.GuaranteeFundRisk`); a limit holds when every evaluated estimate,
in and out of sample, is within it. HTML and Excel show the same tables
(:func:`reports.tables.report_tables`).
"""

from __future__ import annotations

import pandas as pd

from reports.formats import ColumnFormat as F
from reports.formats import Table
from reports.risk_sections import FunderRisk, GuaranteeFundRisk, RiskEstimate

__all__ = ["funder_frame", "funder_table", "funders_table", "funds_table"]

# A risk figure within this of its limit counts as holding: a binding CVaR limit sits on it.
_LIMIT_TOLERANCE_USD = 1.0


def _status(values: list[float | None], limit: float | None) -> str:
    if limit is None:
        return "no limit"
    checked = [v for v in values if v is not None]
    held = all(v <= limit + _LIMIT_TOLERANCE_USD for v in checked)
    return "holds" if held else "breached"


def funder_frame(f: FunderRisk) -> pd.DataFrame:
    """One funder's risk figures against its limits, unformatted.

    Returns
    -------
    DataFrame of shape (3, 7), or (5, 7) for a funder with losses on fund capital
        Rows expected loss, VaR and CVaR at ``f.alpha``; after the expected loss, for a capital
        provider, its parts on lending and on fund capital (in sample, no limit). Columns ``Measure``; the in- and
        out-of-sample estimates and their Monte Carlo standard errors, US$ (the headers' "US$ m"
        is how they are shown; NaN where not evaluated); ``Limit (US$ m)``, US$ (NaN for VaR and
        where there is none); and ``Status``: "holds" when every evaluated estimate is at most
        US$ 1 above the limit, else "breached", or "no limit".
    """
    level = f"{f.alpha:.1%}".replace(".0%", "%")
    rows = []
    measures: list[tuple[str, RiskEstimate, float | None]] = [
        ("Expected loss", f.el, f.el_limit_usd)
    ]
    if f.el_on_capital_usd > 0:
        lending = f.el.in_sample_usd - f.el_on_capital_usd
        measures += [
            ("  of it on lending", RiskEstimate(lending, None, None, None), None),
            ("  of it on fund capital", RiskEstimate(f.el_on_capital_usd, None, None, None), None),
        ]
    measures += [(f"VaR {level}", f.var, None), (f"CVaR {level}", f.cvar, f.cvar_limit_usd)]
    for measure, est, limit in measures:
        rows.append(
            {
                "Measure": measure,
                "In sample (US$ m)": est.in_sample_usd,
                "± s.e. in": est.in_sample_se_usd,
                "Out of sample (US$ m)": est.out_of_sample_usd,
                "± s.e. out": est.out_of_sample_se_usd,
                "Limit (US$ m)": limit,
                "Status": (
                    ""
                    if measure.startswith("  of it")
                    else _status([est.in_sample_usd, est.out_of_sample_usd], limit)
                ),
            }
        )
    return pd.DataFrame(rows).astype({c: float for c in list(rows[0])[1:6]})


_RISK_FORMATS = {
    "In sample (US$ m)": F.USD_M2,
    "± s.e. in": F.USD_M2,
    "Out of sample (US$ m)": F.USD_M2,
    "± s.e. out": F.USD_M2,
    "Limit (US$ m)": F.USD_M2,
}


def funder_table(f: FunderRisk) -> Table:
    """One funder's risk against its limits (:func:`funder_frame`), formatted, with a note."""
    return Table(
        funder_frame(f),
        _RISK_FORMATS,
        caption=f"{f.name}: risk against limits",
        note="± s.e.: Monte Carlo standard error. A limit holds if it holds in and out of sample.",
    )


def funders_table(funders: tuple[FunderRisk, ...]) -> Table:
    """Every funder's risk figures in one table, ``Funder`` and ``Kind`` columns first."""
    parts = [funder_frame(f).assign(Funder=f.name, Kind=f.kind) for f in funders]
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[["Funder", "Kind", *frame.columns[:-2]]]
    return Table(frame, _RISK_FORMATS, caption="Risk per funder", sheet="Risk per funder")


def funds_table(funds: tuple[GuaranteeFundRisk, ...]) -> Table:
    """Capital, guaranteed volume, leverage and depletion probability of each guarantee fund.

    ``Status`` is "holds" when the probability of depletion, in sample and (if evaluated) out of
    sample, is at most the fund's maximum and its leverage at most its cap, else "breached". Money
    is US$ shown in US$ millions; probabilities are fractions.
    """
    rows = []
    for g in funds:
        probs = [g.depletion_probability, g.depletion_probability_oos]
        held = all(p <= g.max_depletion_probability + 1e-12 for p in probs if p is not None)
        lev_ok = g.leverage_used <= g.leverage_cap + 1e-9 if g.capital_usd > 0 else True
        rows.append(
            {
                "Fund": g.name,
                "Capital (US$ m)": g.capital_usd,
                "Guaranteed (US$ m)": g.guaranteed_usd,
                "Leverage used": g.leverage_used,
                "Leverage cap": g.leverage_cap,
                "P(depletion) in sample": probs[0],
                "P(depletion) out of sample": probs[1],
                "Max P(depletion)": g.max_depletion_probability,
                "Status": "holds" if held and lev_ok else "breached",
            }
        )
    frame = pd.DataFrame(rows).astype({"P(depletion) out of sample": float})
    formats = {
        "Capital (US$ m)": F.USD_M,
        "Guaranteed (US$ m)": F.USD_M,
        "Leverage used": F.RATIO,
        "Leverage cap": F.RATIO,
        "P(depletion) in sample": F.PCT2,
        "P(depletion) out of sample": F.PCT2,
        "Max P(depletion)": F.PCT2,
    }
    return Table(
        frame,
        formats,
        caption="Guarantee funds: capital, use and depletion risk",
        note="P(depletion) = probability that a year's claims exceed the fund's capital.",
        sheet="Guarantee funds",
    )
