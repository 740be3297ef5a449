"""The check of an importance-sampled tail: how many scenarios it rests on, and the fallback.

The check (:func:`tail_diagnostic`), over the scenarios at or above the weighted α-VaR of the book
loss: the tail's effective size (Σw)²/Σw² and the share of its probability carried by its largest
weight. Below :data:`MIN_TAIL_ESS` = 30 effective scenarios, or above
:data:`MAX_TAIL_WEIGHT_SHARE` = 20 % in one scenario (which implies fewer than 25), the tail rests
on a few weights: the simulator warns and, when plain Monte Carlo's expected tail count S(1 − α)
is larger than that effective size, draws the set again with plain Monte Carlo. Otherwise (too few
scenarios for any method) it keeps the importance-sampled set, which is still the better one.
The tail's effective size over S(1 − α) estimates the variance ratio MC/IS of the tail
probability, so a tail effective size below :data:`MIN_TAIL_GAIN` (half) of S(1 − α) is
unreliable too, at any count: plain Monte Carlo would do better (a shift away from the tail).

What the check cannot see is a region of the tail that no scenario reached. The defensive share
is the guard: the model's own draws visit every region at λ times plain Monte Carlo's rate, so
a tail that one shift cannot serve (two chains of correlation −0.95, either of which sinks the
book: the shift found is ≈ 0) costs at most about half of plain Monte Carlo's tail scenarios.
With ``defensive_share=0`` nothing guards it, and the check can pass on a biased tail.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from models.risk_measures import var_by_column

__all__ = [
    "MAX_TAIL_WEIGHT_SHARE",
    "MIN_TAIL_ESS",
    "MIN_TAIL_GAIN",
    "check_tail",
    "tail_diagnostic",
]

MIN_TAIL_ESS = 30.0
"""Fewer effective tail scenarios than this: unreliable (warned; see :func:`check_tail`)."""
MAX_TAIL_WEIGHT_SHARE = 0.2
"""More of the tail's probability than this in one scenario: unreliable, likewise."""
MIN_TAIL_GAIN = 0.5
"""A tail effective size below this share of plain Monte Carlo's S(1 − α): unreliable too."""
_BLOCK = 16_384
"""Rows of the loss matrix turned into book losses at a time."""


def tail_diagnostic(book: np.ndarray, probabilities: np.ndarray, alpha: float) -> dict[str, Any]:
    """How far the α-tail of a weighted book loss can be trusted.

    Parameters
    ----------
    book : ndarray of shape (S,)
        Book loss per scenario.
    probabilities : ndarray of shape (S,)
        Scenario probabilities summing to 1.
    alpha : float
        Tail level in (0, 1).

    Returns
    -------
    dict
        ``tail_alpha``; ``tail_var``, the weighted α-VaR; ``tail_scenarios`` at or above it;
        ``tail_ess`` = (Σw)²/Σw² and ``largest_tail_share`` = max w / Σw over those;
        ``plain_tail_scenarios`` = S(1 − α), what plain Monte Carlo would expect (its tail
        effective size: the ratio of the two estimates the variance ratio MC/IS of the tail
        probability); ``reliable``: ``tail_ess >= MIN_TAIL_ESS``, ``largest_tail_share <=
        MAX_TAIL_WEIGHT_SHARE`` and ``tail_ess >= MIN_TAIL_GAIN * plain_tail_scenarios``.
    """
    var = float(var_by_column(book[:, None], probabilities, alpha)[0])
    w = probabilities[book >= var]
    total = float(w.sum())
    ess = total * total / float(w @ w)
    share = float(w.max()) / total
    plain = book.size * (1.0 - float(alpha))
    return {
        "tail_alpha": float(alpha),
        "tail_var": var,
        "tail_scenarios": int(w.size),
        "tail_ess": ess,
        "largest_tail_share": share,
        "plain_tail_scenarios": plain,
        "reliable": bool(
            ess >= MIN_TAIL_ESS and share <= MAX_TAIL_WEIGHT_SHARE and ess >= MIN_TAIL_GAIN * plain
        ),
    }


def check_tail(
    losses: np.ndarray,
    probabilities: np.ndarray,
    alpha: float,
    exposure: np.ndarray,
    stacklevel: int = 2,
) -> dict[str, Any]:
    """:func:`tail_diagnostic` of a book, with a warning and the fallback decision.

    Parameters
    ----------
    losses : ndarray of shape (S, J)
    probabilities : ndarray of shape (S,)
    alpha : float
        The tail level the tilt aimed at (a ``Tilt``: 0.999).
    exposure : ndarray of shape (J,)
        Book weights: the book loss is ``losses @ exposure``.
    stacklevel : int
        Of the warning, so that it names the caller's line.

    Returns
    -------
    dict
        The diagnostic and ``fallback``: unreliable, and plain Monte Carlo's expected tail count
        larger than the tail's effective size (then redraw plainly).
    """
    book = np.empty(losses.shape[0])
    for lo in range(0, losses.shape[0], _BLOCK):  # never a whole float64 copy of float32 losses
        hi = lo + _BLOCK
        book[lo:hi] = losses[lo:hi].astype(np.float64, copy=False) @ exposure
    found = tail_diagnostic(book, probabilities, alpha)
    found["fallback"] = not found["reliable"] and found["plain_tail_scenarios"] > found["tail_ess"]
    if not found["reliable"]:
        plain = found["plain_tail_scenarios"]
        relative = MIN_TAIL_GAIN * plain
        need = f"{MIN_TAIL_ESS:g}"
        if relative > MIN_TAIL_ESS:
            need = f"{relative:.1f}: {MIN_TAIL_GAIN:.0%} of plain Monte Carlo's {plain:.1f}"
        outcome = (
            "the set is plain Monte Carlo of the same seed instead. If the shift misses the "
            "tail (metadata['tilt']), give TailTilt the book's exposure, or use method 'mc'"
            if found["fallback"]
            else f"kept: plain Monte Carlo would expect only {plain:.1f} tail scenarios. Use "
            "more scenarios or a lower TailTilt alpha"
        )
        warnings.warn(
            f"importance sampling of the book's {alpha:.4g} tail rests on few weights: "
            f"{found['tail_ess']:.1f} effective scenarios (reliable from {need}), the largest "
            f"carrying {found['largest_tail_share']:.1%} of the tail (reliable up to "
            f"{MAX_TAIL_WEIGHT_SHARE:.0%}); {outcome}",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    return found
