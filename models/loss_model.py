"""The credit-loss model of one chunk of scenarios: factors and events in, loss per dollar out.

For scenario ω and cell j (product p, segment k in region r, value chain c)::

    PD_j(ω)  = min(pd_j · Π_e m_ej^{E_e(ω)}, 0.999)          shock events multiply PDs
    a_j(ω)   = √ρ_m Z_m + √ρ_c Z_c + √ρ_r Z_r                systematic part of asset value
    DR_j(ω)  = Φ((T(PD_j)·√W − a_j) / √(1 − ρ))              large-pool Vasicek (W = 1 Gaussian)
    LGD_p(ω) = Beta_p⁻¹(Φ(−√γ·Z_m + √(1−γ)·η_p))            pool LGD, rising in downturns
    ℓ_j(ω)   = min(DR_j + d_j(ω), 1) · min(LGD_p + g_j(ω), 1)

T is Φ⁻¹ for the Gaussian copula and the Student-t quantile for the t copula, where W is the
common chi-square mixing variable (χ²_ν/ν) that makes all factors fail together in the tail.
Chain factors are correlated (the case's chain correlations) and read as standardised annual
log price returns, so a price shock s moves them by log(1+s)/σ.

The pool LGD is drawn per product, not per cell: idiosyncratic recoveries average out in a large
pool, and what stays random is each product's recovery environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from models.cells import PD_CAP, build_cells
from models.crosscheck import chain_correlation_matrix
from models.schema import Case

MAX_PATTERN_EVENTS = 10
"""Up to this many events, thresholds are tabulated for all 2**E event patterns."""
_LGD_GRID_SD = np.linspace(-8.5, 8.5, 4097)
"""Normal scores at which each product's Beta quantile is tabulated (then interpolated)."""


@dataclass(frozen=True)
class LossModel:
    """Everything about a case the simulator needs, as arrays, computed once per run.

    Shapes: J cells, C chains, R regions, E events, P products, K = 2**E event patterns.
    """

    n_cells: int
    rho_macro: float
    rho_chain: float
    rho_region: float
    t_dof: float | None
    chain_cholesky: np.ndarray  # (C, C) lower
    chain_shift: np.ndarray  # (C,) deterministic price-shock shift of chain factors
    event_probability: np.ndarray  # (E,)
    threshold_by_pattern: np.ndarray | None  # (K, J) T(PD_j) per event pattern; None if E large
    log_pd: np.ndarray  # (J,) log of the pre-event PD
    log_pd_multiplier: np.ndarray  # (E, J)
    default_add_by_event: np.ndarray  # (E, J)
    loading: np.ndarray  # (F, J) factor loadings on raw normals, divided by √(1−ρ)
    offset: np.ndarray  # (J,) price-shock shift of the systematic part, divided by √(1−ρ)
    lgd_gamma: float
    lgd_grid: np.ndarray  # (P, n_grid) Beta quantiles at _LGD_GRID_SD
    group_of_cell: np.ndarray  # (J,) LGD group of each cell
    group_product: np.ndarray  # (G,) product of each LGD group
    group_lgd_add: np.ndarray  # (E, G) LGD add of each event in each group
    pool_size: np.ndarray  # (J,) loans per cell for granular pools
    factor_names: tuple[str, ...]
    event_ids: tuple[str, ...]

    @property
    def n_factors(self) -> int:
        """Number of systematic factors F: macro, one per value chain, one per region."""
        return len(self.factor_names)

    @property
    def n_events(self) -> int:
        """Number of shock events E."""
        return len(self.event_ids)

    @property
    def n_products(self) -> int:
        """Number of loan products P (rows of ``lgd_grid``)."""
        return int(self.lgd_grid.shape[0])

    @property
    def rho_total(self) -> float:
        """ρ_macro + ρ_chain + ρ_region: asset correlation of two loans in one region and chain."""
        return self.rho_macro + self.rho_chain + self.rho_region


def event_multipliers(case: Case, cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event and cell: PD multiplier, default-rate add and LGD add (1, 0, 0 if not hit).

    Returns
    -------
    pd_mult, default_add, lgd_add : ndarrays of shape (n_events, n_cells)
    """
    events = case.risk_model.events
    n_cells = len(cells)
    pd_mult = np.ones((len(events), n_cells))
    default_add = np.zeros((len(events), n_cells))
    lgd_add = np.zeros((len(events), n_cells))
    for e, ev in enumerate(events):
        for j, cell in enumerate(cells.itertuples(index=False)):
            if ev.chains is not None and cell.value_chain not in ev.chains:
                continue
            if ev.regions is not None and cell.region not in ev.regions:
                continue
            if ev.state_run_only and not cell.state_run:
                continue
            base = ev.pd_multiplier_by_chain.get(cell.value_chain, ev.pd_multiplier)
            weight = ev.region_intensity.get(cell.region, 1.0)
            pd_mult[e, j] = 1.0 + (base - 1.0) * weight
            default_add[e, j] = ev.default_rate_add * weight
            lgd_add[e, j] = ev.lgd_add
    return pd_mult, default_add, lgd_add


def default_threshold(log_pd: np.ndarray, t_dof: float | None) -> np.ndarray:
    """Default threshold T(PD) from log PDs: Φ⁻¹ (Gaussian) or the t quantile; PD capped."""
    pd_ = np.minimum(np.exp(log_pd), PD_CAP)  # log_pd = -inf (PD 0) gives threshold -inf
    return special.ndtri(pd_) if t_dof is None else stats.t.ppf(pd_, t_dof)


def _beta_quantile_grid(mean: float, sd: float) -> np.ndarray:
    """Beta(mean, sd) quantiles at the normal scores of ``_LGD_GRID_SD`` (constant if sd = 0)."""
    if sd <= 0.0 or mean <= 0.0 or mean >= 1.0:
        return np.full(_LGD_GRID_SD.shape, mean)
    common = mean * (1.0 - mean) / (sd * sd) - 1.0
    a, b = mean * common, (1.0 - mean) * common
    return stats.beta.ppf(special.ndtr(_LGD_GRID_SD), a, b)


def build_loss_model(case: Case) -> LossModel:
    """Turn a validated case into the arrays of :class:`LossModel`."""
    cells = build_cells(case)
    rm = case.risk_model
    chains = [c.id for c in case.value_chains]
    regions = [r.id for r in case.regions]
    products = [p.id for p in case.products]
    chain_idx = cells["value_chain"].map({c: i for i, c in enumerate(chains)}).to_numpy(int)
    region_idx = cells["region"].map({r: i for i, r in enumerate(regions)}).to_numpy(int)
    product_idx = cells["product"].map({p: i for i, p in enumerate(products)}).to_numpy(int)

    corr = chain_correlation_matrix(case)
    # Cholesky needs strict positive definiteness; a PSD matrix with a zero eigenvalue
    # (allowed by validation) is nudged by a negligible ridge.
    chol = np.linalg.cholesky(corr + 1e-12 * np.eye(len(chains)))
    shift = np.zeros(len(chains))
    for chain_id, factor in rm.price_factors.items():
        shift[chains.index(chain_id)] = np.log1p(factor.shock_share) / factor.volatility

    pd_mult, default_add, lgd_add = event_multipliers(case, cells)
    n_events = len(rm.events)
    with np.errstate(divide="ignore"):
        log_pd = np.log(cells["pd"].to_numpy())
    log_mult = np.log(np.maximum(pd_mult, 1e-300))
    dof = rm.copula.t_degrees_of_freedom
    scale = 1.0 / np.sqrt(1.0 - rm.copula.rho_total)
    threshold = None
    if n_events <= MAX_PATTERN_EVENTS:
        patterns = ((np.arange(2**n_events)[:, None] >> np.arange(n_events)) & 1).astype(float)
        threshold = default_threshold(log_pd[None, :] + patterns @ log_mult, dof) * scale

    # a_j = normals @ loading: macro row, chain rows through the Cholesky factor, region rows
    n_chain, n_region, n_cells = len(chains), len(regions), len(cells)
    loading = np.zeros((1 + n_chain + n_region, n_cells))
    loading[0] = np.sqrt(rm.copula.rho_macro)
    loading[1 : 1 + n_chain] = np.sqrt(rm.copula.rho_chain) * chol[chain_idx].T
    loading[1 + n_chain + region_idx, np.arange(n_cells)] = np.sqrt(rm.copula.rho_region)
    offset = np.sqrt(rm.copula.rho_chain) * shift[chain_idx]

    groups: dict[tuple, int] = {}
    group_of_cell = np.array(
        [groups.setdefault((product_idx[j], *lgd_add[:, j]), len(groups)) for j in range(n_cells)],
        dtype=np.int64,
    )
    group_keys = sorted(groups, key=groups.get)
    group_product = np.array([k[0] for k in group_keys], dtype=np.int64)
    group_lgd_add = np.array([k[1:] for k in group_keys], dtype=float).T.reshape(
        n_events, len(group_keys)
    )

    lgd_grid = np.vstack([_beta_quantile_grid(p.lgd_mean, p.lgd_sd) for p in case.products])
    gaps = {s.id: s.gap_usd for s in case.segments}
    pool = np.maximum(
        1, np.round(cells["segment"].map(gaps).to_numpy() / cells["avg_ticket_usd"].to_numpy())
    ).astype(np.int64)

    names = ("macro", *(f"chain:{c}" for c in chains), *(f"region:{r}" for r in regions))
    return LossModel(
        n_cells=len(cells),
        rho_macro=rm.copula.rho_macro,
        rho_chain=rm.copula.rho_chain,
        rho_region=rm.copula.rho_region,
        t_dof=dof,
        chain_cholesky=chol,
        chain_shift=shift,
        event_probability=np.array([e.probability for e in rm.events], dtype=float),
        threshold_by_pattern=threshold,
        log_pd=log_pd,
        log_pd_multiplier=log_mult,
        default_add_by_event=default_add,
        loading=loading * scale,
        offset=offset * scale,
        lgd_gamma=rm.lgd_downturn_correlation,
        lgd_grid=lgd_grid,
        group_of_cell=group_of_cell,
        group_product=group_product,
        group_lgd_add=group_lgd_add,
        pool_size=pool,
        factor_names=names,
        event_ids=tuple(e.id for e in rm.events),
    )


ROW_BLOCK = 2048
"""Rows processed together inside a chunk, so the (rows x J) temporaries stay in cache."""


def chunk_losses(
    model: LossModel,
    normals: np.ndarray,
    event_flags: np.ndarray,
    mixing: np.ndarray | None,
    lgd_normals: np.ndarray,
    rng: np.random.Generator | None,
    dtype: type = np.float64,
) -> np.ndarray:
    """Loss per dollar for one chunk of scenarios.

    Parameters
    ----------
    normals : ndarray of shape (m, 1 + C + R)
        Independent standard normal draws for macro, chain (before correlation) and region
        factors. On return the chain columns hold the correlated, shifted chain factors.
    event_flags : ndarray of shape (m, E), bool
    mixing : ndarray of shape (m,) or None
        Chi-square mixing W = χ²_ν/ν of the t copula; None for the Gaussian copula.
    lgd_normals : ndarray of shape (m, P)
        Idiosyncratic normal scores of each product's pool LGD.
    rng : Generator or None
        Given for granular pools: defaults are then Binomial(n_j, DR_j) / n_j.

    Returns
    -------
    ndarray of shape (m, J)
        ℓ_j(ω) in [0, 1].
    """
    m = normals.shape[0]
    flags = event_flags.astype(np.float64)
    # pool LGD per (scenario, LGD group): groups share a product and the same event LGD adds
    gamma = model.lgd_gamma
    score = np.sqrt(1.0 - gamma) * lgd_normals - np.sqrt(gamma) * normals[:, :1]
    lgd_group = np.empty((m, model.group_product.size))
    for g, p in enumerate(model.group_product):
        lgd_group[:, g] = np.interp(score[:, p], _LGD_GRID_SD, model.lgd_grid[p])
    if model.n_events:
        lgd_group += flags @ model.group_lgd_add
        np.minimum(lgd_group, 1.0, out=lgd_group)
    if model.threshold_by_pattern is not None:
        pattern = event_flags.astype(np.int64) @ (1 << np.arange(model.n_events, dtype=np.int64))
    add_default = model.n_events > 0 and bool(model.default_add_by_event.any())

    out = np.empty((m, model.n_cells), dtype=dtype)
    for lo in range(0, m, ROW_BLOCK):
        hi = min(lo + ROW_BLOCK, m)
        if model.threshold_by_pattern is not None:
            x = model.threshold_by_pattern[pattern[lo:hi]]  # gather, not rows·J quantile calls
        else:
            x = default_threshold(
                model.log_pd + flags[lo:hi] @ model.log_pd_multiplier, model.t_dof
            ) * (1.0 / np.sqrt(1.0 - model.rho_total))
        if mixing is not None:
            x *= np.sqrt(mixing[lo:hi])[:, None]
        x -= model.offset
        x -= normals[lo:hi] @ model.loading
        dr = special.ndtr(x, out=x)
        if rng is not None:
            dr = rng.binomial(model.pool_size, dr) / model.pool_size
        if add_default:
            dr += flags[lo:hi] @ model.default_add_by_event
            np.minimum(dr, 1.0, out=dr)
        dr *= lgd_group[lo:hi, model.group_of_cell]
        out[lo:hi] = dr
    n_chain = model.chain_cholesky.shape[0]
    normals[:, 1 : 1 + n_chain] = (
        normals[:, 1 : 1 + n_chain] @ model.chain_cholesky.T + model.chain_shift
    )
    return out
