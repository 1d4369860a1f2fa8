"""Experiments built on fmnist_jax: seeds tables, the reports' rows, sweeps, time to accuracy.

Run from the repository root as modules, e.g. `python -m experiments.compare_architectures`:

- the scripts at this level are the user-facing ones (docs/experiments.md);
- `experiments.lib` holds what they share (loading configs, training rows of seeds, Ray);
- `experiments.studies` holds one-off studies and measurement tools;
- `experiments/results/` holds the committed tables, records and figures.

A script imports `experiments.lib` and `fmnist_jax`, never another script. Nothing here imports
JAX at package level: a Ray worker imports `experiments.lib.distribute` and pins its CPU cores
before JAX starts.
"""
