"""The tables of saved files, column by column: what result.json and run.json must hold.

Each table is a string of ``name:kind`` pairs read by :func:`optimizer.persist.columns_of`:
``id``, ``text``, ``int``, ``bool``, ``number`` (null is a missing value), ``value`` (the report
needs a number), ``amount`` (and not negative), ``level`` (in (0, 1)); a trailing ``?`` marks a
column that may be absent. The file models (:mod:`optimizer.saved`) and the checks against a
case (:mod:`optimizer.saved_case`) read them.
"""

from __future__ import annotations

from optimizer.persist import columns_of

_SOURCES = (
    "source:id kind:id concessional:bool amount_usd:value committed_usd:value "
    "lending_usd:value capital_usd:value ta_usd:value unused_usd:value "
    "expected_loss_usd:value expected_loss_se_usd:value expected_loss_lending_usd:value? "
    "expected_loss_capital_usd:value? el_rate:number el_limit_rate:number "
    "cvar_alpha:level var_usd:value {var_se}cvar_usd:value cvar_se_usd:value "
    "cvar_limit_usd:number cvar_headroom_usd:number"
)
_FUNDS = (
    "fund:id structure:id capital_usd:value capital_cap_usd:number guaranteed_usd:value "
    "leverage_used:number leverage_cap:number expected_claims_usd:number "
    "expected_claims_se_usd:number{o} claims_cvar_usd:number claims_cvar_se_usd:number{o} "
    "claims_cvar_headroom_usd:number{o} depletion_probability:number depletion_se:number "
    "max_depletion_probability:number expected_unpaid_usd:number?"
)
_GAPS = (
    "households:int need_usd:value supply_usd:value gap_usd:value credit_usd:value "
    "unmet_usd:value weighted_unmet_usd:value households_reached:number? share_closed:number"
)
_CHECKS = (
    "owner_kind:id owner:id what:id bound:id value:number limit:number excess:number unit:id "
    "std_error:number excess_in_se:number breached:bool significant:bool"
)
ALLOCATION_COLUMNS: dict[str, dict[str, str]] = {
    "allocation": columns_of(
        "source:id kind:id product:id segment:id region:id value_chain:id pd:value "
        "amount_usd:amount covered_usd:value expected_loss_usd:value"
    ),
    "guarantees": columns_of("source:id fund:id capital_usd:amount"),
    "segments": columns_of(
        "segment:id region:id value_chain:id households:int need_usd:value supply_usd:value "
        "gap_usd:value deforestation_pressure:value weight:value credit_usd:value "
        "unmet_usd:value weighted_unmet_usd:value households_reached:number? "
        "share_closed:number"
    ),
    "regions": columns_of("region:id " + _GAPS),
    "chains": columns_of("value_chain:id " + _GAPS),
    "sources": columns_of(_SOURCES.format(var_se="")),
    "funds": columns_of(_FUNDS.format(o="?")),  # an empty table has only FUND_COLUMNS
    "binding": columns_of(
        "family:id subject:id label:id relaxation:id slack_usd:value shadow_price:value "
        # re-solved marginal values (optimizer.analysis.marginal), absent when not computed
        "marginal_group:id? step_usd:value? step_rate:number? dual_gain_usd:value? "
        "resolved_gain_usd:number? resolved_loss_usd:number? resolved_gain_gap_usd:number? "
        "resolved_loss_gap_usd:number? dual_disagrees:bool? marginal_note:text?"
    ),
    "euler": columns_of(
        "source:id product:id segment:id contribution_usd:value share_of_cvar:number"
    ),
}
"""The tables of result.json (``value``: the report needs a number; ``amount``: and not
negative); ``allocation`` adds one ``covered_usd_<FUND>`` per fund."""
COVER_PREFIX = "covered_usd_"
EULER_FUND_PARTS = ("fund capital", "unpaid claims")
"""The Euler table's rows beyond lending cells: ``segment`` one of these, ``product`` the fund
(a funder's CVaR carried on the capital it put in a fund, and on claims a fund could not pay)."""
EVALUATION_COLUMNS: dict[str, dict[str, str]] = {
    "sources": columns_of(_SOURCES.format(var_se="var_se_usd:number ")),
    "funds": columns_of(_FUNDS.format(o="")),
    "chains": columns_of(
        "value_chain:id lending_usd:number expected_loss_usd:number el_rate:number"
    ),
    "checks": columns_of(_CHECKS),
    "breaches": columns_of(_CHECKS),
}
FRONTIER_SAVED_COLUMNS = columns_of(
    "value:number weighted_gap_usd:number gap_closed_usd:number gap_closed_share:number "
    "public_usd:number private_usd:number climate_usd:number binding:text status:id reason:text"
)
"""The frontier table in run.json: its ``seconds`` column is kept in timings.json."""
SENSITIVITY_SAVED_COLUMNS = columns_of(
    "input:id label:id direction:id factor:number setting:text weighted_gap_usd:number "
    "gap_closed_usd:number change_usd:number status:id reason:text"
)
REPLICATION_SAVED_COLUMNS = columns_of(
    "replication:int seed:int weighted_gap_closed_usd:number gap_closed_usd:number status:id "
    "reason:text"
)
UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "allocation": ("source", "product", "segment"),
    "guarantees": ("source", "fund"),
    "segments": ("segment",),
    "regions": ("region",),
    "chains": ("value_chain",),
    "sources": ("source",),
    "funds": ("fund",),
    "euler": ("source", "product", "segment"),
}
"""Keys the readers look rows up by (a repeated key would make a lookup ambiguous)."""


MARGIN_SAVED_COLUMNS = columns_of(
    "family:id owner_kind:id owner:id what:id bound:id value_usd:value limit_usd:value "
    "std_error_usd:value margin_usd:value margin_in_se:value upper_bound_usd:value "
    # null without a validation set; absent from files written before it existed
    "validation_value_usd:number? validation_std_error_usd:number? binding:bool holds:bool"
)
"""The margins table of result.json's ``confidence`` (:mod:`optimizer.analysis.confidence`)."""
