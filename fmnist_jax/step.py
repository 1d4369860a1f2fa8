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
from fmnist_jax import errors
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
  """Steps every seed of a run through its epochs, k optimizer steps a call, and holds their live
  carry.

  Built once from the training split and the seeds' states: it puts both on the mesh, derives each
  seed's shuffle and step streams, and compiles the step. Off the CPU (or with `vmap=True`) one
  program steps all seeds, vmapped over the seed axis; on one CPU device each seed has its own
  call of a one-seed program, since a vmap makes the convolutions grouped convolutions, which
  XLA:CPU runs group by group (`seeds.groups`). The carry lives here between calls, split into
  those groups during an epoch; `carry` joins it.
  """

  def __init__(self, spec: StepSpec, model, state, totals, train: dict[str, np.ndarray],
               run_seeds: list[int], mesh, vmap: bool | None = None):
    """`state`, `totals`: stacked over the seeds (totals: of the epoch in progress, if any);
    `train`: the training split ('image', 'label')."""
    self.mesh, self.run_seeds = mesh, list(run_seeds)
    self.steps_per_epoch = len(train['label']) // spec.batch_size
    self._data = parallel.replicate((train['image'], train['label']), mesh)
    seed_keys = parallel.replicate(jax.vmap(streams.seed_key)(jnp.array(self.run_seeds)), mesh)
    self._rngs = jax.vmap(streams.step_root)(seed_keys)
    self._shuffle = _shuffles(seed_keys, len(train['label']), self.steps_per_epoch * spec.batch_size,
                              mesh)
    vmap = jax.default_backend() != 'cpu' if vmap is None else vmap
    self.groups = [slice(0, len(run_seeds))] if vmap else seeds.groups(len(run_seeds), mesh)
    state, totals = parallel.replicate((state, totals), mesh)
    self._parts = seeds.split(Carry(state, totals, self._no_nonfinite_step()), self.groups)
    self._epoch = (0, None)  # the epoch in progress and its seed inputs
    t0 = time.perf_counter()
    first_group = seeds.split(SeedInputs(self._shuffle(1), self._rngs), self.groups)[0]
    self.compiled = _compile(spec, model, vmap, self._parts[0], first_group, *self._data, mesh)
    self.compile_seconds = time.perf_counter() - t0
    logging.info('Compiled the train step in %.1f s.', self.compile_seconds)

  def _no_nonfinite_step(self):
    return parallel.replicate(np.full((len(self.run_seeds),), -1, np.int32), self.mesh)

  def start_epoch(self, epoch: int, steps_done: int = 0) -> int:
    """Shuffles for `epoch` and fresh training totals, unless `steps_done` of its steps were done
    already (a resumed epoch keeps the totals it carried); the steps done, at most the epoch's
    (a run whose steps per epoch shrank ends that epoch at once)."""
    steps_done = min(steps_done, self.steps_per_epoch)
    new = {'first_nonfinite_step': self._no_nonfinite_step()}
    if not steps_done:
      new['totals'] = parallel.replicate(state_lib.empty_totals(len(self.run_seeds)), self.mesh)
    self._parts = [part.replace(**fields) for part, fields in
                   zip(self._parts, seeds.split(new, self.groups))]
    self._epoch = (epoch, seeds.split(SeedInputs(self._shuffle(epoch), self._rngs), self.groups))
    return steps_done

  def dispatches(self, first: int) -> list[tuple[int, int]]:
    """(first batch, steps) of each call for the rest of the epoch from batch `first`: k steps a
    call, the epoch's tail one by one."""
    k, steps = max(self.compiled), self.steps_per_epoch
    full = (steps - first) // k
    return [(first + j * k, k) for j in range(full)] + [(i, 1) for i in range(first + full * k,
                                                                               steps)]

  def dispatch(self, i: int, k: int) -> None:
    """k optimizer steps on batches i .. i+k-1 of the epoch, for every seed."""
    step, (epoch, inputs) = self.compiled[k], self._epoch
    self._parts = [step(part, seed_inputs, *self._data, np.int32(i), np.int32(epoch))
                   for part, seed_inputs in zip(self._parts, inputs)]

  @property
  def epoch(self) -> int:
    return self._epoch[0]

  @property
  def carry(self) -> Carry:
    """The live carry of all seeds (joined along the seed axis)."""
    return seeds.join(self._parts)

  def epoch_metrics(self) -> dict[str, np.ndarray]:
    """Each seed's training loss and accuracy over the epoch so far (waits for its last step);
    a NaN or infinite loss stops the run loudly, naming the seed and the step."""
    carry = self.carry
    per_seed = [seeds.take(carry.totals, k).compute() for k in range(len(self.run_seeds))]
    out = {key: np.array([float(m[key]) for m in per_seed]) for key in ('loss', 'accuracy')}
    epoch = self._epoch[0]
    for k, loss in enumerate(out['loss']):
      if not np.isfinite(loss):
        step = int(np.asarray(carry.first_nonfinite_step)[k])
        raise errors.TrainingDivergedError(
            f'The training loss of seed {self.run_seeds[k]} became {loss} at step {step} '
            f'(step {step - (epoch - 1) * self.steps_per_epoch} of epoch {epoch}); the run stops '
            f'here and the last checkpoint (after epoch {epoch - 1}) is kept. Lower '
            'config.learning_rate.')
    return out

  def fresh_totals(self):
    return parallel.replicate(state_lib.empty_totals(len(self.run_seeds)), self.mesh)


def _compile(spec: StepSpec, model, vmap: bool, carry, inputs, images, labels, mesh):
  """{k: the compiled program of k steps} for one group of seeds, k in {1, steps_per_dispatch}."""
  trainable = models.trainable_mask(model, seeds.take(carry.state.params, 0))
  one = functools.partial(train_step, spec=spec, mesh=mesh, trainable=trainable)
  compiled = {}
  for k in sorted({1, spec.steps_per_dispatch}):
    fn = jax.jit(_over_seeds(functools.partial(_steps, one, k), len(inputs.rng), vmap),
                 donate_argnums=(0,))
    compiled[k] = fn.lower(carry, inputs, images, labels, np.int32(0), np.int32(1)).compile()
  return compiled


def _over_seeds(fn, num_seeds: int, vmap: bool):
  """`fn` over the seed axis of (carry, inputs): vmapped, or the seeds one after another."""
  if vmap:
    return jax.vmap(fn, in_axes=(0, 0, None, None, None, None))

  def looped(carry, inputs, images, labels, i, epoch):
    return seeds.stack([fn(*seeds.take((carry, inputs), k), images, labels, i, epoch)
                        for k in range(num_seeds)])
  return looped


def _shuffles(seed_keys, n: int, length: int, mesh):
  """epoch -> each seed's shuffle of the n training images, its first `length` (a run with that
  seed alone gets the same)."""
  def permutations(keys, epoch):
    return jax.vmap(lambda k: jax.random.permutation(
        streams.epoch_shuffle_key(streams.shuffle_root(k), epoch), n)[:length])(keys)
  permutations = jax.jit(permutations, out_shardings=parallel.replicated(mesh))
  return lambda epoch: permutations(seed_keys, epoch)


def _steps(one, k: int, carry, inputs, images, labels, i, epoch):
  """k consecutive steps (batches i .. i+k-1) in one program (a lax.scan when k > 1)."""
  if k == 1:
    return one(carry, inputs, images, labels, i, epoch)
  def body(c, j):
    return one(c, inputs, images, labels, i + j, epoch), None
  carry, _ = jax.lax.scan(body, carry, jnp.arange(k))
  return carry
