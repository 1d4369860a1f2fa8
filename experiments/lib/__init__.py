"""What the experiment scripts share.

- `common`: loading and checking configs, training a row's seeds, merging them, the machine line;
- `runs`: one run's workdir: training it, and reading what it finished (results, records);
- `distribute`: runs side by side as Ray tasks (no JAX at import: workers pin cores first);
- `early_stopping`: a sweep's ASHA scheduler on Ray Tune.

Imports go one way: common -> runs, distribute; early_stopping -> distribute; distribute and
early_stopping import runs and common only inside the functions that run after a worker's cores
are pinned.
"""
