"""Data parallelism with JAX's own sharding: one `data` mesh axis over all devices.

Parameters, optimizer state and the (small) data set are replicated; inside the jitted steps each
batch is constrained to be split along `data`, and XLA partitions the computation and inserts the
gradient all-reduce. BatchNorm statistics are computed over the global batch, so metrics do not
depend on the number of devices. With one device every constraint is a no-op.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'data'


def create_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  # Auto axes: a global-view program that XLA partitions (not explicit sharding in types).
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
  """A full copy on every device of the mesh.

  With several processes (hosts) each one holds the same values and builds the global array from
  its own copy; `device_put` cannot target another host's devices.
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if jax.dtypes.issubdtype(getattr(x, 'dtype', None), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree_util.tree_map(put, tree)


def shard_batch(tree: Any, mesh: Mesh) -> Any:
  """Inside jit: split the leading (batch) axis of every leaf across the mesh."""
  return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, P(AXIS)))
