"""The train step, and the one object that steps every seed of a run (`Stepper`).

A step gathers its batch from the epoch's permutation on the device, augments the images, lets the
batch transforms mix images and targets, and takes one optimizer step on the configured loss. Its
random keys are functions of the seed and the global step (`streams`), so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmnist_jax import augment
from fmnist_jax import batch_transforms
from fmnist_jax import input_pipeline
from fmnist_jax import losses
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import seeds
from fmnist_jax import state as state_lib
from fmnist_jax import streams


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """What one optimizer step does (the config fields of the same names; dicts as sorted items,
  so the spec is hashable)."""
  batch_size: int
  augment: tuple[tuple[str, Any], ...] = ()
  batch_transforms: tuple[tuple[str, Any], ...] = ()
  loss: str = 'cross_entropy'
  loss_args: tuple[tuple[str, Any], ...] = ()
  label_smoothing: float = 0.0
  steps_per_dispatch: int = 1


@flax.struct.dataclass
class Carry:
  """What the step carries for each seed: the train state, the epoch's training totals so far, and
  the first optimizer step whose loss was not finite (-1 while all were), so a NaN is reported
  with its step without a sync per step."""
  state: state_lib.TrainState
  totals: metrics.Metrics
  first_nonfinite_step: jax.Array


@flax.struct.dataclass
class SeedInputs:
  """Each seed's own inputs of an epoch: its shuffle (`perm`) and its step keys' parent (`rng`)."""
  perm: jax.Array
  rng: jax.Array


def gather_batch(images, labels, perm, i, batch_size: int, mesh=None):
  """Batch `i` of the epoch's permutation, split across the mesh's devices when there is one."""
  idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
  x, y = images[idx], labels[idx]
  return (x, y) if mesh is None else parallel.shard_batch((x, y), mesh)


def train_step(carry: Carry, inputs: SeedInputs, images, labels, i, epoch, *, spec: StepSpec,
               mesh=None, trainable=None) -> Carry:
  """One optimizer step on batch `i` of the epoch's permutation; everything stays on the device.

  `trainable` (a tree of bools like the params, None: all) stops the gradient at frozen
  parameters, so their weight gradients are never computed.
  """
  state = carry.state
  x, y = gather_batch(images, labels, inputs.perm, i, spec.batch_size, mesh)
  keys = streams.step_keys(inputs.rng, state.step)
  x = augment.augment(x.astype(jnp.float32) / 255.0, keys['augment'], dict(spec.augment))
  targets, metric_labels = y, y
  transforms = dict(spec.batch_transforms)
  if batch_transforms.is_enabled(transforms):
    x, targets = batch_transforms.apply(x, jax.nn.one_hot(y, models.NUM_CLASSES), keys['batch'],
                                        epoch, transforms)
    metric_labels = losses.hard_labels(targets)
  if spec.label_smoothing:
    targets = optax.smooth_labels(losses.probabilities(targets, models.NUM_CLASSES),
                                  spec.label_smoothing)
  x = (x - input_pipeline.MEAN) / input_pipeline.STD
  loss = functools.partial(losses.LOSSES[spec.loss], **dict(spec.loss_args))

  def loss_fn(params):
    if trainable is not None:
      params = jax.tree_util.tree_map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                                      trainable)
    variables = {'params': params}
    if state.batch_stats:
      variables['batch_stats'] = state.batch_stats
    logits, updates = state.apply_fn(variables, x, train=True, rngs={'dropout': keys['dropout']},
                                     mutable=['batch_stats'])
    logits = logits.astype(jnp.float32)  # the loss in float32 also under bfloat16.
    return loss(logits, targets).mean(), (logits, updates)

  (_, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads,
                                batch_stats=updates.get('batch_stats', state.batch_stats))
  totals = carry.totals.merge(metrics.batch_metrics(logits, metric_labels))
  nonfinite = carry.first_nonfinite_step
  nonfinite = jnp.where((nonfinite < 0) & ~jnp.isfinite(totals.loss.total), state.step, nonfinite)
  return Carry(state, totals, nonfinite)


class Stepper:
  """Steps every seed of a run, k optimizer steps a call, and holds their live carry.

  Off the CPU (or with `vmap=True`) one program steps all seeds, vmapped over the seed axis. On
  one CPU device each seed has its own call of a one-seed program: a vmap makes the convolutions
  grouped convolutions, which XLA:CPU runs group by group (measured slower, `seeds.groups`). The
  carry lives here between calls, split into those groups during an epoch; `carry` joins it.
  """

  def __init__(self, spec: StepSpec, model, state, totals, images, labels, rngs, mesh,
               steps_per_epoch: int, vmap: bool | None = None):
    """`state`, `totals`: stacked over the seeds (totals: of the epoch in progress, if any);
    `rngs`: each seed's `streams.step_root`; images and labels: the training split."""
    self.images, self.labels, self.rngs, self.mesh = images, labels, rngs, mesh
    num_seeds = len(rngs)
    self.vmap = jax.default_backend() != 'cpu' if vmap is None else vmap
    self.groups = [slice(0, num_seeds)] if self.vmap else seeds.groups(num_seeds, mesh)
    self._parts = seeds.split(Carry(state, totals, self._no_nonfinite_step()), self.groups)
    self._inputs = None
    self.epoch = 0
    t0 = time.perf_counter()
    trainable = models.trainable_mask(model, seeds.take(state.params, 0))
    one = functools.partial(train_step, spec=spec, mesh=mesh, trainable=trainable)
    group = self.groups[0]
    perms = np.zeros((group.stop - group.start, steps_per_epoch * spec.batch_size), np.int32)
    example = (self._parts[0], SeedInputs(parallel.replicate(perms, mesh), rngs[group]))
    self.compiled = {}
    for k in sorted({1, spec.steps_per_dispatch}):
      fn = jax.jit(self._over_seeds(functools.partial(_steps, one, k), group.stop - group.start),
                   donate_argnums=(0,))
      self.compiled[k] = fn.lower(*example, images, labels, np.int32(0), np.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t0
    logging.info('Compiled the train step in %.1f s.', self.compile_seconds)

  def _over_seeds(self, fn, num_seeds: int):
    """`fn` over the seed axis of (carry, inputs): vmapped, or the seeds one after another."""
    if self.vmap:
      return jax.vmap(fn, in_axes=(0, 0, None, None, None, None))

    def looped(carry, inputs, images, labels, i, epoch):
      return seeds.stack([fn(*seeds.take((carry, inputs), k), images, labels, i, epoch)
                          for k in range(num_seeds)])
    return looped

  def _no_nonfinite_step(self):
    return parallel.replicate(np.full((len(self.rngs),), -1, np.int32), self.mesh)

  def start_epoch(self, epoch: int, perms, resumed: bool = False) -> None:
    """The epoch's shuffles (`perms`, one per seed) and fresh training totals; a `resumed` epoch
    keeps the totals it carried."""
    new = {'first_nonfinite_step': self._no_nonfinite_step()}
    if not resumed:
      new['totals'] = parallel.replicate(state_lib.empty_totals(len(self.rngs)), self.mesh)
    self._parts = [part.replace(**fields) for part, fields in
                   zip(self._parts, seeds.split(new, self.groups))]
    self._inputs = seeds.split(SeedInputs(perms, self.rngs), self.groups)
    self.epoch = epoch

  def dispatch(self, i: int, k: int) -> None:
    """k optimizer steps on batches i .. i+k-1 of the epoch, for every seed."""
    step = self.compiled[k]
    self._parts = [step(part, inputs, self.images, self.labels, np.int32(i), np.int32(self.epoch))
                   for part, inputs in zip(self._parts, self._inputs)]

  @property
  def carry(self) -> Carry:
    """The live carry of all seeds (joined along the seed axis)."""
    return seeds.join(self._parts)


def _steps(one, k: int, carry, inputs, images, labels, i, epoch):
  """k consecutive steps (batches i .. i+k-1) in one program (a lax.scan when k > 1)."""
  if k == 1:
    return one(carry, inputs, images, labels, i, epoch)
  def body(c, j):
    return one(c, inputs, images, labels, i + j, epoch), None
  carry, _ = jax.lax.scan(body, carry, jnp.arange(k))
  return carry
