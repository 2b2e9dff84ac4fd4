"""Where and how work runs: thread budgets (affinity, SLURM, cgroups), the torch device, progress bars."""
