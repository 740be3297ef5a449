"""How every scenario set of one run is drawn: the simulation recipe, built once at the door.

A run draws several sets (the headline, its validation and out-of-sample sets, the stresses'
and the replications' re-draws) that differ only by seed; everything else (count, sampling
method, loss precision, workers) is the one :class:`Recipe` the command line or a Python caller
builds and passes down, so no step can draw with other settings than its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.scenarios import DEFAULT_SAMPLING, DEFAULT_SCENARIOS, ScenarioSet
from models.schema import Case
from models.workers import Backend, backend_for

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """Count, seed, sampling method, precision and workers of a run's scenario sets.

    Parameters
    ----------
    n_scenarios : int
        Scenarios per set, in ``[1, MAX_SCENARIOS]``.
    seed : int
        The headline's seed (>= 0); other sets add their offset (:meth:`draw`).
    sampling : str
        :class:`models.Method` value: ``mc``, ``antithetic``, ``sobol`` or ``importance``.
    dtype : {"float64", "float32"}
        Loss-matrix precision.
    n_jobs : int
        Local workers (-1: all cores); ignored on a dask cluster.
    scheduler : str, optional
        A dask.distributed scheduler address: the sets are drawn on that cluster.

    Raises
    ------
    SimulationOptionError
        A field out of range, naming it and what is valid (checked as :func:`models.simulate`
        checks its arguments, before anything is drawn).
    """

    n_scenarios: int = DEFAULT_SCENARIOS
    seed: int = 7
    sampling: str = DEFAULT_SAMPLING
    dtype: str = "float64"
    n_jobs: int = 1
    scheduler: str | None = None

    def __post_init__(self) -> None:
        from models.simulate import check_arguments, check_dtype

        method, _ = check_arguments(
            self.n_scenarios, self.seed, self.sampling, self.n_jobs, self.backend
        )
        object.__setattr__(self, "sampling", method.value)
        object.__setattr__(self, "dtype", str(check_dtype(self.dtype)))

    @property
    def backend(self) -> Backend:
        """Where the draws run: the scheduler's cluster, or local loky processes."""
        return backend_for(self.scheduler)

    def draw(self, case: Case, seed_offset: int = 0) -> ScenarioSet:
        """The case's scenario set at ``seed + seed_offset``, every other setting the recipe's.

        Returns
        -------
        ScenarioSet
            Losses of shape (n_scenarios, n_cells) in the recipe's dtype.
        """
        from models.simulate import simulate

        return simulate(
            case,
            self.n_scenarios,
            seed=self.seed + seed_offset,
            method=self.sampling,
            n_jobs=self.n_jobs,
            backend=self.backend,
            scheduler=self.scheduler,
            dtype=self.dtype,
        )
