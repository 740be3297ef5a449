"""Typed errors of the optimizer: every solver outcome that is not a usable answer.

Each error says what happened in the user's terms and what to change. The command line turns
them into one message and a non-zero exit code. Each is in one branch of the tree of
:mod:`models.errors`: a scenario set of another case is an input error, no usable answer a
computation error.
"""

from __future__ import annotations

from typing import Any

from models.errors import ComputationError, InputError, PpcfinError


class OptimizerError(PpcfinError, RuntimeError):
    """Base of every error raised while building or solving an allocation problem.

    A layer family: the errors it holds are each in one branch of the tree as well. Raised as
    itself, it exits 2 (as every optimizer error but :class:`SolverFailure` always has).
    """

    exit_code = 2


class ScenarioMismatch(OptimizerError, InputError, ValueError):
    """The scenario set was not simulated for this case (its cells differ from the case's)."""


class InfeasibleCase(OptimizerError, ComputationError):
    """No allocation satisfies every constraint of the case (exit 2: the case must change).

    Attributes
    ----------
    case_name : str
        The case's ``name``.
    stage : int
        1 (minimise the weighted gap) or 2 (hold the gap, minimise expected loss and cost).
    solver : str
        The solver that proved infeasibility (after any fallback confirmed it).
    diagnosis : Any
        Hook for the elastic re-solve that finds the smallest relaxation making the case
        feasible; ``None`` until that diagnosis runs.
    """

    exit_code = 2

    def __init__(self, case_name: str, stage: int, solver: str, detail: str = ""):
        self.case_name = case_name
        self.stage = stage
        self.solver = solver
        self.diagnosis: Any = None
        what = (
            "no allocation meets every funder's limits and the programme rules"
            if stage == 1
            else "the second stage could not hold the optimal gap (numerical trouble)"
        )
        hint = (
            "check amounts, limits and caps for negative or contradictory values, or loosen "
            "the policy rules (mobilisation, concentration, climate earmark)"
            if stage == 1
            else "raise policy.gap_tolerance_share (e.g. to 1e-3) or try solver='CLARABEL'"
        )
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"case {case_name!r} is infeasible at stage {stage} according to {solver}{extra}: "
            f"{what}; {hint}"
        )


class SolverFailure(OptimizerError, ComputationError):
    """The solver(s) returned no usable answer: unbounded, time limit, numerical error...

    Attributes
    ----------
    solver : str
        The last solver tried.
    status : str
        Its cvxpy status (``"unbounded"``, ``"user_limit"``, ``"solver_error"``...).
    stage : int
        1 or 2.
    attempts : tuple of str
        Every solver tried and what it returned, in order.
    """

    exit_code = 1

    def __init__(
        self,
        solver: str,
        status: str,
        stage: int,
        advice: str,
        attempts: tuple[str, ...] = (),
    ):
        self.solver = solver
        self.status = status
        self.stage = stage
        self.attempts = attempts
        self.advice = advice
        tried = f" (tried: {'; '.join(attempts)})" if attempts else ""
        super().__init__(f"{solver} returned status {status!r} at stage {stage}{tried}; {advice}")
