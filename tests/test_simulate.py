"""Tests of models.simulate: the Monte Carlo against closed forms (Vasicek quantiles, means under
events and price shocks, factor correlations, granular pools), importance sampling, and
reproducibility across workers, backends, seeds and dtypes; argument checking.

Statistical checks compare an estimate with its closed form within 3 (weighted) standard errors
from models.risk_measures; every simulation is seeded, so each check is deterministic.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml
from scipy import special, stats
from sim_cases import (
    LGD,
    PD,
    RHO,
    RHO_TOTAL,
    case_dict,
    event,
    make_case,
    one_cell_case,
    product,
    vasicek_quantile,
    vasicek_second_moment,
)

from models import CaseError, load_case
from models.cells import PD_CAP, build_cells
from models.errors import SimulationError
from models.risk_measures import conditional_value_at_risk, expected_loss, value_at_risk
from models.schema import Case
from models.simulate import CHUNK_SCENARIOS, MAX_SCENARIOS, Tilt, simulate

METHODS = ["mc", "antithetic", "sobol", "importance"]
N_VASICEK = 100_000
N_PARALLEL = 2 * CHUNK_SCENARIOS + 7_232  # three chunks, the last one partial


def assert_close(estimate, expected, n_se: float = 3.0, what: str = "") -> None:
    """|estimate.value - expected| <= n_se standard errors (element-wise)."""
    value, se = np.asarray(estimate.value), np.asarray(estimate.std_error)
    assert np.all(se > 0), f"{what}: zero standard error"
    z = np.abs(value - expected) / se
    assert np.all(z <= n_se), f"{what}: {value} vs {expected}, {z} standard errors off"


def mean_loss(scen, cols=None):
    """Weighted mean loss (Estimate) of the given columns (all if None)."""
    losses = scen.losses if cols is None else scen.losses[:, cols]
    return expected_loss(losses, scen.probabilities)


def cols_where(scen, **labels) -> np.ndarray:
    """Column indices of cells matching labels, e.g. ``value_chain="C1"``."""
    mask = np.ones(scen.n_cells, dtype=bool)
    for column, value in labels.items():
        mask &= scen.cells[column].to_numpy() == value
    assert mask.any()
    return np.flatnonzero(mask)


@pytest.fixture(scope="module")
def default_case() -> Case:
    return load_case()


@pytest.fixture(scope="module")
def vasicek_sets() -> dict:
    case = one_cell_case()
    return {m: simulate(case, N_VASICEK, seed=2024, method=m) for m in METHODS}


# --- one Vasicek cell ---------------------------------------------------------------------


def test_case_without_events_simulates() -> None:
    scen = simulate(one_cell_case(), 1_000, seed=1)
    assert scen.events.shape == (1_000, 0) and scen.event_ids == ()
    assert scen.losses.shape == (1_000, 1)


@pytest.mark.parametrize("method", METHODS)
def test_one_cell_with_an_inert_event_matches_vasicek(method: str) -> None:
    """The Vasicek checks on a case whose only event never happens (runs despite the bug)."""
    case = one_cell_case(events=[event("never", 0.0, pd_multiplier=3.0, lgd_add=0.2)])
    scen = simulate(case, N_VASICEK, seed=2025, method=method)
    assert not scen.events.any()
    for q in (0.95, 0.99, 0.999):
        var = value_at_risk(scen.losses[:, 0], q, scen.probabilities)
        assert_close(var, vasicek_quantile(q), what=f"{method} VaR {q}")
    assert_close(mean_loss(scen, 0), PD * LGD, what=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("q", [0.95, 0.99, 0.999])
def test_one_cell_quantiles_match_vasicek(vasicek_sets, method: str, q: float) -> None:
    scen = vasicek_sets[method]
    assert scen.losses.shape == (N_VASICEK, 1)
    var = value_at_risk(scen.losses[:, 0], q, scen.probabilities)
    assert_close(var, vasicek_quantile(q), what=f"{method} VaR {q}")


@pytest.mark.parametrize("method", METHODS)
def test_one_cell_mean_is_pd_times_lgd(vasicek_sets, method: str) -> None:
    scen = vasicek_sets[method]
    assert_close(mean_loss(scen, 0), PD * LGD, what=method)
    # the large-pool loss variance: LGD² (Φ₂(c, c; ρ) − PD²)
    x, p = scen.losses[:, 0], scen.probabilities
    var = p @ (x - p @ x) ** 2
    expected = LGD**2 * (vasicek_second_moment() - PD**2)
    assert var == pytest.approx(expected, rel=0.06)


def test_one_cell_losses_are_the_vasicek_transform_of_the_factors(vasicek_sets) -> None:
    """DR = Φ((Φ⁻¹(PD) − a) / √(1 − ρ)) with a = Σ √ρ_i Z_i read from the stored factors."""
    scen = vasicek_sets["mc"]
    assert scen.factor_names == ("macro", "chain:C1", "region:R1")
    a = scen.factors.astype(np.float64) @ np.sqrt(RHO)
    dr = special.ndtr((special.ndtri(PD) - a) / np.sqrt(1.0 - RHO_TOTAL))
    np.testing.assert_allclose(scen.losses[:, 0], dr * LGD, rtol=2e-5, atol=1e-12)


def test_antithetic_pairs_mirror_each_other(vasicek_sets) -> None:
    f = vasicek_sets["antithetic"].factors
    half = CHUNK_SCENARIOS // 2
    np.testing.assert_array_equal(f[:half], -f[half:CHUNK_SCENARIOS])
    assert not np.array_equal(f[:half], -f[CHUNK_SCENARIOS : CHUNK_SCENARIOS + half])


def test_importance_weights_are_the_likelihood_ratio() -> None:
    """One cell, no events, the fixed macro-only ``Tilt`` (a pure shift): π ∝ exp(−μ Z_m) with μ
    the macro shift, Z_m the drawn macro factor (the default tilt: tests/test_importance.py)."""
    scen = simulate(one_cell_case(), N_VASICEK, seed=2024, method="importance", tilt=Tilt())
    mu = Tilt().macro_shift
    macro = scen.factors[:, 0].astype(np.float64)
    log_ratio = np.log(scen.probabilities) + mu * macro
    assert np.ptp(log_ratio) < 1e-5
    # the sampling measure is shifted toward downturns, the weighted one is not
    assert macro.mean() == pytest.approx(mu, abs=0.02)
    assert_close(expected_loss(macro, scen.probabilities), 0.0, what="weighted macro mean")
    assert scen.probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    # a normal mean shift μ has E[LR²] = exp(μ²): Kish size ≈ S · exp(−μ²)
    assert scen.effective_sample_size == pytest.approx(N_VASICEK * np.exp(-(mu**2)), rel=0.05)
    assert scen.metadata["effective_sample_size"] == pytest.approx(scen.effective_sample_size)
    assert scen.metadata["tilt"] == {
        "macro_shift": -1.0,
        "event_scale": 3.0,
        "event_cap": 0.5,
        "event_probability": {},
    }


def test_beta_pool_lgd_and_its_downturn_correlation() -> None:
    """LGD = loss / DR is Beta(mean, sd); its normal score loads −√γ on the macro factor."""
    mean, sd, gamma = 0.5, 0.2, 0.3
    case = one_cell_case(products=[product(lgd_sd=sd)], lgd_gamma=gamma)
    scen = simulate(case, 20_000, seed=5)
    a = scen.factors.astype(np.float64) @ np.sqrt(RHO)
    dr = special.ndtr((special.ndtri(PD) - a) / np.sqrt(1.0 - RHO_TOTAL))
    lgd = scen.losses[:, 0] / dr
    common = mean * (1 - mean) / sd**2 - 1
    beta = stats.beta(mean * common, (1 - mean) * common)
    assert stats.kstest(lgd, beta.cdf).pvalue > 0.01
    score = special.ndtri(beta.cdf(lgd))
    r = np.corrcoef(score, scen.factors[:, 0])[0, 1]
    assert r == pytest.approx(-np.sqrt(gamma), abs=0.03)
    # with γ > 0, LGD and DR co-move, so the mean loss exceeds PD · LGD
    el = mean_loss(scen, 0)
    assert el.value > PD * mean + 3 * el.std_error


def test_random_lgd_without_downturn_keeps_the_mean() -> None:
    case = one_cell_case(products=[product(lgd_sd=0.25)])
    scen = simulate(case, 50_000, seed=6)
    assert_close(mean_loss(scen, 0), PD * LGD)
    assert np.unique(scen.losses[:2000, 0] / special.ndtr(0.0)).size > 1000


# --- t copula ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mc", "sobol", "importance"])
def test_t_copula_fattens_the_tail_and_keeps_the_mean(vasicek_sets, method: str) -> None:
    scen_t = simulate(one_cell_case(t_dof=4), N_VASICEK, seed=77, method=method)
    gauss = vasicek_sets["mc"]
    q_t = value_at_risk(scen_t.losses[:, 0], 0.999, scen_t.probabilities)
    q_g = value_at_risk(gauss.losses[:, 0], 0.999)
    assert q_t.value - q_g.value > 3 * np.hypot(q_t.std_error, q_g.std_error)
    assert q_g.value == pytest.approx(vasicek_quantile(0.999), rel=0.05)
    assert_close(mean_loss(scen_t, 0), PD * LGD, what=f"t copula mean ({method})")


def test_t_copula_with_huge_dof_is_gaussian() -> None:
    scen = simulate(one_cell_case(t_dof=1e6), N_VASICEK, seed=8)
    for q in (0.95, 0.99):
        assert_close(value_at_risk(scen.losses[:, 0], q), vasicek_quantile(q), what=f"{q}")


def test_t_copula_mixing_variable_is_chi_square() -> None:
    """DR = Φ((t⁻¹_ν(PD)·√W − a)/√(1 − ρ)): solving for W from losses and stored factors gives
    ν·W ~ χ²_ν, independent of the factors."""
    dof = 4.0
    scen = simulate(one_cell_case(t_dof=dof), 20_000, seed=9)
    assert scen.losses.min() >= 0.0 and scen.losses.max() <= LGD
    a = scen.factors.astype(np.float64) @ np.sqrt(RHO)
    x = np.sqrt(1.0 - RHO_TOTAL) * special.ndtri(scen.losses[:, 0] / LGD) + a
    w = (x / stats.t.ppf(PD, dof)) ** 2
    assert stats.kstest(dof * w, stats.chi2(dof).cdf).pvalue > 0.01
    assert abs(np.corrcoef(w, scen.factors[:, 0])[0, 1]) < 0.03


# --- importance sampling on the default case ------------------------------------------------


def test_importance_sampling_shrinks_cvar_error_of_the_default_book(default_case) -> None:
    n, alpha = 50_000, 0.995
    est = {}
    for method in ("mc", "importance"):
        scen = simulate(default_case, n, seed=31, method=method)
        book = scen.losses.mean(axis=1)  # equal-weighted book of every cell
        est[method] = conditional_value_at_risk(book, alpha, scen.probabilities)
    mc, imp = est["mc"], est["importance"]
    assert imp.std_error < mc.std_error
    assert abs(imp.value - mc.value) <= 4 * np.hypot(imp.std_error, mc.std_error)


# --- shock events --------------------------------------------------------------------------

TWO_BY_TWO = {"regions": ("R1", "R2"), "chains": ("C1", "C2")}
N_EVENT = 40_000


def event_set(events, method: str = "mc", seed: int = 41, **kwargs):
    case = make_case(**{**TWO_BY_TWO, **kwargs}, events=events)
    return simulate(case, N_EVENT, seed=seed, method=method)


def expected_mean(pd_: float, lgd: float = LGD) -> float:
    return min(pd_, PD_CAP) * lgd


def test_certain_event_multiplies_pd_of_hit_cells() -> None:
    scen = event_set([event("rust", 1.0, pd_multiplier=2.5, chains=["C1"])])
    assert scen.events.all()
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C1")), expected_mean(PD * 2.5))
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C2")), expected_mean(PD))


IMPOSSIBLE = event("rust", 0.0, pd_multiplier=5.0, lgd_add=0.3, default_rate_add=0.1)


@pytest.mark.parametrize("method", METHODS)
def test_impossible_event_changes_nothing(method: str) -> None:
    scen = event_set([IMPOSSIBLE], method=method)
    assert not scen.events.any()
    assert_close(mean_loss(scen), PD * LGD)


def test_impossible_event_matches_the_event_free_case() -> None:
    scen = event_set([IMPOSSIBLE])
    base = simulate(make_case(**TWO_BY_TWO), N_EVENT, seed=41)
    diff = mean_loss(scen).value - mean_loss(base).value
    se = np.hypot(mean_loss(scen).std_error, mean_loss(base).std_error)
    assert np.all(np.abs(diff) <= 3 * se)


@pytest.mark.parametrize("method", METHODS)
def test_random_event_mixes_the_two_states(method: str) -> None:
    p, m = 0.3, 3.0
    scen = event_set([event("drought", p, pd_multiplier=m, regions=["R2"])], method=method)
    assert_close(
        expected_loss(scen.events[:, 0].astype(float), scen.probabilities), p, what="frequency"
    )
    hit = cols_where(scen, region="R2")
    assert_close(mean_loss(scen, hit), LGD * PD * (1 - p + p * m), what=f"{method} hit")
    assert_close(mean_loss(scen, cols_where(scen, region="R1")), PD * LGD, what="not hit")
    # conditionally on the event, hit cells default at PD · m
    flag = scen.events[:, 0]
    p_hit = scen.probabilities[flag] / scen.probabilities[flag].sum()
    assert_close(expected_loss(scen.losses[flag][:, hit], p_hit), PD * m * LGD)


def test_importance_sampling_oversamples_rare_events() -> None:
    p = 0.05
    scen = event_set([event("pandemic", p, pd_multiplier=2.0)], method="importance")
    # at q in the tilted half of the scenarios, at p in the model's half (a defensive mixture)
    q = scen.metadata["tilt"]["event_probability"]["pandemic"]
    assert q > 2 * p
    assert scen.events.mean() == pytest.approx((p + q) / 2, abs=0.01)
    assert_close(expected_loss(scen.events[:, 0].astype(float), scen.probabilities), p)
    assert_close(mean_loss(scen), PD * LGD * (1 + p))


def test_pd_multiplier_by_chain_overrides_the_default_multiplier() -> None:
    scen = event_set([event("drought", 1.0, pd_multiplier=2.0, pd_multiplier_by_chain={"C2": 4.0})])
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C1")), expected_mean(PD * 2.0))
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C2")), expected_mean(PD * 4.0))


def test_region_intensity_scales_the_pd_effect() -> None:
    m, w = 3.0, 0.25
    scen = event_set([event("rust", 1.0, pd_multiplier=m, region_intensity={"R2": w})])
    assert_close(mean_loss(scen, cols_where(scen, region="R1")), expected_mean(PD * m))
    assert_close(
        mean_loss(scen, cols_where(scen, region="R2")), expected_mean(PD * (1 + (m - 1) * w))
    )


def test_lgd_add_raises_loss_given_default() -> None:
    scen = event_set([event("failure", 1.0, lgd_add=0.15, regions=["R1"])])
    assert_close(mean_loss(scen, cols_where(scen, region="R1")), PD * (LGD + 0.15))
    assert_close(mean_loss(scen, cols_where(scen, region="R2")), PD * LGD)


def test_lgd_add_is_capped_at_one() -> None:
    scen = event_set([event("failure", 1.0, lgd_add=0.9)])
    assert_close(mean_loss(scen), PD * 1.0)


def test_default_rate_add_shifts_default_rates() -> None:
    add, w = 0.02, 0.5
    scen = event_set(
        [event("relief_law", 1.0, default_rate_add=add, region_intensity={"R2": w}, chains=["C1"])]
    )
    assert_close(mean_loss(scen, cols_where(scen, region="R1", value_chain="C1")), (PD + add) * LGD)
    assert_close(
        mean_loss(scen, cols_where(scen, region="R2", value_chain="C1")), (PD + add * w) * LGD
    )
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C2")), PD * LGD)


def test_state_run_only_event_hits_state_products() -> None:
    scen = event_set(
        [event("agrobanco", 1.0, pd_multiplier=2.0, lgd_add=0.1, state_run_only=True)],
        products=[product("P1"), product("P2", state_run=True)],
    )
    assert_close(mean_loss(scen, cols_where(scen, product="P1")), PD * LGD)
    assert_close(mean_loss(scen, cols_where(scen, product="P2")), 2 * PD * (LGD + 0.1))


def test_events_stack_multiplicatively_and_pd_is_capped() -> None:
    scen = event_set(
        [
            event("a", 1.0, pd_multiplier=2.0, chains=["C1"]),
            event("b", 1.0, pd_multiplier=1.5, chains=["C1"]),
            event("c", 1.0, pd_multiplier=100.0, chains=["C2"]),
        ]
    )
    assert_close(mean_loss(scen, cols_where(scen, value_chain="C1")), expected_mean(PD * 3.0))
    c2 = scen.losses[:, cols_where(scen, value_chain="C2")]
    assert_close(expected_loss(c2), PD_CAP * LGD)
    assert c2.max() <= LGD


# --- price shocks --------------------------------------------------------------------------


def test_coffee_price_shock_shifts_the_chain_factor() -> None:
    kwargs = {
        "chains": ("coffee", "cocoa"),
        "chain_correlations": [("coffee", "cocoa", 0.25)],
    }
    n = 40_000
    calm = simulate(make_case(**kwargs, price_factors={"coffee": {"volatility": 0.32}}), n, seed=51)
    shocked = simulate(
        make_case(**kwargs, price_factors={"coffee": {"volatility": 0.32, "shock_share": -0.30}}),
        n,
        seed=51,
    )
    shift = np.log(0.7) / 0.32
    names = list(shocked.factor_names)
    coffee, cocoa = names.index("chain:coffee"), names.index("chain:cocoa")
    f = shocked.factors.astype(np.float64)
    assert_close(expected_loss(f[:, coffee]), shift, what="coffee factor mean")
    assert_close(expected_loss(f[:, cocoa]), 0.0, what="cocoa factor mean")
    assert np.std(f[:, coffee]) == pytest.approx(1.0, abs=0.02)
    # the same draws, shifted by exactly log(0.7)/0.32
    np.testing.assert_allclose(f[:, coffee] - calm.factors[:, coffee], shift, atol=1e-5)
    np.testing.assert_array_equal(shocked.factors[:, cocoa], calm.factors[:, cocoa])

    # mean loss under a shifted systematic factor: Φ(Φ⁻¹(PD) − √ρ_chain · shift) · LGD
    expected = special.ndtr(special.ndtri(PD) - np.sqrt(RHO[1]) * shift) * LGD
    coffee_cols = cols_where(shocked, value_chain="coffee")
    assert_close(mean_loss(shocked, coffee_cols), expected)
    assert np.all(shocked.losses[:, coffee_cols] >= calm.losses[:, coffee_cols])
    assert mean_loss(shocked, coffee_cols).value > 1.5 * mean_loss(calm, coffee_cols).value
    cocoa_cols = cols_where(shocked, value_chain="cocoa")
    np.testing.assert_array_equal(shocked.losses[:, cocoa_cols], calm.losses[:, cocoa_cols])


# --- factor correlations -------------------------------------------------------------------


def test_default_rate_correlations_follow_the_loadings() -> None:
    """Probit-transformed default rates recover a_j; corr(a_i, a_j) is set by the loadings."""
    chain_corr = 0.5
    case = make_case(
        regions=("R1", "R2"),
        chains=("C1", "C2", "C3"),
        products=[product("P1", pd=0.05), product("P2", pd=0.02)],
        chain_correlations=[("C1", "C2", chain_corr)],
    )
    scen = simulate(case, 50_000, seed=61)
    cells = scen.cells
    dr = scen.losses / LGD
    a = special.ndtri(cells["pd"].to_numpy()) - np.sqrt(1 - RHO_TOTAL) * special.ndtri(dr)

    # a_j is exactly the loading-weighted sum of the stored (correlated) factors
    names = list(scen.factor_names)
    chain_col = [names.index(f"chain:{c}") for c in cells["value_chain"]]
    region_col = [names.index(f"region:{r}") for r in cells["region"]]
    f = scen.factors.astype(np.float64)
    a_from_factors = (
        np.sqrt(RHO[0]) * f[:, [0]]
        + np.sqrt(RHO[1]) * f[:, chain_col]
        + np.sqrt(RHO[2]) * f[:, region_col]
    )
    np.testing.assert_allclose(a, a_from_factors, atol=2e-5)
    chain_factors = f[:, [names.index(f"chain:C{i}") for i in (1, 2, 3)]]
    np.testing.assert_allclose(
        np.corrcoef(chain_factors.T),
        [[1, chain_corr, 0], [chain_corr, 1, 0], [0, 0, 1]],
        atol=0.02,
    )

    chain_matrix = {("C1", "C2"): chain_corr, ("C2", "C1"): chain_corr}
    a_corr, dr_corr = np.corrcoef(a.T), np.corrcoef(dr.T)
    c = special.ndtri(cells["pd"].to_numpy())
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            ci, cj = cells.loc[i, "value_chain"], cells.loc[j, "value_chain"]
            ri, rj = cells.loc[i, "region"], cells.loc[j, "region"]
            chains = 1.0 if ci == cj else chain_matrix.get((ci, cj), 0.0)
            cov_a = RHO[0] + RHO[1] * chains + RHO[2] * (ri == rj)
            pair = (cells.cell[i], cells.cell[j])
            assert a_corr[i, j] == pytest.approx(cov_a / RHO_TOTAL, abs=0.02), pair
            # default rates: E[DR_i DR_j] = Φ₂(c_i, c_j; cov(a_i, a_j))
            implied_dr = (bvn(c[i], c[j], cov_a) - special.ndtr(c[i]) * special.ndtr(c[j])) / (
                np.sqrt(vasicek_second_moment(cells.pd[i]) - cells.pd[i] ** 2)
                * np.sqrt(vasicek_second_moment(cells.pd[j]) - cells.pd[j] ** 2)
            )
            assert dr_corr[i, j] == pytest.approx(implied_dr, abs=0.03), pair
            if (ci, ri) == (cj, rj):
                kind = "same segment"
            elif ci == cj:
                kind = "same chain"
            elif chains != 0.0:
                kind = "correlated chains"
            else:
                kind = "same region" if ri == rj else "neither"
            by_kind.setdefault(kind, []).append((a_corr[i, j], dr_corr[i, j]))
    mean_a, mean_dr = (
        {k: np.mean([v[n] for v in vs]) for k, vs in by_kind.items()} for n in (0, 1)
    )
    assert mean_a["same segment"] == pytest.approx(1.0, abs=1e-9)  # two products, one segment
    assert mean_dr["same segment"] > 0.95
    for mean in (mean_a, mean_dr):
        assert mean["same segment"] > mean["same chain"] > mean["same region"] > mean["neither"]
    assert mean_a["neither"] == pytest.approx(RHO[0] / RHO_TOTAL, abs=0.02)


def bvn(x: float, y: float, r: float) -> float:
    """P(X <= x, Y <= y) for standard normals of correlation r."""
    return float(stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([x, y]))


# --- reproducibility -----------------------------------------------------------------------

PARALLEL_VARIANTS = [("mc", False), ("sobol", False), ("importance", False), ("mc", True)]


@pytest.fixture(scope="module")
def serial_sets(default_case) -> dict:
    return {
        (m, g): simulate(default_case, N_PARALLEL, seed=99, method=m, granular=g)
        for m, g in PARALLEL_VARIANTS
    }


def assert_identical(a, b) -> None:
    assert a.losses.tobytes() == b.losses.tobytes()
    assert a.probabilities.tobytes() == b.probabilities.tobytes()
    assert a.factors.tobytes() == b.factors.tobytes()
    assert a.events.tobytes() == b.events.tobytes()


def test_parallel_runs_have_at_least_three_chunks(serial_sets) -> None:
    assert N_PARALLEL > 2 * CHUNK_SCENARIOS
    scen = serial_sets[("mc", False)]
    assert scen.n_scenarios == N_PARALLEL
    # chunks are different draws: no chunk repeats the first one
    first = scen.losses[:100]
    assert not np.array_equal(first, scen.losses[CHUNK_SCENARIOS : CHUNK_SCENARIOS + 100])


@pytest.mark.parametrize(("method", "granular"), PARALLEL_VARIANTS)
@pytest.mark.parametrize(("backend", "n_jobs"), [("loky", 2), ("loky", 4), ("threading", 2)])
def test_bit_identical_across_workers(
    default_case, serial_sets, method: str, granular: bool, backend: str, n_jobs: int
) -> None:
    scen = simulate(
        default_case,
        N_PARALLEL,
        seed=99,
        method=method,
        granular=granular,
        n_jobs=n_jobs,
        backend=backend,
    )
    assert_identical(serial_sets[(method, granular)], scen)


# the scheduler's HTTP server (health, metrics) asks for port 8787 even without a dashboard
DASK_PORT_WARNING = "ignore:Port 8787 is already in use:UserWarning"


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    yield cluster
    cluster.close()


@pytest.mark.filterwarnings(DASK_PORT_WARNING)
@pytest.mark.parametrize(("method", "granular"), PARALLEL_VARIANTS)
def test_bit_identical_on_a_dask_scheduler(
    default_case, serial_sets, dask_cluster, method: str, granular: bool
) -> None:
    scen = simulate(
        default_case,
        N_PARALLEL,
        seed=99,
        method=method,
        granular=granular,
        backend="dask",
        scheduler=dask_cluster.scheduler_address,
    )
    assert_identical(serial_sets[(method, granular)], scen)


@pytest.mark.filterwarnings(DASK_PORT_WARNING)
def test_bit_identical_on_a_local_dask_cluster(default_case, serial_sets) -> None:
    pytest.importorskip("dask.distributed")
    scen = simulate(default_case, N_PARALLEL, seed=99, method="sobol", n_jobs=2, backend="dask")
    assert_identical(serial_sets[("sobol", False)], scen)


@pytest.mark.slow  # waits for the 10 s connection timeout
def test_unreachable_dask_scheduler_raises(default_case) -> None:
    pytest.importorskip("dask.distributed")
    with pytest.raises(SimulationError, match=re.escape("tcp://127.0.0.1:9")):
        simulate(default_case, N_PARALLEL, backend="dask", scheduler="tcp://127.0.0.1:9")


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_losses_other_seed_other_losses(method: str) -> None:
    case = make_case(**TWO_BY_TWO, events=[event("e", 0.3, pd_multiplier=2.0)])
    a = simulate(case, 3_000, seed=7, method=method)
    b = simulate(case, 3_000, seed=7, method=method)
    c = simulate(case, 3_000, seed=8, method=method)
    assert_identical(a, b)
    assert not np.array_equal(a.losses, c.losses)
    assert not np.array_equal(a.factors, c.factors)
    assert (a.seed, a.method, c.seed) == (7, method, 8)


@pytest.mark.parametrize("method", METHODS)
def test_float32_matches_float64(default_case, method: str) -> None:
    s64 = simulate(default_case, 5_000, seed=3, method=method)
    s32 = simulate(default_case, 5_000, seed=3, method=method, dtype=np.float32)
    assert s32.losses.dtype == np.float32 and s64.losses.dtype == np.float64
    assert np.max(np.abs(s32.losses.astype(np.float64) - s64.losses)) < 1e-6
    np.testing.assert_array_equal(s32.probabilities, s64.probabilities)
    np.testing.assert_array_equal(s32.factors, s64.factors)
    assert s32.metadata["dtype"] == "float32"


def test_scenario_count_not_a_chunk_multiple() -> None:
    case = one_cell_case()
    for n in (1, 2, 3, CHUNK_SCENARIOS + 101):
        for method in METHODS:
            scen = simulate(case, n, seed=1, method=method)
            assert scen.losses.shape == (n, 1)
            assert scen.probabilities.sum() == pytest.approx(1.0)
            assert np.isfinite(scen.losses).all()


def test_prefix_of_a_longer_run_is_the_shorter_run() -> None:
    """Chunks depend on their index only: the first S scenarios of a run of 2S are a run of S."""
    case = one_cell_case()
    short = simulate(case, CHUNK_SCENARIOS, seed=4)
    long = simulate(case, 2 * CHUNK_SCENARIOS + 5, seed=4)
    np.testing.assert_array_equal(long.losses[:CHUNK_SCENARIOS], short.losses)


# --- granular pools ------------------------------------------------------------------------


def test_granular_large_pool_keeps_the_mean() -> None:
    scen = simulate(one_cell_case(), 50_000, seed=71, granular=True)
    assert scen.metadata["granular"] is True
    assert_close(mean_loss(scen, 0), PD * LGD)


def test_granular_small_pool_is_lumpy() -> None:
    n_loans = 10
    case = one_cell_case(products=[product(avg_ticket_usd=1_000.0)], gap_usd=n_loans * 1_000.0)
    scen = simulate(case, 50_000, seed=72, granular=True)
    smooth = simulate(case, 50_000, seed=72, granular=False)
    x = scen.losses[:, 0]
    units = x / (LGD / n_loans)
    np.testing.assert_allclose(units, np.round(units), atol=1e-9)
    assert set(np.unique(np.round(units)).astype(int)) <= set(range(n_loans + 1))
    assert np.unique(smooth.losses[:, 0]).size > 40_000
    for q in (0.95, 0.99):
        v = value_at_risk(x, q).value / (LGD / n_loans)
        assert v == pytest.approx(round(v), abs=1e-9)
    assert_close(mean_loss(scen, 0), PD * LGD)
    # binomial noise on top of the large-pool variance: Var = LGD² (V + (PD − Φ₂)/n)
    second = vasicek_second_moment()
    expected_var = LGD**2 * (second - PD**2 + (PD - second) / n_loans)
    assert x.var() == pytest.approx(expected_var, rel=0.05)
    assert x.var() > 2 * smooth.losses[:, 0].var()


# --- progress ------------------------------------------------------------------------------


def test_progress_reports_increasing_counts() -> None:
    seen: list[int] = []
    n = 2 * CHUNK_SCENARIOS + 10
    simulate(one_cell_case(), n, seed=1, progress=seen.append)
    assert seen == [CHUNK_SCENARIOS, 2 * CHUNK_SCENARIOS, n]


def test_progress_with_parallel_workers(default_case) -> None:
    seen: list[int] = []
    simulate(default_case, N_PARALLEL, n_jobs=2, backend="threading", progress=seen.append)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] == N_PARALLEL


# --- argument checking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"n_scenarios": 0}, "0"),
        ({"n_scenarios": -5}, "-5"),
        ({"n_scenarios": 1.5}, "1.5"),
        ({"n_scenarios": True}, "True"),
        ({"n_scenarios": "100"}, "'100'"),
        ({"n_scenarios": MAX_SCENARIOS + 1}, str(MAX_SCENARIOS + 1)),
        ({"method": "montecarlo"}, "'montecarlo'"),
        ({"seed": -1}, "-1"),
        ({"seed": 1.0}, "1.0"),
        ({"seed": True}, "True"),
        ({"n_jobs": 0}, "0"),
        ({"n_jobs": -2}, "-2"),
        ({"n_jobs": 1.5}, "1.5"),
        ({"backend": "spark"}, "'spark'"),
        ({"dtype": int}, "int64"),
        ({"dtype": np.float16}, "float16"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, shown: str) -> None:
    args = {"n_scenarios": 100, **kwargs}
    with pytest.raises(SimulationError, match=re.escape(shown)):
        simulate(one_cell_case(), **args)


def test_numpy_integer_arguments_are_accepted() -> None:
    scen = simulate(one_cell_case(), np.int64(10), seed=np.int64(3))
    assert scen.losses.shape == (10, 1) and scen.seed == 3


@pytest.mark.parametrize("dof", [2, 1.5, 0, -4])
def test_t_dof_at_most_two_is_rejected_by_the_schema(dof: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="t_degrees_of_freedom"):
        Case.model_validate(case_dict(t_dof=dof))


def test_t_dof_two_is_rejected_by_load_case(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(case_dict(t_dof=2)), encoding="utf-8")
    with pytest.raises(CaseError, match="t_degrees_of_freedom") as info:
        load_case(path)
    assert "risk_model.copula.t_degrees_of_freedom" in info.value.fields
    # the same file with 2.5 degrees of freedom loads
    path.write_text(yaml.safe_dump(case_dict(t_dof=2.5)), encoding="utf-8")
    assert load_case(path).risk_model.copula.t_degrees_of_freedom == 2.5


# --- the default case ----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_default_case_scenario_set(default_case, method: str) -> None:
    n = 20_000
    scen = simulate(default_case, n, seed=12, method=method)
    n_cells = len(build_cells(default_case))
    assert scen.losses.shape == (n, n_cells) and scen.n_cells == n_cells
    assert scen.losses.dtype == np.float64
    assert scen.losses.min() >= 0.0 and scen.losses.max() <= 1.0
    assert scen.probabilities.shape == (n,)
    assert scen.probabilities.min() >= 0.0
    assert scen.probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    if method == "importance":
        assert scen.effective_sample_size < 0.9 * n
    else:
        np.testing.assert_allclose(scen.probabilities, 1.0 / n, rtol=1e-12)
        assert scen.effective_sample_size == pytest.approx(n, rel=1e-9)
    assert scen.metadata["effective_sample_size"] == pytest.approx(scen.effective_sample_size)
    assert scen.seed == 12 and scen.method == method
    assert scen.metadata["case_sha256"] == default_case.content_sha256
    assert len(scen.metadata["case_sha256"]) == 64
    assert scen.metadata["chunk_scenarios"] == CHUNK_SCENARIOS
    assert scen.metadata["dtype"] == "float64"
    assert "numpy" in scen.metadata["versions"]
    assert scen.event_ids == tuple(e.id for e in default_case.risk_model.events)
    assert scen.events.shape == (n, len(default_case.risk_model.events))
    assert scen.events.dtype == bool
    assert scen.factor_names[0] == "macro"
    assert len(scen.factor_names) == 1 + len(default_case.value_chains) + len(default_case.regions)
    assert list(scen.cells["cell"]) == list(build_cells(default_case)["cell"])
    assert not scen.losses.flags.writeable


@functools.cache
def mean_capped_lgd(mean: float, sd: float, add: float) -> float:
    """E[min(B + add, 1)] for B ~ Beta with the given mean and sd."""
    if add == 0.0 or sd == 0.0:
        return min(mean + add, 1.0)
    common = mean * (1 - mean) / sd**2 - 1
    beta = stats.beta(mean * common, (1 - mean) * common)
    return float(beta.expect(lambda b: min(b + add, 1.0)))


def test_default_case_cell_means_match_the_event_mixture(default_case) -> None:
    """Every cell of the default case (LGD downturn correlation set to 0) against the closed form.

    Events are independent, so E[ℓ_j] = Σ_patterns P(pattern) · min(PD_j Π m_ej, cap) ·
    E[min(LGD_p + Σ lgd_add, 1)] (+ default-rate adds), with m_ej and the adds worked out here
    from the case, not by the library.
    """
    dump = default_case.model_dump()
    dump["risk_model"]["lgd_downturn_correlation"] = 0.0
    case = Case.model_validate(dump)
    cells = build_cells(case)
    events = case.risk_model.events
    uplift = case.risk_model.state_lender_pd_uplift
    expected = np.zeros(len(cells))
    for j, cell in cells.iterrows():
        prod, seg = case.product(cell["product"]), case.segment(cell["segment"])
        pd_ = prod.base_pd * seg.pd_multiplier * (uplift if prod.state_run else 1.0)
        assert cell["pd"] == pytest.approx(min(pd_, PD_CAP), rel=1e-12)
        mult, d_add, l_add = [], [], []
        for ev in events:
            hit = (
                (ev.chains is None or seg.value_chain in ev.chains)
                and (ev.regions is None or seg.region in ev.regions)
                and (prod.state_run or not ev.state_run_only)
            )
            w = ev.region_intensity.get(seg.region, 1.0)
            m = ev.pd_multiplier_by_chain.get(seg.value_chain, ev.pd_multiplier)
            mult.append(1 + (m - 1) * w if hit else 1.0)
            d_add.append(ev.default_rate_add * w if hit else 0.0)
            l_add.append(ev.lgd_add if hit else 0.0)
        for pattern in range(2 ** len(events)):
            on = [(pattern >> e) & 1 for e in range(len(events))]
            prob = np.prod(
                [
                    ev.probability if o else 1 - ev.probability
                    for ev, o in zip(events, on, strict=True)
                ]
            )
            dr = min(cell["pd"] * np.prod([m for m, o in zip(mult, on, strict=True) if o]), PD_CAP)
            dr += sum(d for d, o in zip(d_add, on, strict=True) if o)
            add = sum(g for g, o in zip(l_add, on, strict=True) if o)
            lgd = mean_capped_lgd(prod.lgd_mean, prod.lgd_sd, add)
            expected[j] += prob * dr * lgd

    scen = simulate(case, 50_000, seed=13, method="importance")
    # 119 cells: 4 standard errors keeps the chance of a false alarm below 1 %
    assert_close(mean_loss(scen), expected, n_se=4.0, what="default case cell means")
    scen_mc = simulate(case, 20_000, seed=14)
    assert_close(mean_loss(scen_mc), expected, n_se=4.0, what="default case cell means (mc)")
