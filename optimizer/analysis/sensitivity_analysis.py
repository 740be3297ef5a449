"""One-at-a-time sensitivity of the optimal gap: the numbers behind a tornado chart.

Each input (every product's PD, every LGD, the copula loadings, every event probability, the
money of each kind of source, every CVaR limit) is scaled by ``1 − shock`` and ``1 + shock`` in
turn; the perturbed case is rebuilt and validated like a loaded one, re-simulated with the base
seed and re-optimised. The simulator draws its random numbers per chunk from the seed alone,
never from the case's parameters, so every point sees the same factor, event and LGD draws as
the base (common random numbers): the change of the optimal gap is the effect of the input, not
Monte Carlo noise, and a factor of 1 changes nothing, exactly. Under importance sampling (the
default) money and limit inputs leave the tilt as it is (it targets the equal-weighted book), so
their points are drawn on the base's very set; a risk input moves the tilt, so its points share
the base's underlying draws, shifted to their own tail. A perturbation that makes the case
invalid (a PD pushed past 1...) or infeasible stays in the table with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, Case, ScenarioSet, simulate
from models.errors import OptionError
from models.options import check_n_jobs
from models.workers import backend_for, run_in_order
from optimizer.analysis.sensitivity_inputs import (
    INPUT_IDS,
    INPUTS,
    INPUTS_BY_ID,
    InvalidPerturbation,
    perturbed_case,
)
from optimizer.choices import PointStatus
from optimizer.errors import InfeasibleCase, OptimizerError
from optimizer.formulation.blas_threads import one_blas_thread
from optimizer.formulation.eligibility import check_cells
from optimizer.formulation.warm_start import WarmStart
from optimizer.result import Allocation
from optimizer.solve import optimize

SENSITIVITY_COLUMNS = (
    "input",
    "label",
    "direction",
    "factor",
    "setting",
    "weighted_gap_usd",
    "gap_closed_usd",
    "change_usd",
    "status",
    "reason",
)
DIRECTIONS = (("low", -1.0), ("high", 1.0))
SOLVED = ("optimal", "optimal_inaccurate")


# --- the result -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Sensitivity:
    """The optimal weighted gap with each input set low and high, against the base case.

    Attributes
    ----------
    table : DataFrame
        One row per input x direction (inputs in :data:`INPUT_IDS` order, ``low`` then
        ``high``), columns :data:`SENSITIVITY_COLUMNS`: ``factor`` the multiplier applied,
        ``setting`` what the perturbed value is, ``weighted_gap_usd`` the stage-1 optimum
        ``Σ_k w_k unmet_k`` (US$), ``gap_closed_usd`` credit reaching segments (US$),
        ``change_usd = weighted_gap_usd − base_weighted_gap_usd`` (positive: more gap left
        unmet), ``status`` ``"optimal"``, ``"optimal_inaccurate"``, ``"infeasible"``,
        ``"failed"`` or ``"invalid"`` (the perturbed case fails validation) and ``reason``.
        Money columns are NaN where the point did not solve.
    base_weighted_gap_usd, base_gap_closed_usd : float
        The unperturbed case on the same scenarios.
    shock : float
        Relative perturbation: factors are ``1 − shock`` and ``1 + shock``.
    case_name : str
    n_scenarios, seed : int
    method : str
        Sampling method.
    """

    table: pd.DataFrame
    base_weighted_gap_usd: float
    base_gap_closed_usd: float
    shock: float
    case_name: str
    n_scenarios: int
    seed: int
    method: str

    def __post_init__(self) -> None:
        # a table read back from JSON has None where a point did not solve: make it NaN again
        money = ["factor", "weighted_gap_usd", "gap_closed_usd", "change_usd"]
        table = self.table.astype({c: float for c in money}).fillna({"reason": ""})
        object.__setattr__(self, "table", table.reset_index(drop=True))

    @property
    def tornado(self) -> pd.DataFrame:
        """One row per input (table order): ``label``, ``low_setting``, ``high_setting``,
        ``low_change_usd``, ``high_change_usd`` (NaN where the point did not solve),
        ``swing_usd`` (largest absolute change) and ``note`` (why a point has no value)."""
        rows = []
        for input_id, grp in self.table.groupby("input", sort=False):
            by = grp.set_index("direction")
            notes = [
                f"{d}: {by.at[d, 'status']} ({by.at[d, 'reason']})"
                for d in ("low", "high")
                if d in by.index and by.at[d, "status"] not in SOLVED
            ]
            lo = float(by.at["low", "change_usd"]) if "low" in by.index else math.nan
            hi = float(by.at["high", "change_usd"]) if "high" in by.index else math.nan
            swing = max((abs(v) for v in (lo, hi) if not math.isnan(v)), default=math.nan)
            rows.append(
                {
                    "input": input_id,
                    "label": grp["label"].iloc[0],
                    "low_setting": by.at["low", "setting"] if "low" in by.index else "",
                    "high_setting": by.at["high", "setting"] if "high" in by.index else "",
                    "low_change_usd": lo,
                    "high_change_usd": hi,
                    "swing_usd": swing,
                    "note": "; ".join(notes),
                }
            )
        return pd.DataFrame(rows)


def _simulate_and_optimize(
    case: Case,
    n: int,
    seed: int,
    method: str,
    dtype: str = "float64",
    solve: str = "auto",
    start: WarmStart | None = None,
    scenarios: ScenarioSet | None = None,
) -> Allocation:
    """One point, the base included, as a function of its arguments alone.

    On one BLAS thread: the last digits of some products depend on the thread count, which differs
    between this process, a loky worker and a dask worker (see
    :func:`optimizer.formulation.blas_threads.one_blas_thread`). Nothing else is carried between
    points: each builds and solves its own problem, from the base's warm start when there is one
    (its cuts where the point's scenarios are the base's, cuts at its optimum where a risk input
    moved them: :mod:`optimizer.formulation.warm_start`), on ``scenarios`` when given (the base's
    set, for an input that leaves the losses as they are) instead of a re-draw.
    """
    with one_blas_thread():
        if scenarios is None:
            scenarios = simulate(case, n, seed=seed, method=method, dtype=dtype)
        return optimize(case, scenarios, method=solve, start=start)


def _solve_point(
    case: Case,
    n: int,
    seed: int,
    method: str,
    dtype: str,
    solve: str,
    start: WarmStart | None,
    base_scenarios: ScenarioSet | None,
    input_id: str,
    direction: str,
    factor: float,
) -> dict[str, Any]:
    """Perturb, simulate (same seed) and optimise one point; failures become a status."""
    row: dict[str, Any] = {
        "input": input_id,
        "label": INPUTS_BY_ID[input_id].label,
        "direction": direction,
        "factor": float(factor),
        "setting": "",
        "reason": "",
    }
    try:
        point, row["setting"] = perturbed_case(case, input_id, factor)
        same = None if INPUTS_BY_ID[input_id].moves_risk else base_scenarios
        res = _simulate_and_optimize(point, n, seed, method, dtype, solve, start, same)
    except InvalidPerturbation as exc:
        return {**row, "status": PointStatus.invalid.value, "reason": str(exc)}
    except InfeasibleCase as exc:
        return {**row, "status": PointStatus.infeasible.value, "reason": str(exc)}
    except OptimizerError as exc:
        return {**row, "status": PointStatus.failed.value, "reason": str(exc)}
    return {
        **row,
        "weighted_gap_usd": res.objective_weighted_gap_usd,
        "gap_closed_usd": res.gap_closed_usd,
        "status": res.status,
    }


def _check(shock: object, n_jobs: object, inputs: list[str] | None, case: Case) -> list[str]:
    # 0 would perturb nothing and 1 sets every input to zero (money, PDs, limits): neither is
    # a sensitivity, and anything outside (0, 1) is a typo (20 for 0.2) or a negative factor
    if isinstance(shock, bool) or not isinstance(shock, int | float) or not 0 < shock < 1:
        raise OptionError(f"shock must be a number in (0, 1) (0.2 = ±20 %), got {shock!r}")
    check_n_jobs(n_jobs)
    return _check_inputs(inputs, case)


def _check_inputs(inputs: list[str] | None, case: Case) -> list[str]:
    """The chosen input ids in table order, or ValueError naming the valid ones."""
    if inputs is None:
        return [i.id for i in INPUTS if i.applies(case)]
    unknown = [i for i in inputs if i not in INPUTS_BY_ID]
    if unknown or not inputs:
        raise OptionError(f"inputs {unknown or '[]'}: choose from {', '.join(INPUT_IDS)}")
    idle = [i for i in inputs if not INPUTS_BY_ID[i].applies(case)]
    if idle:
        raise OptionError(f"inputs {idle}: case {case.name!r} has nothing to perturb there")
    return [i for i in INPUT_IDS if i in inputs]  # table order, each once


def sensitivity(
    case: Case,
    n_scenarios: int = DEFAULT_SCENARIOS,
    seed: int = 7,
    inputs: list[str] | None = None,
    shock: float = 0.2,
    method: str = DEFAULT_SAMPLING,
    n_jobs: int = 1,
    scheduler: str | None = None,
    on_point: Callable[[int], None] | None = None,
    *,
    dtype: str = "float64",
    optimize_method: str = "auto",
    base: Allocation | None = None,
    scenarios: ScenarioSet | None = None,
) -> Sensitivity:
    """Re-optimise the case with each input set ``1 ∓ shock`` times its value, one at a time.

    Parameters
    ----------
    case : Case
    n_scenarios, seed, method
        Every point is simulated with these (common random numbers with the base case).
    inputs : list of str, optional
        Ids from :data:`INPUT_IDS`: ``pd``, ``lgd``, ``correlation``, ``event_probability``,
        ``amount_public``, ``amount_private``, ``amount_climate``, ``cvar_limit``. Default:
        every input the case has something to perturb for.
    shock : float in (0, 1)
        Relative perturbation (0.2: ±20 %).
    n_jobs : int
        Points solved in parallel (loky processes); -1 for all cores. Results do not depend
        on it, bit for bit: every point, the base included, is simulated and solved on its
        own, on one BLAS thread (:func:`optimizer.formulation.blas_threads.one_blas_thread`).
    scheduler : str, optional
        A dask.distributed scheduler address (``tcp://host:port``): points run on that cluster
        (on all its worker threads, whatever ``n_jobs``).
    on_point : callable, optional
        Called with the number of points finished (the base counts as one) after each.
    dtype : {"float64", "float32"}
        Loss-matrix precision of every point's scenario set.
    optimize_method : {"auto", "lp", "cutting_plane"}
        Passed to :func:`optimizer.optimize` at every point.
    base : Allocation, optional
        The unperturbed case already optimised on ``n_scenarios`` scenarios of ``seed``
        (``method``, ``dtype``): the headline of a run. It is the base of every change, so the
        tornado starts from the figure the committee reads; default: solved here. Its
        ``warm_start`` starts every point's cut loop (:mod:`optimizer.formulation.warm_start`).
    scenarios : ScenarioSet, optional
        The base's scenario set (``n_scenarios`` of ``seed`` at ``dtype``, drawn for this case's
        risk model): the points of inputs that leave the losses as they are (money, limits)
        are solved on it instead of re-drawing it (the same set, bit for bit: the draw is a
        function of the risk inputs and the seed), and the base too when none is given.

    Returns
    -------
    Sensitivity

    Raises
    ------
    ValueError
        Bad ``shock``, ``n_jobs`` or an unknown input, or a ``base`` of another case or
        scenario count.
    InfeasibleCase, SolverFailure
        The unperturbed case itself does not solve.
    SimulationError
        A ``scheduler`` without dask.distributed installed, or unreachable.
    WorkersLost
        Worker processes kept dying (a loky pool broken twice, or dask gave up on a point).
    """
    chosen = _check(shock, n_jobs, inputs, case)
    if scenarios is not None:
        _check_base_scenarios(case, scenarios, n_scenarios, seed, method, dtype)
    if base is None:
        # the base is the reference of every change: if it does not solve, its error is the
        # answer
        base = _simulate_and_optimize(
            case, n_scenarios, seed, method, dtype, optimize_method, scenarios=scenarios
        )
    elif base.case_name != case.name or base.n_scenarios != n_scenarios:
        raise OptionError(
            f"base: an allocation of case {base.case_name!r} on {base.n_scenarios:,} scenarios, "
            f"not of {case.name!r} on {n_scenarios:,}: pass the allocation of this sweep's case "
            "and scenario set, or none"
        )
    done = 1
    if on_point:
        on_point(done)
    points = [(i, d, 1.0 + sign * float(shock)) for i in chosen for d, sign in DIRECTIONS]

    def describe(k: int) -> str:
        return f"sensitivity points {k + 1} to {len(points)} (from {points[k][0]} {points[k][1]})"

    rows = []
    backend = backend_for(scheduler)
    tasks = run_in_order(
        _solve_point,
        (case, n_scenarios, seed, method, dtype, optimize_method, base.warm_start, scenarios),
        points,
        backend,
        n_jobs,
        scheduler,
        describe,
    )
    with closing(tasks):  # a stopped sweep cancels the points still queued
        for row in tasks:  # ordered: row k is points[k] whatever the workers
            rows.append(row)
            done += 1
            if on_point:
                on_point(done)
    table = pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
    table["change_usd"] = table["weighted_gap_usd"].astype(float) - base.objective_weighted_gap_usd
    return Sensitivity(
        table=table,
        base_weighted_gap_usd=float(base.objective_weighted_gap_usd),
        base_gap_closed_usd=float(base.gap_closed_usd),
        shock=float(shock),
        case_name=case.name,
        n_scenarios=int(n_scenarios),
        seed=int(seed),
        method=str(method),
    )


def _check_base_scenarios(
    case: Case, scenarios: ScenarioSet, n_scenarios: int, seed: int, method: str, dtype: str
) -> None:
    """The given base set is the one the sweep would draw: count, seed, sampling method
    (plain Monte Carlo where importance sampling fell back), precision and cells."""
    drawn = scenarios.method
    if (scenarios.metadata.get("importance") or {}).get("fallback"):
        drawn = "importance"
    facts = (
        ("n_scenarios", scenarios.n_scenarios, int(n_scenarios)),
        ("seed", scenarios.seed, int(seed)),
        ("method", drawn, str(method)),
        ("dtype", str(scenarios.losses.dtype), str(dtype)),
    )
    for name, got, want in facts:
        if got != want:
            raise OptionError(
                f"scenarios: {name} {got!r}, but the sweep draws {want!r}: pass the base's own "
                "scenario set, or none"
            )
    check_cells(case, scenarios)


def sensitivity_points(case: Case, inputs: list[str] | None = None) -> int:
    """How many optimisations :func:`sensitivity` runs (the base plus two per input)."""
    return 1 + 2 * len(_check_inputs(inputs, case))
