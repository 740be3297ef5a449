"""The one check of each kind of option: a choice among an enum's values, a worker count.

Every layer refuses a bad option the same way, with an :class:`~models.errors.OptionError`
(or the caller's subclass of it) that names the option, the value and what is valid.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

import numpy as np

from models.errors import OptionError

__all__ = ["check_choice", "check_n_jobs"]

E = TypeVar("E", bound=StrEnum)


def check_choice(
    value: object, choices: type[E], what: str, error: type[OptionError] = OptionError
) -> E:
    """``value`` as a member of ``choices``, or ``error`` naming ``what`` and the valid values.

    A command-line flag (``what`` starting ``--``) is refused in the command line's words,
    ``--sampling 'x': choose from ...``; an argument as ``method must be one of ..., got 'x'``.
    The value is shown as its repr, cut at 60 characters (user text, escaped by the caller's
    console).

    Examples
    --------
    >>> from models.workers import Backend
    >>> check_choice("dask", Backend, "backend")
    <Backend.dask: 'dask'>
    """
    try:
        return choices(value)
    except ValueError:
        valid = ", ".join(c.value for c in choices)
        shown = f"{value!r:.60}"
        if what.startswith("--"):
            raise error(f"{what} {shown}: choose from {valid}") from None
        raise error(f"{what} must be one of {valid}, got {shown}") from None


def check_n_jobs(n_jobs: object) -> int:
    """``n_jobs`` as an int, or an :class:`~models.errors.OptionError` saying what is valid.

    The one check of every ``n_jobs`` (simulate, frontier, marginal values, sensitivity):
    a positive integer (numpy's too), or -1 for one worker per core.

    Examples
    --------
    >>> check_n_jobs(-1)
    -1
    """
    integer = isinstance(n_jobs, int | np.integer) and not isinstance(n_jobs, bool)
    if not integer or (n_jobs < 1 and n_jobs != -1):  # type: ignore[operator]
        raise OptionError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    return int(n_jobs)
