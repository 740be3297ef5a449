"""Drawing a case's scenarios in fixed-size chunks, reproducibly, on any number of workers.

Chunk i (:data:`CHUNK_SCENARIOS` scenarios) draws from the i-th child of ``SeedSequence(seed)``
and lands in its own rows, so the losses are bit-identical whatever the number of workers or the
backend (:mod:`models.workers`), and a lost worker's chunks are drawn again with the same
numbers. A chunk draws its factors, events and LGD scores by its :class:`Method`, applies the
importance-sampling plan when there is one (:mod:`models.importance`) and computes the cells'
losses (:func:`models.loss_model.chunk_losses`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from enum import StrEnum

import numpy as np
from scipy import special
from scipy.stats import qmc

from models.importance import SamplingPlan
from models.loss_model import LossModel, chunk_losses
from models.workers import Backend, run_in_order

__all__ = ["CHUNK_SCENARIOS", "Method", "draw_chunks"]

CHUNK_SCENARIOS = 16_384
"""Scenarios per chunk. Fixed (never derived from n_jobs) so results do not depend on it."""


class Method(StrEnum):
    """How scenarios are drawn."""

    mc = "mc"
    """Plain Monte Carlo, equal probabilities."""
    antithetic = "antithetic"
    """Pairs (Z, −Z) of factor draws and (U, 1−U) of event draws; equal probabilities."""
    sobol = "sobol"
    """Scrambled Sobol points for factors, events and LGD scores; equal probabilities."""
    importance = "importance"
    """Every factor shifted and events tilted toward the book's tail (a defensive mixture with
    the model); likelihood-ratio weights. See :mod:`models.importance`."""


def _sobol_uniforms(dim: int, seed: int, start: int, count: int) -> np.ndarray:
    """Points start..start+count of one scrambled Sobol sequence (same for every chunking)."""
    engine = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng([seed, 0x50B01]))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warning for non-power-of-2 n
        u = engine.random(count)
    return np.clip(u, 1e-12, 1.0 - 1e-12)


def _draw_chunk(
    model: LossModel,
    method: Method,
    plan: SamplingPlan | None,
    seed: int,
    child: np.random.SeedSequence,
    start: int,
    count: int,
    granular: bool,
    dtype: type,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk: (losses (m, J), log likelihood ratio (m,), factors (m, F), events (m, E))."""
    rng = np.random.default_rng(child)
    n_f, n_e, n_p = model.n_factors, model.n_events, model.n_products
    p_event = model.event_probability
    log_lr = np.zeros(count)
    if method is Method.sobol:
        u = _sobol_uniforms(n_f + n_e + n_p + (model.t_dof is not None), seed, start, count)
        normals = special.ndtri(u[:, :n_f])
        event_u = u[:, n_f : n_f + n_e]
        lgd_normals = special.ndtri(u[:, n_f + n_e : n_f + n_e + n_p])
        mixing_u = u[:, -1] if model.t_dof is not None else None
    else:
        if method is Method.antithetic:
            half = (count + 1) // 2
            normals = rng.standard_normal((half, n_f))
            normals = np.concatenate([normals, -normals])[:count]
            event_u = rng.random((half, n_e))
            event_u = np.concatenate([event_u, 1.0 - event_u])[:count]
            lgd_normals = rng.standard_normal((half, n_p))
            lgd_normals = np.concatenate([lgd_normals, -lgd_normals])[:count]
        else:
            normals = rng.standard_normal((count, n_f))
            event_u = rng.random((count, n_e))
            lgd_normals = rng.standard_normal((count, n_p))
        mixing_u = rng.random(count) if model.t_dof is not None else None

    mixing = None
    if model.t_dof is not None:
        from scipy.stats import chi2

        mixing = chi2.ppf(mixing_u, model.t_dof) / model.t_dof
    if plan is not None:
        # after the factors, events and LGD scores: those stay plain Monte Carlo's draws
        component_u = rng.random(count) if plan.defensive_share > 0 else None
        flags, log_lr = plan.apply(normals, event_u, p_event, component_u, mixing)
    else:
        flags = event_u < p_event

    losses = chunk_losses(
        model, normals, flags, mixing, lgd_normals, rng if granular else None, dtype
    )
    return losses, log_lr, normals.astype(np.float32), flags


def draw_chunks(
    model: LossModel,
    method: Method,
    plan: SamplingPlan | None,
    seed: int,
    n_scenarios: int,
    granular: bool,
    dtype: type,
    where: tuple[Backend, int, str | None],
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw every chunk, on the workers ``where`` names, into one set of arrays, in order.

    Parameters
    ----------
    model : LossModel
    method : Method
    plan : SamplingPlan or None
        The importance-sampling plan every chunk applies; None draws from the model itself.
    seed : int
        Chunk i draws from the i-th child of ``SeedSequence(seed)``.
    n_scenarios : int
        Number of scenarios S.
    granular : bool
        Binomial defaults in pools instead of the large-pool limit.
    dtype : numpy float type
        Of the loss matrix.
    where : tuple of (Backend, int, str or None)
        The backend, ``n_jobs`` and the dask scheduler's address (see :func:`models.simulate`).
    progress : callable or None
        Called with the number of scenarios finished after each chunk.

    Returns
    -------
    losses : ndarray of shape (S, J), ``dtype``
    log_lr : ndarray of shape (S,)
        Log likelihood ratio, model over sampling measure (zeros without a plan).
    factors : ndarray of shape (S, F), float32
    events : ndarray of shape (S, E), bool
    """
    backend, n_jobs, scheduler = where
    starts = list(range(0, n_scenarios, CHUNK_SCENARIOS))
    children = np.random.SeedSequence(seed).spawn(len(starts))

    losses = np.empty((n_scenarios, model.n_cells), dtype=dtype)
    log_lr = np.empty(n_scenarios)
    factors = np.empty((n_scenarios, model.n_factors), dtype=np.float32)
    events = np.empty((n_scenarios, model.n_events), dtype=bool)

    chunks = run_in_order(
        _draw_chunk,
        (model, method, plan, seed),
        [
            (child, start, min(CHUNK_SCENARIOS, n_scenarios - start), granular, dtype)
            for child, start in zip(children, starts, strict=True)
        ],
        backend,
        n_jobs,
        scheduler,
        describe=lambda i: f"scenarios {starts[i]:,} to {n_scenarios - 1:,}",
    )
    # results come back in submission order, so each chunk lands in its own rows
    for start, (chunk, chunk_lr, chunk_f, chunk_e) in zip(starts, chunks, strict=True):
        stop = start + chunk.shape[0]
        losses[start:stop], log_lr[start:stop] = chunk, chunk_lr
        factors[start:stop], events[start:stop] = chunk_f, chunk_e
        if progress is not None:
            progress(stop)
    return losses, log_lr, factors, events
