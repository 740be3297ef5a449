"""The one case editor: fields set by path, tagged, validated; one error naming what broke."""

from __future__ import annotations

import pytest

from models import load_case
from models.case_edit import InvalidEdit, field_value, with_changes
from models.errors import InputError
from optimizer.analysis.frontier import case_at
from optimizer.analysis.sensitivity_inputs import InvalidPerturbation, perturbed_case


@pytest.fixture(scope="module")
def case():
    return load_case()


def test_fields_at_every_depth_are_set_tagged_and_the_rest_left_alone(case):
    changes = {
        "policy.max_share_per_segment": 0.2,
        "sources[PUB_AGROPERU].amount_usd": 150e6,
        "risk_model.copula.rho_macro": 0.05,
        "risk_model.events[coffee_rust].probability": 0.1,
        "products[IND_MFI].base_pd": 0.05,
    }
    edited = with_changes(case, changes, "[A] test from {before} to {value}")
    for path, value in changes.items():
        assert field_value(edited, path) == pytest.approx(value)
    assert edited.field_sources["sources[PUB_AGROPERU].amount_usd"] == (
        f"[A] test from {case.finance_source('PUB_AGROPERU').amount_usd} to 150000000.0"
    )
    assert edited.content_sha256 is None and case.content_sha256 is not None
    # every other field is as it was
    assert edited.finance_source("PRIV_MFI") == case.finance_source("PRIV_MFI")
    assert field_value(edited, "products[IND_AGB].base_pd") == field_value(
        case, "products[IND_AGB].base_pd"
    )
    untagged = with_changes(case, {"policy.max_share_per_segment": 0.2})
    assert untagged.field_sources == case.field_sources


def test_a_change_the_case_cannot_hold_is_one_error_naming_field_and_value(case):
    with pytest.raises(InvalidEdit) as info:
        with_changes(case, {"products[IND_MFI].base_pd": 1.5})
    message = str(info.value)
    assert message.startswith("the changed case is invalid: ")
    assert "base_pd" in message and "1.5" in message
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)

    class Mine(InputError):
        pass

    with pytest.raises(Mine, match=r"^pushing PD: "):
        with_changes(case, {"products[IND_MFI].base_pd": 1.5}, error=Mine, what="pushing PD")


def test_a_path_that_names_no_field_is_a_key_error(case):
    for path in ("policy.nope", "sources[NOPE].amount_usd", "sources[PUB_AGROPERU]", "a b"):
        with pytest.raises(KeyError):
            with_changes(case, {path: 1.0})


def test_the_frontier_and_the_sensitivity_edit_the_case_the_same_way(case):
    scaled = case_at(case, "amount:public", 1.5)
    for src in case.sources:
        want = src.amount_usd * (1.5 if src.kind == "public" else 1.0)
        assert scaled.finance_source(src.id).amount_usd == pytest.approx(want)
    perturbed, setting = perturbed_case(case, "amount_public", 1.5)
    assert perturbed == scaled and setting.startswith("× 1.5 (US$")
    with pytest.raises(InvalidEdit, match=r"depletion:G_PUB at 0\.9 makes the case invalid"):
        case_at(case, "depletion:G_PUB", 0.9)  # above the schema's 0.5
    with pytest.raises(InvalidPerturbation, match="pd × 40 makes the case invalid"):
        perturbed_case(case, "pd", 40.0)
