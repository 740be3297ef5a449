"""The files of a results folder, validated at the door like a case: result.json, run.json, timings.json.

Every file is read into a strict pydantic model first: each key present, of its type, numbers
finite where a number is needed, tables rectangular with the columns their readers use (text,
numbers, flags), ids unique where they are looked up. Anything else is one
:class:`SavedRunError` naming the file, the field and what is wrong, never a ``KeyError`` from
deep inside a report. Tables are JSON in pandas' ``split`` layout; ``null`` in a ``number``
column is a missing value (NaN). Where the report needs a number (or a non-negative amount, a
level in (0, 1)), the column says so, so that a folder that loads also renders. The columns
are in :mod:`optimizer.saved_columns`, the checks against a case in :mod:`optimizer.saved_case`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)

from optimizer.persist import SplitFrame, StrictModel, table, wrapped
from optimizer.saved_case import check_ids, made_from  # noqa: F401 (optimizer.door.run's import)
from optimizer.saved_columns import (
    ALLOCATION_COLUMNS,
    COVER_PREFIX,
    EVALUATION_COLUMNS,
    FRONTIER_SAVED_COLUMNS,
    MARGIN_SAVED_COLUMNS,
    REPLICATION_SAVED_COLUMNS,
    SENSITIVITY_SAVED_COLUMNS,
    UNIQUE_KEYS,
)

RUN_FORMAT_VERSION = 4
"""run.json: 2 stores the case file's absolute path and leaves timings to timings.json; 3 adds
``analyses``, the scenario set behind each analysis."""
TIMINGS_FORMAT_VERSION = 1


def _result_table(name: str, **options: Any) -> Any:
    return table(
        name, ALLOCATION_COLUMNS[name], dtypes=True, key=UNIQUE_KEYS.get(name, ()), **options
    )


def _run_table(name: str, columns: dict[str, str], **options: Any) -> type[StrictModel]:
    return wrapped(name, columns, key=UNIQUE_KEYS.get(name, ()), **options)


# --- scalar types ----------------------------------------------------------------------------
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
PositiveCount = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ScenarioMethod = Literal["mc", "antithetic", "sobol", "importance"]


def _absolute(path: str | None) -> str | None:
    if path is not None and not Path(path).is_absolute():
        raise ValueError(f"{path!r} is not an absolute path (format 2 stores it resolved)")
    return path


def _sweep(sweep: str) -> str:
    from optimizer.analysis.frontier_spec import sweep_kind  # imported when a run.json is read

    sweep_kind(sweep)  # ValueError naming the valid sweeps
    return sweep


def _frontier_rows(table: SplitFrame) -> SplitFrame:
    """A point that did not fail has its optimum (the chart plots it)."""
    from optimizer.choices import FAILED_STATUSES

    status, gap = (table.columns.index(c) for c in ("status", "weighted_gap_usd"))
    for i, row in enumerate(table.data):
        if row[gap] is None and row[status] not in FAILED_STATUSES:
            raise ValueError(
                f"row {i}: weighted_gap_usd is null but status {row[status]!r} is not one of "
                f"{list(FAILED_STATUSES)}"
            )
    return table


def _sensitivity_rows(table: SplitFrame) -> SplitFrame:
    """The tornado looks rows up by (input, direction): known ones, each once."""
    from optimizer.analysis.sensitivity_analysis import DIRECTIONS, INPUT_IDS  # not for result.json

    at = {c: table.columns.index(c) for c in ("input", "direction")}
    pairs = [(row[at["input"]], row[at["direction"]]) for row in table.data]
    bad = [p for p in pairs if p[0] not in INPUT_IDS or p[1] not in dict(DIRECTIONS)]
    if bad or len(set(pairs)) != len(pairs):
        raise ValueError(
            f"rows must be distinct (input, direction) pairs of inputs {list(INPUT_IDS)} and "
            f"directions {[d for d, _ in DIRECTIONS]}; got {bad[:1] or 'a repeated pair'}"
        )
    return table


# --- the files -------------------------------------------------------------------------------
class ConfidenceFile(StrictModel):
    """result.json's ``confidence``: :class:`optimizer.analysis.confidence.LimitConfidence`."""

    confidence: Annotated[FiniteFloat, Field(ge=0.5, lt=1.0)]
    z: FiniteFloat
    solves: Count
    converged: StrictBool
    margins: table("margins", MARGIN_SAVED_COLUMNS, dtypes=True)  # type: ignore[valid-type]
    unmargined_weighted_gap_usd: FiniteFloat
    unmargined_gap_closed_usd: FiniteFloat
    cost_weighted_gap_usd: FiniteFloat
    cost_gap_closed_usd: FiniteFloat
    validation_seed: Count | None = None
    validation_n_scenarios: PositiveCount | None = None

    def build_confidence(self) -> Any:
        """The :class:`~optimizer.analysis.confidence.LimitConfidence` this entry holds.

        Its margins table has the columns of :data:`~optimizer.analysis.margins.MARGIN_COLUMNS`: the
        validation columns a file from before them lacks read as not measured (NaN).
        """
        from optimizer.analysis.confidence import LimitConfidence
        from optimizer.analysis.margins import MARGIN_COLUMNS

        values = {name: getattr(self, name) for name in type(self).model_fields}
        # a file from before the validation columns: they read as not measured (NaN)
        margins = self.margins.frame(MARGIN_SAVED_COLUMNS)
        values["margins"] = margins.reindex(columns=list(MARGIN_COLUMNS))
        return LimitConfidence(**values)


class ResultFile(StrictModel):
    """result.json: :meth:`optimizer.result.Allocation.to_json`."""

    format_version: Literal[3]
    allocation: _result_table("allocation", prefix=COVER_PREFIX)  # type: ignore[valid-type]
    guarantees: _result_table("guarantees")  # type: ignore[valid-type]
    segments: _result_table("segments")  # type: ignore[valid-type]
    regions: _result_table("regions")  # type: ignore[valid-type]
    chains: _result_table("chains")  # type: ignore[valid-type]
    sources: _result_table("sources")  # type: ignore[valid-type]
    funds: _result_table("funds")  # type: ignore[valid-type]
    binding: _result_table("binding")  # type: ignore[valid-type]
    euler: _result_table("euler")  # type: ignore[valid-type]
    objective_weighted_gap_usd: FiniteFloat
    weighted_gap_usd: FiniteFloat
    unmet_gap_usd: FiniteFloat
    gap_closed_usd: Annotated[FiniteFloat, Field(ge=0)]
    gap_closed_share: FiniteFloat | None
    solver: Text
    status: Literal["optimal", "optimal_inaccurate"]
    fallbacks: list[StrictStr]
    warnings: list[StrictStr]
    n_scenarios: PositiveCount
    case_name: Text
    case_sha256: Sha256 | None
    method: Literal["lp", "cutting_plane"]
    confidence: ConfidenceFile | None


class EvaluationFile(StrictModel):
    """An :class:`optimizer.analysis.evaluate.Evaluation` inside run.json."""

    tables: ClassVar[dict[str, dict[str, str]]] = EVALUATION_COLUMNS

    sources: _run_table("sources", EVALUATION_COLUMNS["sources"])  # type: ignore[valid-type]
    funds: _run_table("funds", EVALUATION_COLUMNS["funds"], bare=True)  # type: ignore[valid-type]
    chains: _run_table("chains", EVALUATION_COLUMNS["chains"])  # type: ignore[valid-type]
    checks: _run_table("checks", EVALUATION_COLUMNS["checks"])  # type: ignore[valid-type]
    breaches: _run_table("breaches", EVALUATION_COLUMNS["breaches"])  # type: ignore[valid-type]
    case_name: Text
    n_scenarios: PositiveCount
    effective_sample_size: Annotated[FiniteFloat, Field(gt=0)]
    method: Text
    seed: Count
    lending_usd: Annotated[FiniteFloat, Field(ge=0)]
    gap_closed_usd: Annotated[FiniteFloat, Field(ge=0)]
    unmet_gap_usd: Annotated[FiniteFloat, Field(ge=0)]
    weighted_gap_usd: Annotated[FiniteFloat, Field(ge=0)]
    money_withdrawn_usd: Annotated[FiniteFloat, Field(ge=0)]
    cover_withdrawn_usd: Annotated[FiniteFloat, Field(ge=0)]
    lending_withdrawn_usd: Annotated[FiniteFloat, Field(ge=0)]


class FrontierFile(StrictModel):
    """An :class:`optimizer.analysis.frontier.Frontier` inside run.json (without point timings)."""

    tables: ClassVar[dict[str, dict[str, str]]] = {"table": FRONTIER_SAVED_COLUMNS}

    sweep: Annotated[StrictStr, AfterValidator(_sweep)]
    label: StrictStr
    table: _run_table("frontier", FRONTIER_SAVED_COLUMNS, rows=_frontier_rows)  # type: ignore[valid-type]
    compiled_once: StrictBool
    method: Literal["lp", "cutting_plane"]
    # workers and compilations depend on --jobs, not on the case: they are in timings.json


class SensitivityFile(StrictModel):
    """An :class:`optimizer.analysis.sensitivity_analysis.Sensitivity` inside run.json."""

    tables: ClassVar[dict[str, dict[str, str]]] = {"table": SENSITIVITY_SAVED_COLUMNS}

    table: _run_table("sensitivity", SENSITIVITY_SAVED_COLUMNS, rows=_sensitivity_rows)  # type: ignore[valid-type]
    base_weighted_gap_usd: FiniteFloat
    base_gap_closed_usd: FiniteFloat
    shock: Annotated[FiniteFloat, Field(ge=0)]
    case_name: Text
    n_scenarios: PositiveCount
    seed: Count
    method: Text


class ReplicationsFile(StrictModel):
    """An :class:`optimizer.analysis.replicate.Replications` inside run.json (null statistics: NaN,
    as when fewer than two replications solved)."""

    tables: ClassVar[dict[str, dict[str, str]]] = {"table": REPLICATION_SAVED_COLUMNS}

    table: _run_table("replications", REPLICATION_SAVED_COLUMNS)  # type: ignore[valid-type]
    gap_closed_usd: FiniteFloat | None
    gap_closed_se_usd: FiniteFloat | None
    weighted_gap_closed_usd: FiniteFloat | None
    weighted_gap_closed_se_usd: FiniteFloat | None
    mean_se_usd: FiniteFloat | None
    target_relative_se: Annotated[FiniteFloat, Field(gt=0)]
    advised_n_scenarios: Count
    advised_weighted_n_scenarios: Count
    n_scenarios: PositiveCount
    seed: Count
    replications: PositiveCount
    solved: Count
    confidence: Annotated[FiniteFloat, Field(ge=0, lt=1)]

    def build(self, cls: type[Any]) -> Any:
        """The dataclass ``cls`` with these fields; null statistics become NaN.

        As :meth:`optimizer.persist.StrictModel.build`, which makes the tables typed DataFrames.
        """
        built = super().build(cls)
        nan = {
            k: float("nan") for k, v in type(self).model_fields.items() if getattr(self, k) is None
        }
        return dataclasses.replace(built, **nan) if nan else built


class StressFile(StrictModel):
    """A :class:`optimizer.analysis.stress_testing.StressOutcome` inside run.json."""

    stress_id: Text
    name: StrictStr
    description: StrictStr
    evaluation: EvaluationFile


class DrawFile(StrictModel):
    """One analysis's scenario set inside run.json (:class:`optimizer.door.run.Draw`)."""

    n_scenarios: PositiveCount
    seed: Count
    scenario_method: ScenarioMethod
    dtype: Literal["float64", "float32"]


class RunFile(StrictModel):
    """run.json: what ``ppcfin report`` needs besides result.json and scenarios.npz.

    Version 4: each evaluation carries the credit it evaluates, its gap figures and what a
    stressed case could not fund (the stresses count money)."""

    format_version: Literal[4]
    case_file: Annotated[StrictStr | None, AfterValidator(_absolute)]
    case_sha256: Sha256 | None
    seed: Count
    n_scenarios: PositiveCount
    scenario_method: ScenarioMethod
    out_of_sample: EvaluationFile | None
    frontier: FrontierFile | None
    sensitivity: SensitivityFile | None
    sensitivity_error: StrictStr
    stresses: list[StressFile]
    replications: ReplicationsFile | None
    analyses: dict[
        Literal["headline", "out_of_sample", "frontier", "sensitivity", "stresses", "replications"],
        DrawFile,
    ]

    @model_validator(mode="after")
    def _one_draw_per_analysis(self) -> RunFile:
        """``analyses`` names exactly the headline and the analyses the file holds."""
        held = {
            "headline": True,
            "out_of_sample": self.out_of_sample is not None,
            "frontier": self.frontier is not None,
            "sensitivity": self.sensitivity is not None,
            "stresses": bool(self.stresses),
            "replications": self.replications is not None,
        }
        want = {name for name, there in held.items() if there}
        if set(self.analyses) != want:
            missing, extra = sorted(want - set(self.analyses)), sorted(set(self.analyses) - want)
            raise ValueError(
                f"analyses must name the scenario set of exactly the analyses run.json holds: "
                f"missing {missing}, not held {extra}"
            )
        return self


class TimingsFile(BaseModel):
    """timings.json: how long each step took; the only file that differs between equal runs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    format_version: Literal[1]
    run_s: dict[str, Annotated[float, Field(ge=0)]]
    optimize_s: dict[str, int | float]
    frontier_points_s: list[float | None] | None
    frontier_workers: PositiveCount | None = None
    frontier_compilations: Count | None = None
