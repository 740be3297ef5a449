"""An independent stage-1 formulation: explicit scipy.sparse rows and ``scipy.optimize.linprog``.

Written from the maths in DESIGN.md §4 and the README's "who bears the loss" without reusing any
optimizer code: its own variable index, its own claim rates (directly on x and z, no
net-exposure columns), its own rows, its own ``(C_g − K)+`` variables for claims beyond a
fund's capital. The optimizer must reach the same optimal weighted gap.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from models.cells import build_cells
from models.scenarios import ScenarioSet
from models.schema import Case

M = 1e6  # work in US$ millions, like the optimizer, so HiGHS tolerances mean the same


class _LP:
    """Columns with bounds, and ``A x <= b`` rows collected as sparse blocks."""

    def __init__(self) -> None:
        self.n = 0
        self.free: list[np.ndarray] = []
        self.blocks: list[tuple[list, list, list, np.ndarray]] = []

    def cols(self, k: int, *, free: bool = False) -> np.ndarray:
        idx = np.arange(self.n, self.n + k)
        self.n += k
        if free:
            self.free.append(idx)
        return idx

    def rows(self, terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rhs) -> None:
        """Add ``len(rhs)`` rows; each term is (row, col, coefficient) arrays."""
        rhs = np.atleast_1d(np.asarray(rhs, dtype=float))
        r = [np.asarray(t[0]) for t in terms]
        c = [np.asarray(t[1]) for t in terms]
        v = [np.broadcast_to(np.asarray(t[2], dtype=float), np.shape(t[0])) for t in terms]
        self.blocks.append((r, c, v, rhs))

    def solve(self, cost: np.ndarray) -> float:
        mats, rhs = [], []
        for r, c, v, b in self.blocks:
            rr = np.concatenate([np.ravel(a) for a in r]) if r else np.zeros(0, int)
            cc = np.concatenate([np.ravel(a) for a in c]) if c else np.zeros(0, int)
            vv = np.concatenate([np.ravel(a) for a in v]) if v else np.zeros(0)
            mats.append(sp.csr_matrix((vv, (rr, cc)), shape=(b.size, self.n)))
            rhs.append(b)
        bounds = np.zeros((self.n, 2))
        bounds[:, 1] = np.inf
        for idx in self.free:
            bounds[idx, 0] = -np.inf
        res = linprog(
            cost, A_ub=sp.vstack(mats).tocsr(), b_ub=np.concatenate(rhs), bounds=bounds,
            method="highs",
        )  # fmt: skip
        assert res.status == 0, res.message
        return float(res.fun)


def reference_weighted_gap_usd(case: Case, scen: ScenarioSet) -> float:
    """Optimal weighted unmet gap (US$) of stage 1, by linprog."""
    cells = build_cells(case)
    loss = np.asarray(scen.losses, dtype=float)
    p = np.asarray(scen.probabilities, dtype=float)
    n_scen = loss.shape[0]
    src, funds, segs = case.sources, case.funds, case.segments
    lp = _LP()

    # Variables.
    x = {}  # (s, j) -> column
    for s, so in enumerate(src):
        for j, cell in cells.iterrows():
            ok = cell["product"] in so.products
            if so.min_deforestation_pressure is not None:
                ok &= cell["deforestation_pressure"] >= so.min_deforestation_pressure
            if so.max_pd_guaranteed is not None:
                ok &= cell["pd"] <= so.max_pd_guaranteed
            if ok:
                x[s, j] = int(lp.cols(1)[0])
    c = {(s, f): int(lp.cols(1)[0]) for s, so in enumerate(src) for f in range(len(funds))
         if funds[f].id in so.funds}  # fmt: skip
    t = {s: int(lp.cols(1)[0]) for s, so in enumerate(src) if so.technical_assistance}
    z = {(g, s, j): int(lp.cols(1)[0]) for g, fu in enumerate(funds) for (s, j) in x
         if src[s].kind in fu.covered_source_kinds
         and cells.loc[j, "product"] in fu.eligible_products}  # fmt: skip

    # Claim per covered dollar of fund g in cell j, all scenarios.
    def kappa(g: int, j: int) -> np.ndarray:
        fu = funds[g]
        cov = fu.coverage_by_product.get(cells.loc[j, "product"], fu.coverage_ratio)
        k = (
            loss[:, j]
            if fu.structure == "pari_passu"
            else np.minimum(loss[:, j], fu.first_loss_cap_share)
        )
        k = cov * k
        if fu.active_only_in_events:
            ev = [scen.event_ids.index(e) for e in fu.active_only_in_events]
            k = k * scen.events[:, ev].any(axis=1)
        return k

    def one(cols: list[int], coefs) -> tuple:
        return (np.zeros(len(cols), int), np.array(cols, int), np.asarray(coefs, float))

    def spend(s: int, sign: float = 1.0, with_ta: bool = True) -> list:
        cols = [v for (a, _), v in x.items() if a == s] + [v for (a, _), v in c.items() if a == s]
        if with_ta and s in t:
            cols.append(t[s])
        return [one(cols, sign * np.ones(len(cols)))]

    seg_of = {sg.id: k for k, sg in enumerate(segs)}
    y = {k: [v for (s, j), v in x.items() if seg_of[cells.loc[j, "segment"]] == k]
         for k in range(len(segs))}  # fmt: skip
    all_x = list(x.values())
    # Gap, budgets.
    for k, sg in enumerate(segs):
        lp.rows([one(y[k], 1.0)], sg.gap_usd / M)
    for s, so in enumerate(src):
        lp.rows(spend(s), so.amount_usd / M)
    # Fund capital caps and leverage.
    for g, fu in enumerate(funds):
        cap_cols = [v for (s, f), v in c.items() if f == g]
        cover_cols = [v for (f, _, _), v in z.items() if f == g]
        if fu.capital_cap_usd is not None:
            lp.rows([one(cap_cols, 1.0)], fu.capital_cap_usd / M)
        lp.rows([one(cover_cols, 1.0), one(cap_cols, -fu.leverage_cap)], 0.0)
    # Cover: total, uptake, must-cover.
    for (s, j), xv in x.items():
        zs = [(g, v) for (g, a, b), v in z.items() if (a, b) == (s, j)]
        lp.rows([one([v for _, v in zs] + [xv], [1.0] * len(zs) + [-1.0])], 0.0)
        for g, v in zs:
            lp.rows([one([v, xv], [1.0, -funds[g].uptake_share])], 0.0)
        limit = src[s].max_pd_unguaranteed
        if limit is not None and cells.loc[j, "pd"] > limit:
            lp.rows([one([xv] + [v for _, v in zs], [1.0] + [-1.0] * len(zs))], 0.0)
    # Technical assistance.
    ta_rate = cells["ta_cost_rate"].to_numpy()
    lp.rows([one(all_x, [ta_rate[j] for (_, j) in x]), one(list(t.values()), -1.0)], 0.0)

    # Scenario losses as (n_scen, col) blocks: L_s = Σ ℓ x − Σ κ z;  C_g = Σ κ z.
    def loss_terms(s: int) -> list:
        terms = []
        for (a, j), v in x.items():
            if a == s:
                terms.append((np.arange(n_scen), np.full(n_scen, v), loss[:, j]))
        for (g, a, j), v in z.items():
            if a == s:
                terms.append((np.arange(n_scen), np.full(n_scen, v), -kappa(g, j)))
        return terms

    def fund_terms(g: int) -> list:
        return [(np.arange(n_scen), np.full(n_scen, v), kappa(g, j))
                for (f, _, j), v in z.items() if f == g]  # fmt: skip

    links: dict[tuple, np.ndarray] = {}

    def link(g: int, capital_of: tuple[int, ...]) -> np.ndarray:
        """v_ω >= C_g(ω) − Σ c[s, g] over ``capital_of``, v >= 0: claims beyond that capital."""
        key = (g, capital_of)
        if key not in links:
            v = lp.cols(n_scen)
            rows = np.arange(n_scen)
            caps = [(rows, np.full(n_scen, c[s, g]), -1.0) for s in capital_of if (s, g) in c]
            lp.rows(fund_terms(g) + caps + [(rows, v, -1.0)], np.zeros(n_scen))
            links[key] = v
        return links[key]

    src_pos = {so.id: s for s, so in enumerate(src)}

    def whole_loss(s: int) -> tuple[list, list, list, list]:
        """Scenario terms of all of s's losses, and its shortfall and senior link variables:
        lenders keep the claims beyond a fund's capital, a junior provider bears the fund's
        claims, a senior one the claims beyond the layers junior to it."""
        terms, shortfall, senior, junior = loss_terms(s), [], [], []
        for g, fu in enumerate(funds):
            providers = tuple(a for (a, f) in c if f == g)
            if any(a == s and f == g for (f, a, _) in z):
                shortfall.append(link(g, providers))
            if (s, g) in c:
                layers = [tuple(src_pos[i] for i in layer) for layer in fu.capital_layers] or [
                    providers
                ]
                k = next(i for i, layer in enumerate(layers) if s in layer)
                if k == 0:
                    terms += fund_terms(g)
                    junior.append(g)
                else:
                    senior.append(link(g, tuple(a for layer in layers[:k] for a in layer)))
        for v in shortfall + senior:
            terms.append((np.arange(n_scen), v, 1.0))
        return terms, shortfall, senior, junior

    def cvar_rows(terms: list, alpha: float, limit_terms: list, limit_const: float) -> None:
        eta = int(lp.cols(1, free=True)[0])
        v = lp.cols(n_scen)
        rows = np.arange(n_scen)
        lp.rows(terms + [(rows, np.full(n_scen, eta), -1.0), (rows, v, -1.0)],
                np.zeros(n_scen))  # fmt: skip
        lp.rows([one([eta], 1.0), one(list(v), p / (1 - alpha))] + limit_terms, limit_const)

    mean = p @ loss
    for s, so in enumerate(src):
        terms, shortfall, senior, junior = whole_loss(s)
        if so.cvar_alpha is not None:
            if so.cvar_limit_usd is not None:
                cvar_rows(terms, so.cvar_alpha, [], so.cvar_limit_usd / M)
            else:
                share = [(r, cc, -so.cvar_limit_share * vv)
                         for r, cc, vv in spend(s, with_ta=False)]  # fmt: skip
                cvar_rows(terms, so.cvar_alpha, share, 0.0)
        el = [one([v], mean[j]) for (a, j), v in x.items() if a == s]
        el += [one([v], -(p @ kappa(g, j))) for (g, a, j), v in z.items() if a == s]
        el += [one(list(v), p) for v in shortfall]  # its share of unpaid claims, at most all
        if so.expected_loss_limit_rate is not None:
            whole = [one(list(v), p) for v in senior]
            whole += [one([v], p @ kappa(g, j)) for g in junior
                      for (f, _, j), v in z.items() if f == g]  # fmt: skip
            rate = so.expected_loss_limit_rate
            at_risk = [(r, cc, -rate * vv) for r, cc, vv in spend(s, with_ta=False)]
            lp.rows(el + whole + at_risk, 0.0)
        if so.return_hurdle_rate is not None:
            terms = [one([v], so.return_hurdle_rate - (cells.loc[j, "rate"]
                     - cells.loc[j, "transaction_cost_rate"] - so.cost_of_funds_rate))
                     for (a, j), v in x.items() if a == s]  # fmt: skip
            fees = [one([v], funds[g].fee_rate) for (g, a, _), v in z.items() if a == s]
            lp.rows(terms + el + fees, 0.0)
    for g, fu in enumerate(funds):
        zc = [(v, j) for (f, _, j), v in z.items() if f == g]
        if not zc:
            continue
        terms = [(np.arange(n_scen), np.full(n_scen, v), kappa(g, j)) for v, j in zc]
        cap = [one([v], -1.0) for (s, f), v in c.items() if f == g]
        cvar_rows(terms, 1 - fu.max_depletion_probability, cap, 0.0)

    # Policy rules. Concessional money used, private lending.
    conc = [tm for s, so in enumerate(src) if so.is_concessional for tm in spend(s)]
    priv = [one([v], 1.0) for (s, _), v in x.items() if src[s].kind == "private"]
    for s, so in enumerate(src):
        if so.max_multiple_of_concessional is not None:
            mine = [one([v], 1.0) for (a, _), v in x.items() if a == s]
            scaled = [(r, cc, -so.max_multiple_of_concessional * vv) for r, cc, vv in conc]
            lp.rows(mine + scaled, 0.0)
    pol = case.policy
    if pol.min_private_per_concessional > 0:
        scaled = [(r, cc, pol.min_private_per_concessional * vv) for r, cc, vv in conc]
        lp.rows(scaled + [(r, cc, -vv) for r, cc, vv in priv], 0.0)
    total = one(all_x, 1.0)

    def share_row(cols: list[int], share: float) -> None:
        if share < 1.0:
            lp.rows([one(cols, 1.0), (total[0], total[1], -share * total[2])], 0.0)

    for k in range(len(segs)):
        share_row(y[k], pol.max_share_per_segment)
    for r in case.regions:
        share_row([v for k, sg in enumerate(segs) if sg.region == r.id for v in y[k]],
                  pol.max_share_per_region)  # fmt: skip
    for pr in case.products:
        share_row([v for (s, j), v in x.items() if cells.loc[j, "product"] == pr.id],
                  pol.max_share_per_product)  # fmt: skip
    clim = [(v, j) for (s, j), v in x.items() if src[s].kind == "climate"]
    if pol.climate_earmark_min_share > 0 and clim:
        hi = [v for v, j in clim if cells.loc[j, "deforestation_pressure"]
              >= pol.climate_earmark_min_pressure]  # fmt: skip
        lp.rows([one([v for v, _ in clim], pol.climate_earmark_min_share), one(hi, -1.0)], 0.0)

    # Objective: Σ w_k (gap_k − y_k) = const − Σ w_k y_k.
    w = np.array([1 + pol.deforestation_priority * sg.deforestation_pressure for sg in segs])
    cost = np.zeros(lp.n)
    for k in range(len(segs)):
        cost[y[k]] = -w[k]
    const = float(w @ np.array([sg.gap_usd for sg in segs])) / M
    return (const + lp.solve(cost)) * M
