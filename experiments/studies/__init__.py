"""One-off studies and measurement tools (run as `python -m experiments.studies.<name>`).

Their figures and what they showed are in docs/history.md and docs/speed.md; they import
`experiments.lib` and `fmnist_jax`, nothing of each other but `cnn_kernel_floor`'s kernels.
"""
