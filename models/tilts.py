"""The importance-sampling tilts a caller asks ``simulate`` for: stored unchanged, then checked.

:class:`TailTilt`, the default, aims at the tail of a book's loss; its shift is found by the
cross-entropy search of :mod:`models.importance`, which turns a tilt into the plan every chunk
applies. :class:`Tilt` is the fixed macro-only shift of earlier versions. Each validates its
fields (``check``), names the tail its weights are checked on (``tail``, for
:mod:`models.tail_check`) and describes itself as metadata (``describe``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import SimulationOptionError

__all__ = ["TailTilt", "Tilt", "book_exposure"]


def _tilted_events(p: np.ndarray, scale: float, cap: float) -> np.ndarray:
    """Event sampling probabilities min(max(p, scale·p), cap), shape of ``p``."""
    tilted = np.minimum(np.maximum(p, scale * p), cap)
    # never tilt certain, impossible or already-frequent events
    return np.where((p <= 0.0) | (p >= cap), p, tilted)


_EVENT_FIELDS = {
    "event_scale": (lambda v: v >= 1.0, ">= 1"),
    "event_cap": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
}


def _check_fields(tilt: object, **bounds: tuple[Callable[[float], bool], str]) -> None:
    """Refuse a field of ``tilt`` that is not a real number inside its bounds (NaN never is)."""
    for name, (ok, valid) in bounds.items():
        value = getattr(tilt, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(value):
            kind = type(tilt).__name__
            raise SimulationOptionError(f"{kind}.{name} must be a number {valid}, got {value!r}")


@dataclass(frozen=True)
class Tilt:
    """A fixed tilt: the macro factor alone shifted, a pure shift (no defensive mixture).

    The tilt of earlier versions, kept as a reference: it ignores the chain and region factors,
    so for a book whose correlation is not on the macro factor it only adds noise. Its tail is
    checked at 99.9 % of the equal-weighted book.

    Attributes
    ----------
    macro_shift : float
        Mean of the macro factor under the sampling measure (negative = downturn).
    event_scale : float
        Event probabilities are sampled at min(max(p, scale·p), event_cap).
    event_cap : float
    """

    macro_shift: float = -1.0
    event_scale: float = 3.0
    event_cap: float = 0.5

    def event_probability(self, p: np.ndarray) -> np.ndarray:
        """Sampling probabilities q of shape (E,) for model probabilities ``p`` (E,)."""
        return _tilted_events(p, self.event_scale, self.event_cap)

    def check(self) -> None:
        """Validate the settings.

        Raises
        ------
        SimulationError
            Naming the field, the value and what would be valid.
        """
        finite = (lambda v: np.isfinite(v), "other than inf and nan")
        _check_fields(self, macro_shift=finite, **_EVENT_FIELDS)

    def tail(self, n_cells: int) -> tuple[float, np.ndarray]:
        """The tail checked, α and book weights (n_cells,): 99.9 % of the equal-weighted book."""
        return TailTilt.alpha, book_exposure(None, n_cells)

    def describe(self) -> dict[str, float]:
        """The settings as JSON-ready metadata."""
        return {
            "macro_shift": self.macro_shift,
            "event_scale": self.event_scale,
            "event_cap": self.event_cap,
        }


@dataclass(frozen=True, eq=False)
class TailTilt:
    """Importance sampling aimed at the tail of a book's loss (the default of ``simulate``).

    Stored unchanged; :meth:`check` validates against the case.

    Attributes
    ----------
    alpha : float
        Target quantile level of the book loss, in (0, 1); default 0.999.
    exposure : array_like of shape (n_cells,), optional
        Amount lent in each cell (any unit); the book loss is ``losses @ exposure``. Default
        equal weights. The optimizer can pass the binding funders' exposures.
    defensive_share : float
        Share λ in [0, 1) of scenarios whose factors are not shifted; 0 is the pure shift.
    event_scale, event_cap : float
        The first pilot samples events at min(max(p, scale·p), cap); the run's q are then found
        by cross-entropy (``metadata["tilt"]["event_probability"]``).
    """

    alpha: float = 0.999
    exposure: npt.ArrayLike | None = None
    defensive_share: float = 0.5
    event_scale: float = 3.0
    event_cap: float = 0.5

    def event_probability(self, p: np.ndarray) -> np.ndarray:
        """Sampling probabilities q of shape (E,) for model probabilities ``p`` (E,)."""
        return _tilted_events(p, self.event_scale, self.event_cap)

    def check(self, n_cells: int) -> np.ndarray:
        """Validate for a case of ``n_cells`` cells; return the book weights, (n_cells,).

        Raises
        ------
        SimulationError
            Naming the field, the value and what would be valid.
        """
        _check_fields(
            self,
            alpha=(lambda v: 0.0 < v < 1.0, "in (0, 1)"),
            defensive_share=(lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
            **_EVENT_FIELDS,
        )
        return book_exposure(self.exposure, n_cells)

    def tail(self, n_cells: int) -> tuple[float, np.ndarray]:
        """The tail checked, α and book weights (n_cells,), validated as :meth:`check`."""
        return float(self.alpha), self.check(n_cells)

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-ready metadata."""
        return {
            "kind": "tail",
            "alpha": float(self.alpha),
            "defensive_share": float(self.defensive_share),
            "event_scale": float(self.event_scale),
            "event_cap": float(self.event_cap),
            "exposure": "equal" if self.exposure is None else "given",
        }


def book_exposure(exposure: npt.ArrayLike | None, n_cells: int) -> np.ndarray:
    """Per-cell weights of the book loss, (n_cells,): ``exposure`` checked, or 1/n_cells each.

    Raises
    ------
    SimulationError
        Not one finite, non-negative number per cell with a positive sum.
    """
    if exposure is None:
        return np.full(n_cells, 1.0 / n_cells)
    try:
        x = np.asarray(exposure, dtype=np.float64)
    except (TypeError, ValueError):
        raise SimulationOptionError(f"exposure must be numbers, got {exposure!r:.60}") from None
    if x.shape != (n_cells,):
        raise SimulationOptionError(
            f"exposure must have one value per cell ({n_cells}), got {x.shape}"
        )
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise SimulationOptionError(f"exposure must be finite and >= 0, got {x[i]} at cell {i}")
    if not x.sum() > 0:
        raise SimulationOptionError("exposure must be positive in at least one cell, got all zeros")
    return x
