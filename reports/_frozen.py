"""Setting the fields of a frozen dataclass from its ``__post_init__``, for the report's sections.

:func:`_set` sets a field past the frozen dataclass's guard (to the copy a section keeps: a
dict, a tuple, a :class:`~reports.formats.ColumnFormat`); :func:`_array` makes a field a
read-only float array. The sections of :class:`~reports.context.ReportContext` normalise their
data with them once, at the door.
"""

from __future__ import annotations

import numpy as np


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _array(obj: object, name: str) -> np.ndarray:
    arr = np.asarray(getattr(obj, name), dtype=float)
    arr.setflags(write=False)
    _set(obj, name, arr)
    return arr
