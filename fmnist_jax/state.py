"""The training state of one or several seeds: optimizer, stacked states, checkpoint item.

Several seeds' states are stacked along a leading axis (`seeds.py`); seed s of such a run starts
exactly as a run of seed s alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import seeds
from fmnist_jax import streams

class TrainState(train_state.TrainState):
  batch_stats: Any
  # With config.ema_decay > 0, the exponential moving average of `variables` (params and
  # BatchNorm statistics alike, as timm's ModelEmaV2), else {}. Its decay warms up as
  # min(decay, (1 + t) / (10 + t)) after t updates (timm, TensorFlow's ExponentialMovingAverage
  # with num_updates), so early averages are not dominated by the random initialisation.
  ema: Any = struct.field(default_factory=dict)
  ema_decay: float = struct.field(pytree_node=False, default=0.0)

  @property
  def variables(self) -> dict[str, Any]:
    if self.batch_stats:
      return {'params': self.params, 'batch_stats': self.batch_stats}
    return {'params': self.params}

  @property
  def eval_variables(self) -> dict[str, Any]:
    """What validation, the best-epoch copy and the test see: the moving average when there is
    one, else the variables themselves."""
    return self.ema or self.variables

  def apply_gradients(self, *, grads, **kwargs) -> 'TrainState':
    new = super().apply_gradients(grads=grads, **kwargs)
    if not self.ema_decay:
      return new
    d = jnp.minimum(self.ema_decay, (1.0 + new.step) / (10.0 + new.step))
    return new.replace(ema=jax.tree_util.tree_map(lambda e, v: d * e + (1 - d) * v, self.ema,
                                                  new.variables))


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """What the optimizer and its schedule are made of (the config fields of the same names)."""
  optimizer: str = 'adam'
  learning_rate: float = 1e-3
  momentum: float = 0.9
  nesterov: bool = False
  weight_decay: float = 0.0
  weight_decay_on: str = 'kernels'
  schedule: str = 'cosine'
  warmup_epochs: float = 0.0
  step_boundaries: tuple[float, ...] = (0.5, 0.75)
  step_decay: float = 0.1
  num_epochs: int = 15


def create_optimizer(spec: OptimizerSpec, steps_per_epoch: int,
                     model=None) -> optax.GradientTransformation:
  """The optimizer of `spec`; with a `model` that freezes parameters, those get no updates."""
  tx = _optimizer(spec, steps_per_epoch)
  if model is not None and hasattr(model, 'trainable'):
    labels = lambda params: jax.tree_util.tree_map(
        lambda t: 'train' if t else 'frozen', models.trainable_mask(model, params))
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
  return tx


# Schedules and optimizers by name: adding one is one entry here; config_check accepts exactly
# these names (the one list). Each gets the OptimizerSpec (`spec.momentum` and so on).
# A schedule starts after the `warmup` steps of `total` (its step is counted from there).
SCHEDULES = {
    'constant': lambda spec, lr, total, warmup: optax.constant_schedule(lr),
    'cosine': lambda spec, lr, total, warmup: optax.cosine_decay_schedule(
        lr, max(total - warmup, 1)),
    'step': lambda spec, lr, total, warmup: optax.piecewise_constant_schedule(
        lr, {int(b * total) - warmup: spec.step_decay for b in spec.step_boundaries}),
    # Straight down to 0; after a warm-up, the triangle of fast schedules (airbench).
    'linear': lambda spec, lr, total, warmup: optax.linear_schedule(lr, 0.0,
                                                                    max(total - warmup, 1)),
}


def _sgd(spec, schedule, mask) -> optax.GradientTransformation:
  sgd = optax.sgd(schedule, momentum=spec.momentum, nesterov=spec.nesterov)
  # L2 added to the gradient before momentum, as PyTorch's SGD(weight_decay=...) does.
  if not spec.weight_decay:
    return sgd
  return optax.chain(optax.add_decayed_weights(spec.weight_decay, mask), sgd)


OPTIMIZERS = {
    'adam': lambda spec, schedule, mask: optax.adam(schedule),
    'adamw': lambda spec, schedule, mask: optax.adamw(
        schedule, weight_decay=spec.weight_decay, mask=mask),
    'sgd': _sgd,
}


def _optimizer(spec: OptimizerSpec, steps_per_epoch: int) -> optax.GradientTransformation:
  total = spec.num_epochs * steps_per_epoch
  warmup = int(spec.warmup_epochs * steps_per_epoch)
  lr = spec.learning_rate
  schedule = SCHEDULES[spec.schedule](spec, lr, total, warmup)
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])
  mask = None if spec.weight_decay_on == 'all' else decay_mask
  return OPTIMIZERS[spec.optimizer](spec, schedule, mask)


def decay_mask(params) -> Any:
  """True for the kernels of dense and convolution layers (flax's and big_vision's default for
  weight decay); biases and BatchNorm scales and offsets are not decayed."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def create_train_state(model, tx: optax.GradientTransformation, seed: int,
                       ema_decay: float = 0.0, images=None,
                       load_weights: bool = True) -> TrainState:
  """One seed's state: the model initialised from the seed's init stream, then (with
  `load_weights`) its pretrained weights and (given the training `images`) its data-dependent
  initialisation (`models.init_variables`). A state a checkpoint is about to overwrite needs
  neither."""
  variables = models.init_variables(model, streams.init_key(seed), images, load_weights)
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  ema = {}
  if ema_decay:
    ema = jax.tree_util.tree_map(jnp.array, {'params': params, 'batch_stats': batch_stats}
                                 if batch_stats else {'params': params})
  return TrainState.create(apply_fn=model.apply, params=params, batch_stats=batch_stats, tx=tx,
                           ema=ema, ema_decay=ema_decay)


def create_train_states(model, tx: optax.GradientTransformation, run_seeds: list[int],
                        ema_decay: float = 0.0, images=None,
                        load_weights: bool = True) -> TrainState:
  """The states of all seeds, stacked along a leading seed axis (one optimizer: the states'
  static parts match)."""
  return seeds.stack([create_train_state(model, tx, s, ema_decay, images, load_weights)
                      for s in run_seeds])


def empty_totals(num_seeds: int) -> metrics.Metrics:
  return seeds.stack([metrics.Metrics.empty()] * num_seeds)


def checkpoint_item(state: TrainState) -> dict[str, Any]:
  """What a checkpoint holds for stacked `state`, at the start (also the shape to restore into)."""
  # A copy: the train step donates (frees) the state's buffers.
  return {'state': state, 'best': jax.tree_util.tree_map(jnp.copy, state.eval_variables),
          'totals': empty_totals(jax.tree_util.tree_leaves(state.params)[0].shape[0])}
