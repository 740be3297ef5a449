"""What every cut master runs with and starts from: HiGHS's settings, and a solved master's cuts.

:data:`MASTER_OPTIONS` (and :func:`master_options`, with a time limit) are the HiGHS options of
every :class:`~optimizer.formulation.cut_master.CutMaster`; :class:`CutPool` is what a solved
master hands another solve (:meth:`CutMaster.snapshot`, :meth:`CutMaster.start`, and the warm
starts of :mod:`optimizer.formulation.warm_start`). Importing this module takes HiGHS's banner
once, so that the command line's output stays clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _silence_highs_banner() -> None:
    """HiGHS prints a banner to C-level stdout on first use, before any option can silence it;
    take it once here, with stdout pointed at /dev/null, so CLI output stays clean."""
    import os
    import sys

    try:
        import highspy
    except ImportError:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_silence_highs_banner()

FEASIBILITY_TOL = 1e-9
"""The master's primal feasibility tolerance (US$m of η on a cut row): tight, so that small
cases (limits of a few US$ thousand) are held to 1e-6 of their limits too."""

# Measured on the default case (10^4-10^6 scenarios): with HiGHS's scaling on, the master's
# dense cut rows made the dual simplex slower; the cvxpy problem is already in US$ millions.
MASTER_OPTIONS = {
    "output_flag": False,
    "simplex_scale_strategy": 0,
    "primal_feasibility_tolerance": FEASIBILITY_TOL,
}


def master_options(time_limit_s: float | None = None) -> dict[str, object]:
    """:data:`MASTER_OPTIONS`, with HiGHS's time limit when one is given."""
    options: dict[str, object] = dict(MASTER_OPTIONS)
    if time_limit_s is not None:
        options["time_limit"] = float(time_limit_s)
    return options


@dataclass(frozen=True)
class CutPool:
    """The cuts of a solved master, to start another solve of the same compiled problem from.

    A cut bounds the tail function of the exposures alone, so it stays valid whatever the
    parameters (limits, amounts, objective): a changed problem solved from a base's pool needs
    only the cuts its own optimum adds. Taken by :meth:`CutMaster.snapshot`, put back by
    :meth:`CutMaster.start`. Nothing in it depends on what was solved after the base, so every
    solve started from one pool begins in the same state (a frontier's points on any number of
    workers).

    Attributes
    ----------
    rows : tuple of (measure, block, coefficients, tail probability)
        Cut rows loaded into the model: those binding at the base's optimum.
    pool : tuple of the same
        The other cuts: put back only when the master's point violates them.
    basis : (column statuses, row statuses) or None
        The base's optimal basis on the model with ``rows`` (HiGHS statuses), or None.
    """

    rows: tuple[tuple[int, int, np.ndarray, float], ...]
    pool: tuple[tuple[int, int, np.ndarray, float], ...]
    basis: tuple[tuple, tuple] | None
