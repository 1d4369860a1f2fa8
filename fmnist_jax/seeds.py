"""The seed axis: every home of "which seeds, and seed k's slice of it".

`config.num_seeds=N` trains seeds `seed .. seed+N-1` together in one process: every array of the
state carries a leading seed axis (size 1 for one seed). Seed s of such a run starts and continues
exactly as a run of seed s alone (its own streams, `streams.py`), and keeps its own best weights.
On accelerators one compiled step is `jax.vmap`-ed over the axis; on one CPU device each seed's
step is called in turn (`groups`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def take(tree, k: int):
  """Seed k's slice of a stacked tree."""
  return jax.tree_util.tree_map(lambda x: x[k], tree)


def stack(trees: list):
  """Trees of single seeds, stacked along a new leading seed axis."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def groups(num_seeds: int, mesh) -> list[slice]:
  """The seeds each call of the compiled step trains: on one CPU device one a call, else all.

  On a CPU a vmap makes the convolutions grouped convolutions, which XLA runs group by group, and
  several seeds' steps one after another inside one program were slower than one call of a
  one-seed program per seed (figures in docs/history.md). Elsewhere the vmap pays. Over several
  CPU devices one program for all seeds: calls queued back to back there deadlock in the
  gradients' all-reduce.
  """
  if jax.default_backend() == 'cpu' and mesh.devices.size == 1:
    return [slice(k, k + 1) for k in range(num_seeds)]
  return [slice(0, num_seeds)]


@jax.jit
def where(chosen, new, old):
  """Per seed, `new`'s slice where `chosen` (bool per seed) is True, else `old`'s."""
  return jax.tree_util.tree_map(
      lambda n, o: jnp.where(chosen.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def split(tree, parts: list[slice]) -> list:
  """`tree`'s slices along the seed axis, one per group (`tree` itself when there is one group)."""
  if len(parts) == 1:
    return [tree]
  return [jax.tree_util.tree_map(lambda x, g=g: x[g], tree) for g in parts]


def join(parts: list):
  """The inverse of `split`."""
  if len(parts) == 1:
    return parts[0]
  return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)


def history(entries: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
  """Seed k's own history (the form of a single-seed run) from a multi-seed one."""
  out = []
  for h in entries:
    h = dict(h)
    for key, values in h.pop('per_seed', {}).items():
      h[key] = values[k]
    out.append(h)
  return out


def means(per_seed: list[dict[str, Any]]) -> dict[str, float]:
  """Means over seeds of each seed's figures, with the sample standard deviation (ddof=1) beside."""
  out = {}
  for key in [k for k in per_seed[0] if k not in ('seed', 'best_epoch')]:
    # Test metrics are None when the test split was skipped, final ones absent in older records.
    if per_seed[0].get(key) is not None:
      values = np.array([r[key] for r in per_seed])
      out[key], out[key + '_std'] = float(values.mean()), float(values.std(ddof=1))
  return out
