"""Adversarial tests of a shared cache (issue 25): links, special files, planted HDF5 objects, races,
signals and failures inside workers. Each reproduces a case first, then checks the fix."""
