"""Stress tests: a fixed allocation under shipped or user stress overlays, optionally re-optimised.

Each overlay is loaded through :func:`models.load_case` (it names its base case) and simulated
with the same seed as the base case: common random numbers, so a stress differs from the base
only by what it changes, and an overlay that changes nothing reproduces the base figures exactly.
:func:`stress` evaluates on each stressed set what the stressed case can still fund of the
allocation (:func:`optimizer.analysis.holdings.fundable`: a stress that removes money or uptake
scales the allocation down by a stated rule) — losses, limit breaches in US$ and in standard
errors, fund depletion, the gap left — and, with ``reoptimize``, solves the stressed case afresh
to show how much gap the structure would have to give up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from models import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, Case, Recipe, ScenarioSet, load_case
from models.errors import OptionError
from models.loader import DEFAULT_CASE
from models.yaml_io import CASE_SUFFIXES, ReadProblem, read_yaml
from optimizer.analysis.diagnose import optimize_or_diagnose
from optimizer.analysis.evaluate import Evaluation, evaluate
from optimizer.analysis.reverse_stress import reverse_stress
from optimizer.analysis.stress_report import (
    BASE_ID,
    LIMIT_COLUMNS,
    REOPTIMIZED_COLUMNS,
    SUMMARY_COLUMNS,
    StressOutcome,
    StressReport,
)
from optimizer.choices import PointStatus
from optimizer.errors import InfeasibleCase, OptimizerError
from optimizer.persist import SavedRunError
from optimizer.result import Allocation
from optimizer.saved_case import made_from

STRESS_DIR = DEFAULT_CASE.parent / "stress"
__all__ = [
    "BASE_ID",
    "LIMIT_COLUMNS",
    "REOPTIMIZED_COLUMNS",
    "STRESS_DIR",
    "SUMMARY_COLUMNS",
    "StressOutcome",
    "StressReport",
    "check_overlay",
    "read_allocation",
    "shipped_stresses",
    "stress",
    "stress_outcomes",
    "stress_steps",
]


def shipped_stresses() -> list[Path]:
    """The stress overlays shipped with the default case, in a fixed order."""
    return sorted(STRESS_DIR.glob("*.yaml"))


def _outcome(stressed: Case, path: Path, evaluation: Evaluation) -> StressOutcome:
    info = stressed.stress
    return StressOutcome(
        stress_id=info.id if info else path.stem,
        name=info.name if info else path.stem,
        description=info.description if info else "",
        evaluation=evaluation,
    )


def stress_outcomes(
    allocation: Allocation,
    overlays: list[Path],
    recipe: Recipe,
    on_step: Callable[[str], None] | None = None,
) -> tuple[StressOutcome, ...]:
    """Evaluate a fixed allocation under each overlay, each drawn with the base's ``recipe``
    (the same seed, count and dtype: common random numbers)."""
    out = []
    for path in overlays:
        stressed = load_case(path)
        if on_step:
            on_step(f"stress {stressed.stress.id if stressed.stress else path.stem}")
        scen = recipe.draw(stressed)
        out.append(_outcome(stressed, path, evaluate(stressed, allocation, scen, fund=True)))
    return tuple(out)


def read_allocation(path: str | Path, case: Case | None = None) -> Allocation:
    """An allocation saved by ``ppcfin optimize``/``run`` (``result.json``).

    Parameters
    ----------
    path : str or Path
    case : Case, optional
        The case it is to be used with: an allocation made from any other case (another
        ``content_sha256``) is refused.

    Raises
    ------
    SavedRunError
        A ``ValueError``: the file is missing, not JSON, not an allocation of this ppcfin's
        format (field and problem named), or made from another case than ``case``.
    """
    path = Path(path)
    source = f"allocation {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise SavedRunError(f"{source}: cannot read it ({reason})") from None
    allocation = Allocation.from_json(text, source)
    if case is not None:
        fix = (
            f"stress the case it was optimised for, or re-run `ppcfin optimize "
            f"{case.source_file or 'CASE'}` to get an allocation of this one"
        )
        made_from(allocation.case_name, allocation.case_sha256, case, source, fix)
    return allocation


def stress_steps(
    case: Case, n_stresses: int | None = None, reoptimize: bool = False, reverse: bool = False
) -> int:
    """How many steps :func:`stress` reports through ``on_step`` (for a progress bar)."""
    n = len(shipped_stresses()) if n_stresses is None else int(n_stresses)
    return 1 + n + (1 + n if reoptimize else 0) + int(reverse)


def check_overlay(case: Case, path: Path) -> Path:
    """Refuse an overlay that does not stress ``case`` (its ``base_case`` is another file).

    Raises
    ------
    ValueError
        ``path`` is missing, not an overlay, or changes a case other than ``case``'s file.
    """
    path = Path(path)
    try:
        raw = read_yaml(path, CASE_SUFFIXES)
    except ReadProblem as exc:
        raise OptionError(f"stress overlay {path}: {exc.message}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("base_case"), str):
        raise OptionError(
            f"stress overlay {path}: not an overlay (it needs base_case: naming the case it "
            "changes, stress: and changes:)"
        )
    base = (path.parent / raw["base_case"]).resolve()
    if case.source_file is None or base != Path(case.source_file).resolve():
        raise OptionError(
            f"stress overlay {path} changes {base}, not the case being stressed "
            f"({case.source_file or 'built in Python, no file'}); set its base_case to the "
            "case's file or stress that case"
        )
    return path


def _refuse_repeats(paths: list[Path], stressed: list[Case]) -> None:
    """The same overlay (or two with one stress id) given twice would count its breaches twice."""
    by_file: dict[Path, Path] = {}
    by_id: dict[str, Path] = {}
    for path, overlay in zip(paths, stressed, strict=True):
        real = path.resolve()
        if real in by_file:
            raise OptionError(
                f"stress overlay {path} is given twice (also as {by_file[real]}); give each "
                "stress once"
            )
        by_file[real] = path
        sid = overlay.stress.id if overlay.stress else None
        if sid is not None and sid in by_id:
            raise OptionError(
                f"stress overlays {by_id[sid]} and {path} have the same stress id {sid!r}; give "
                "each stress once, or one of them another id"
            )
        if sid is not None:
            by_id[sid] = path


def stress(
    case: Case,
    allocation: Allocation,
    stresses: list[str | Path] | None = None,
    n_scenarios: int = DEFAULT_SCENARIOS,
    seed: int = 7,
    method: str = DEFAULT_SAMPLING,
    reoptimize: bool = False,
    n_jobs: int = 1,
    scheduler: str | None = None,
    on_step: Callable[[int, str], None] | None = None,
    reverse: bool = False,
) -> StressReport:
    """A fixed allocation under each stress overlay, and what re-optimising would give up.

    Parameters
    ----------
    case : Case
        The base case, loaded from a file (overlays name their base case by file).
    allocation : Allocation
        The allocation to hold fixed (typically ``optimize(case, ...)``).
    stresses : list of path, optional
        Stress overlays whose ``base_case`` is ``case``'s file. Default: the six shipped ones
        (``inputs/stress/*.yaml``), which stress the shipped default case only.
    n_scenarios, seed, method
        Every set (base and stressed) is drawn with these: common random numbers.
    reoptimize : bool
        Also solve each stressed case (and the base case on the same scenarios) and report the
        optimal weighted gap, what it gives up against the base, or why it is infeasible.
    n_jobs, scheduler
        Passed to :func:`models.simulate`.
    reverse : bool
        Also the reverse stress (:func:`optimizer.analysis.reverse_stress.reverse_stress`)
        on the base scenarios: per binding risk limit of the allocation, the smallest PD
        multiplier and event probabilities that break it (one step more).
    on_step : callable, optional
        Called as ``on_step(steps_done, what_next)`` before each step (progress display); there
        are ``1 + len(stresses)`` steps, plus one per solve with ``reoptimize``.

    Returns
    -------
    StressReport

    Raises
    ------
    ValueError
        An overlay that does not stress ``case``, or no overlay for a case other than the
        default one.
    CaseError
        An overlay that is not a valid case once applied.
    """
    if allocation.case_name != case.name:
        raise OptionError(
            f"the allocation was made for case {allocation.case_name!r}, not {case.name!r}; "
            "stress the case it was optimised for"
        )
    if stresses is None:
        if case.source_file is None or Path(case.source_file).resolve() != DEFAULT_CASE:
            raise OptionError(
                "the shipped stress overlays stress the default case only; pass overlays whose "
                f"base_case is {case.source_file or 'your case file'}"
            )
        stresses = shipped_stresses()
    paths = [check_overlay(case, Path(p)) for p in stresses]
    stressed_cases = [load_case(p) for p in paths]  # every overlay checked before any work
    _refuse_repeats(paths, stressed_cases)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if on_step:
            on_step(done, what)
        done += 1

    step("simulate the base case")
    recipe = Recipe(n_scenarios, seed, method, n_jobs=n_jobs, scheduler=scheduler)
    base_scen = recipe.draw(case)
    baseline = evaluate(case, allocation, base_scen, fund=True)
    base_gap = base_closed = None
    if reoptimize:
        step("optimize the base case")
        base_opt = optimize_or_diagnose(case, base_scen)  # the base must solve: else raise
        base_gap, base_closed = base_opt.objective_weighted_gap_usd, base_opt.gap_closed_usd
    outcomes, rows = [], []
    for path, stressed in zip(paths, stressed_cases, strict=True):
        sid = stressed.stress.id if stressed.stress else path.stem
        step(f"stress {sid}")
        scen = recipe.draw(stressed)
        outcome = _outcome(stressed, path, evaluate(stressed, allocation, scen, fund=True))
        outcomes.append(outcome)
        if reoptimize:
            step(f"re-optimize {sid}")
            rows.append(_reoptimize(stressed, scen, outcome, base_gap, base_closed))
    reverse_table = None
    if reverse:
        step("reverse stress")
        reverse_table = reverse_stress(case, allocation, recipe, base_scen)
    if on_step:
        on_step(done, "done")
    return StressReport(
        baseline=baseline,
        outcomes=tuple(outcomes),
        reoptimized=pd.DataFrame(rows, columns=list(REOPTIMIZED_COLUMNS)) if reoptimize else None,
        base_weighted_gap_usd=base_gap,
        base_gap_closed_usd=base_closed,
        case_name=case.name,
        n_scenarios=int(n_scenarios),
        seed=int(seed),
        method=str(method),
        reverse=reverse_table,
    )


def _reoptimize(
    stressed: Case,
    scen: ScenarioSet,
    outcome: StressOutcome,
    base_gap: float | None,
    base_closed: float | None,
) -> dict:
    row = {"stress_id": outcome.stress_id, "name": outcome.name}
    try:
        res = optimize_or_diagnose(stressed, scen)
    except InfeasibleCase as exc:
        messages = getattr(exc.diagnosis, "messages", ())
        reason = "; ".join(messages) if messages else str(exc)
        return {
            **row,
            "status": PointStatus.infeasible.value,
            "reason": f"infeasible under the stress: {reason}",
        }
    except OptimizerError as exc:
        return {**row, "status": PointStatus.failed.value, "reason": str(exc)}
    gap, closed = res.objective_weighted_gap_usd, res.gap_closed_usd
    return {
        **row,
        "status": res.status,
        "weighted_gap_usd": gap,
        "gap_closed_usd": closed,
        "gives_up_usd": gap - base_gap if base_gap is not None else float("nan"),
        "gap_closed_change_usd": closed - base_closed if base_closed is not None else float("nan"),
        "reason": "",
    }
