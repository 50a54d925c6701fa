"""Pure planning: dependency graph, wave planner, placement, plan files, checks and diffs (no I/O)."""
