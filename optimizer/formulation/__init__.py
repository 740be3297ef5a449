"""The formulation room: the allocation problem and the engine that solves its CVaR rows.

What a solve is made of, below :func:`optimizer.optimize`: the exposures and their claims
(:mod:`~optimizer.formulation.exposures`, :mod:`~optimizer.formulation.claims`,
:mod:`~optimizer.formulation.eligibility`), the problem's rows by job
(:mod:`~optimizer.formulation.problem` and its ``problem_*`` modules: shared rows, risk rows,
what each CVaR method adds), and the cutting plane: the tail oracle's passes over the loss
matrix, the cut master, the cut loop and warm starts. The plain min-CVaR portfolio on the same
engine (:mod:`~optimizer.formulation.portfolio`) and the scenario-row reference formulation
(:mod:`~optimizer.formulation.scenario_rows`) live here too. Nothing here imports the analysis
room or the door.
"""
