"""ppcfin's decision layer: the allocation problem, its solution and the command line."""
