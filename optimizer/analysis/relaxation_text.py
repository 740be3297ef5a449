"""A relaxation in the user's words: what a US$ of slack on each family means, amounts as written.

:func:`_describe` turns one row of the elastic solution's relaxations
(:func:`optimizer.analysis.relaxations.relaxation_table`) into a sentence ("the climate earmark
needs US$7.60m more high-pressure climate lending"); :func:`_usd` writes an amount as people
write it (US$12.4m, US$250k), :func:`_value` a field's value as it would be typed into the case
file.
"""

from __future__ import annotations

from optimizer.formulation.problem import USD_PER_UNIT
from optimizer.formulation.problem_targets import HOUSEHOLDS_PER_UNIT

_SHARE_LABEL = {"segment_share": "segment", "region_share": "region", "product_share": "product"}

_SAYS = {
    "budget": "{subject} needs {amount} more money (it has {rhs})",
    "segment_gap": "segment {subject} would need {amount} more credit need than its gap of "
    "{rhs} (need − supply) allows",
    "fund_capital_cap": "fund {subject}'s capital cap must rise by {amount} (from {rhs})",
    "leverage": "fund {subject}'s leverage cap must allow {amount} more guaranteed volume",
    "uptake": "cover {subject} must exceed the fund's uptake share by {amount}",
    "cover_total": "cover of {subject} would have to exceed its lending by {amount}",
    "must_cover": "{subject} needs {amount} of lending allowed without guarantee cover",
    "technical_assistance": "the programme's loans need {amount} more technical assistance "
    "than is paid for",
    "expected_loss_limit": "{subject}'s expected-loss limit must rise by {amount} (from {rhs})",
    "fund_depletion": "fund {subject}'s claims CVaR exceeds its capital by {amount}: it needs "
    "{amount} more capital or less cover",
    "return_hurdle": "{subject}'s return hurdle needs {amount} more net income than its "
    "lending earns",
    "senior_cap": "{subject}'s senior cap must allow {amount} more lending (from {rhs})",
    "climate_earmark": "the climate earmark needs {amount} more high-pressure climate lending",
    "climate_earmark_usd": "the climate earmark in US$ asks {amount} more high-pressure "
    "climate lending than the programme can place within every other rule",
    "min_deploy": "{subject}'s minimum deployment asks {amount} more than the programme can "
    "place with it within every other rule",
    "min_gap_closed": "the gap-closed target asks {amount} more credit than the programme can "
    "place within every other rule",
}
"""What a US$ of slack on each family means, in the user's words."""


def _describe(case, ctx, name: str, subject: str, label: str, usd: float, rhs_usd: float) -> str:
    """The row's relaxation in the user's words (``usd`` is the slack, US$)."""
    amount, rhs = _usd(usd), _usd(rhs_usd)
    if name in _SAYS:
        return _SAYS[name].format(subject=subject, amount=amount, rhs=rhs)
    if name == "cvar_limit":
        src = case.finance_source(subject)
        of = ""
        if src.cvar_limit_usd is None:
            commit = _usd(ctx.commit[_pos(case.sources, subject)] * USD_PER_UNIT)
            of = f", {src.cvar_limit_share:.1%} of its {commit} commitment"
        level = f"CVaR{src.cvar_alpha * 100:g}%"
        return f"{subject}'s {level} limit must rise by {amount} (from {rhs}{of})"
    if name == "min_households":
        households = usd / USD_PER_UNIT * HOUSEHOLDS_PER_UNIT
        return (
            f"the households target asks {households:,.0f} more households than the programme "
            "can reach within every other rule"
        )
    if name == "mobilization":
        ratio = case.policy.min_private_per_concessional
        return (
            f"the mobilisation rule ({ratio:g} private per concessional dollar) needs "
            f"{amount} more private lending"
        )
    if name in _SHARE_LABEL:
        kind = _SHARE_LABEL[name]
        share = getattr(case.policy, f"max_share_per_{kind}")
        return (
            f"the concentration cap on {kind} {subject} ({share:.0%} of programme lending) "
            f"must allow {amount} more lending"
        )
    return f"{label} ({name}, {subject}) must be relaxed by {amount}"


# --- small helpers ------------------------------------------------------------------------------
def _pos(items, item_id: str) -> int:
    return next(k for k, item in enumerate(items) if item.id == item_id)


def _usd(value: float) -> str:
    """US$ amounts as people write them: US$12.4m, US$3.10m, US$250k, US$12."""
    sign, v = ("−" if value < 0 else ""), abs(value)
    if v >= 1e8:
        return f"{sign}US${v / 1e6:,.0f}m"
    if v >= 1e7:
        return f"{sign}US${v / 1e6:.1f}m"
    if v >= 1e6:
        return f"{sign}US${v / 1e6:.2f}m"
    if v >= 1e3:
        return f"{sign}US${v / 1e3:.1f}k"
    return f"{sign}US${v:,.0f}"


def _value(value: float, money: bool) -> str:
    """A field's value as the user would type it into the case file."""
    if money:
        return f"{'−' if value < 0 else ''}US${abs(value):,.0f}"
    return f"{value:.4g}"
