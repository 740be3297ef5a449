"""Scenario losses of lenders and funds, and expected rates, against their definitions.

``owner_losses`` and ``expected_rates`` group funds by claim shape to read the loss matrix once
per chunk; here each fund's claims are recomputed one by one from ``FundClaims.rates``.
"""

from __future__ import annotations

import numpy as np
import pytest
from optimizer_cases import random_case, synthetic_scenarios

from optimizer.formulation.exposures import expected_rates, fund_claims, owner_losses


@pytest.fixture(params=[(1, False, "float64"), (2, True, "float32")], ids=["equal", "weighted32"])
def book(request):
    """A random case with a first-loss and an event-triggered fund, random lending and cover."""
    seed, importance, dtype = request.param
    case = random_case(seed)
    scen = synthetic_scenarios(case, 700, seed, importance=importance)
    losses = scen.losses.astype(dtype)
    claims = fund_claims(case, scen)
    assert {fc.shape_key for fc in claims} >= {(None, ()), (0.1, ()), (None, ("shock",))}
    rng = np.random.default_rng(seed)
    n_cells, n_src = losses.shape[1], len(case.sources)
    lending = rng.random((n_cells, n_src)) * 1e6
    covered = rng.random((len(claims), n_cells, n_src)) * lending[None] * 0.3
    covered[rng.random(covered.shape) < 0.4] = 0.0
    covered[-1] = 0.0  # a fund that covers nothing
    return losses, np.asarray(scen.probabilities, dtype=float), claims, lending, covered


def test_owner_losses_equal_each_fund_claims_summed_one_by_one(book):
    losses, _, claims, lending, covered = book
    lenders, funds = owner_losses(losses, claims, lending, covered)
    wide = losses.astype(np.float64)
    expect_lenders = wide @ lending
    expect_funds = np.zeros((losses.shape[0], len(claims)))
    for g, fc in enumerate(claims):
        rates = fc.rates(losses)  # κ_gj(ω), with coverage, trigger and cap
        expect_lenders -= rates @ covered[g]
        expect_funds[:, g] = rates @ covered[g].sum(axis=1)
    assert lenders.shape == (losses.shape[0], lending.shape[1])
    np.testing.assert_allclose(lenders, expect_lenders, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(funds, expect_funds, rtol=1e-12, atol=1e-6)
    assert (funds[:, -1] == 0).all() and (funds[:, :-1] > 0).any(axis=0).all()


def test_expected_rates_equal_the_weighted_mean_of_each_funds_rates(book):
    losses, p, claims, _, _ = book
    mean_loss, mean_claim = expected_rates(losses, p, claims)
    np.testing.assert_allclose(mean_loss, p @ losses.astype(np.float64), rtol=1e-12)
    for g, fc in enumerate(claims):
        np.testing.assert_allclose(mean_claim[g], p @ fc.rates(losses), rtol=1e-12, atol=1e-15)
    capped = next(g for g, fc in enumerate(claims) if fc.cap_share is not None)
    covers = claims[capped].coverage > 0
    # a first-loss cap lowers the mean claim below the mean loss on every covered cell
    assert (mean_claim[capped][covers] < mean_loss[covers] * claims[capped].coverage[covers]).all()
