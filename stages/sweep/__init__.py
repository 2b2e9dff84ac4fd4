"""Sweeps over grids of runs x options x seeds, locally or as SLURM job arrays, and their cell status."""
