"""Who bears every dollar of credit loss: lenders, the funds' capital providers, by seniority.

In each scenario a guarantee fund pays its claims ``C_g(ω)`` up to its capital ``K_g``:
``paid = min(C_g, K_g)``. What it pays falls on its capital providers, layer by layer (the
fund's ``capital_layers``, junior first; one layer when none is declared), pro rata to capital
within a layer: layer ``k`` with capital ``K_k`` above ``A_k`` of junior capital loses
``min((paid − A_k)+, K_k)``. What it cannot pay, ``(C_g − K_g)+``, stays with the covered
lenders, pro rata to their claims in that scenario. So, scenario by scenario,

    Σ_s lending_s + Σ_s capital_s  =  Σ_j ℓ_j(ω) x_j

(the book's gross credit loss): every dollar lands on someone (:class:`Attribution`,
:func:`attribute_losses`). Money is in the unit of the amounts given (US$ in result tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models.schema import Case, GuaranteeFund
from optimizer.formulation.claims import FundClaims, owner_losses


@dataclass(frozen=True, eq=False)
class Attribution:
    """Every scenario's losses, by whom they fall on.

    Attributes
    ----------
    lending : ndarray of shape (S, n_sources)
        Each source's loss on its own lending after the claims its funds actually paid
        (unpaid claims included).
    capital : ndarray of shape (S, n_sources)
        Each source's loss on the capital it put in guarantee funds.
    claims : ndarray of shape (S, n_funds)
        Claims made on each fund (paid or not).
    unpaid : ndarray of shape (S, n_funds)
        Claims each fund could not pay, ``(C_g − K_g)+``.
    returned : tuple of (ndarray of int, ndarray), one per fund
        The scenarios a fund ran dry in, shape (R_g,), and what each lender got back of its
        unpaid claims there, shape (R_g, n_sources).
    fund_capital : ndarray of shape (n_sources, n_funds)
        The capital the losses were attributed on.
    layers : tuple of tuple of ndarray of int
        Per fund, its capital layers (source positions), junior first.
    """

    lending: np.ndarray
    capital: np.ndarray
    claims: np.ndarray
    unpaid: np.ndarray
    returned: tuple[tuple[np.ndarray, np.ndarray], ...]
    fund_capital: np.ndarray
    layers: tuple[tuple[np.ndarray, ...], ...]

    @cached_property
    def total(self) -> np.ndarray:
        """Each source's whole loss, lending plus fund capital, shape (S, n_sources); summed
        once (the sources table and the Euler table both read it)."""
        return self.lending + self.capital

    def capital_by_fund(self, rows: np.ndarray) -> np.ndarray:
        """Each source's loss on each fund's capital in the given scenarios.

        Returns
        -------
        ndarray of shape (len(rows), n_sources, n_funds)
        """
        held = self.fund_capital.sum(axis=0)
        paid = np.minimum(self.claims[rows], held)
        out = np.zeros((len(rows), *self.fund_capital.shape))
        for g, layers in enumerate(self.layers):
            out[:, :, g] = layer_losses(paid[:, g], self.fund_capital[:, g], layers)
        return out


def capital_layers(case: Case, fund: GuaranteeFund) -> tuple[np.ndarray, ...]:
    """The fund's capital layers as source positions, junior first.

    The case's ``capital_layers``, or one layer of every source that may capitalise it.
    """
    pos = {s.id: i for i, s in enumerate(case.sources)}
    if fund.capital_layers:
        return tuple(
            np.array([pos[i] for i in layer], dtype=np.int64) for layer in fund.capital_layers
        )
    return (
        np.array([i for i, s in enumerate(case.sources) if fund.id in s.funds], dtype=np.int64),
    )


def layer_losses(paid: np.ndarray, capital: np.ndarray, layers: Sequence[np.ndarray]) -> np.ndarray:
    """What each provider loses of one fund's paid claims, by seniority then pro rata.

    Parameters
    ----------
    paid : ndarray of shape (R,)
        Claims the fund paid, at most its capital.
    capital : ndarray of shape (n_sources,)
        Each source's capital in the fund.
    layers : sequence of ndarray of int
        Source positions per layer, junior first.

    Returns
    -------
    ndarray of shape (R, n_sources)
    """
    out = np.zeros((paid.size, capital.size))
    attach = 0.0
    for layer in layers:
        size = float(capital[layer].sum())
        if size <= 0.0:
            continue
        hit = np.clip(paid - attach, 0.0, size)
        out[:, layer] = hit[:, None] * (capital[layer] / size)[None, :]
        attach += size
    return out


def attribute_losses(
    case: Case,
    claims: Sequence[FundClaims],
    losses: np.ndarray,
    lending: np.ndarray,
    covered: np.ndarray,
    capital: np.ndarray,
) -> Attribution:
    """Attribute every scenario's losses to lenders and capital providers.

    Parameters
    ----------
    case : Case
    claims : sequence of FundClaims, length n_funds
    losses : ndarray of shape (S, n_cells)
        Loss per dollar lent.
    lending : ndarray of shape (n_cells, n_sources)
    covered : ndarray of shape (n_funds, n_cells, n_sources)
    capital : ndarray of shape (n_sources, n_funds)

    Returns
    -------
    Attribution
    """
    net, fund_claims = owner_losses(losses, claims, lending, covered)
    held = capital.sum(axis=0)
    paid = np.minimum(fund_claims, held[None, :])
    unpaid = fund_claims - paid
    lend_loss = net  # owner_losses gives a fresh array
    cap_loss = np.zeros_like(net)
    layers = tuple(capital_layers(case, fund) for fund in case.funds)
    returned = []
    for g, fc in enumerate(claims):
        rows = np.flatnonzero(unpaid[:, g] > 0.0)
        back = np.zeros((rows.size, lending.shape[1]))
        cells = np.flatnonzero(covered[g].any(axis=1))
        if rows.size and cells.size:
            own = fc.rates(losses, cells, rows) @ covered[g][cells]  # each lender's claims
            share = own / fund_claims[rows, g][:, None]
            back = unpaid[rows, g][:, None] * share
            lend_loss[rows] += back
        returned.append((rows, back))
        if held[g] > 0.0:
            cap_loss += layer_losses(paid[:, g], capital[:, g], layers[g])
    return Attribution(
        lending=lend_loss,
        capital=cap_loss,
        claims=fund_claims,
        unpaid=unpaid,
        returned=tuple(returned),
        fund_capital=np.asarray(capital, dtype=np.float64),
        layers=layers,
    )
