"""The workflow: typed steps, the runner, reuse, the work-dir lock, rerun, schedule, submit."""
