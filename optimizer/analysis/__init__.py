"""The analysis room: what is asked of a solved allocation, each answer by re-solving.

Out-of-sample evaluation (:mod:`~optimizer.analysis.evaluate`), the confidence margins
(:mod:`~optimizer.analysis.confidence`, :mod:`~optimizer.analysis.margins`), marginal values by
re-solve (:mod:`~optimizer.analysis.marginal`), the frontier, the sensitivity sweep, the stress
tests, replications, and the diagnosis of an infeasible case (the elastic solve in
:mod:`~optimizer.analysis.elastic`, apart from mapping its relaxations back to the case in
:mod:`~optimizer.analysis.relaxations`). It builds on :func:`optimizer.optimize` and the
formulation room; nothing here imports the door.
"""
