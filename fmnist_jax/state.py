"""The training state of one or several seeds: model, optimizer, stacked states, checkpoint item.

Several seeds' states are stacked along a leading axis (`seeds.py`); seed s of such a run starts
exactly as a run of seed s alone.
"""
from __future__ import annotations

from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import pretrained
from fmnist_jax import seeds
from fmnist_jax import streams

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}  # config.dtype -> compute dtype


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


def create_model(config):
  """The config's architecture (built once per run): config.model with config.model_args, and
  config.dtype and config.dropout_rate (>= 0) where the class has those fields."""
  # Lists (from a saved config.json) as tuples: a module's fields must be hashable.
  kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in config.model_args.items()}
  fields = models.fields(config.model)
  if 'dtype' in fields:
    kwargs['dtype'] = DTYPES[config.dtype]
  if config.dropout_rate >= 0 and 'dropout_rate' in fields:
    kwargs['dropout_rate'] = config.dropout_rate
  if config.model == 'mobilenetv2_transfer':
    kwargs['unfreeze_blocks'] = config.backbone.unfreeze_blocks
  return models.create_model(config.model, **kwargs)


def create_optimizer(config, steps_per_epoch: int,
                     model=None) -> optax.GradientTransformation:
  """The config's optimizer; with a `model` that freezes parameters, those get no updates."""
  tx = _optimizer(config, steps_per_epoch)
  if model is not None and hasattr(model, 'trainable'):
    labels = lambda params: jax.tree_util.tree_map(
        lambda t: 'train' if t else 'frozen', models.trainable_mask(model, params))
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
  return tx


# Schedules and optimizers by name: adding one is one function here; config_check accepts exactly
# these names (the one list).
# A schedule starts after the `warmup` steps of `total` (its step is counted from there).
SCHEDULES = {
    'constant': lambda config, lr, total, warmup: optax.constant_schedule(lr),
    'cosine': lambda config, lr, total, warmup: optax.cosine_decay_schedule(
        lr, max(total - warmup, 1)),
    'step': lambda config, lr, total, warmup: optax.piecewise_constant_schedule(
        lr, {int(b * total) - warmup: config.step_decay for b in config.step_boundaries}),
    # Straight down to 0; after a warm-up, the triangle of fast schedules (airbench).
    'linear': lambda config, lr, total, warmup: optax.linear_schedule(lr, 0.0,
                                                                      max(total - warmup, 1)),
}


def _sgd(config, schedule, mask) -> optax.GradientTransformation:
  sgd = optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov)
  # L2 added to the gradient before momentum, as PyTorch's SGD(weight_decay=...) does.
  if not config.weight_decay:
    return sgd
  return optax.chain(optax.add_decayed_weights(config.weight_decay, mask), sgd)


OPTIMIZERS = {
    'adam': lambda config, schedule, mask: optax.adam(schedule),
    'adamw': lambda config, schedule, mask: optax.adamw(
        schedule, weight_decay=config.weight_decay, mask=mask),
    'sgd': _sgd,
}


def _optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  total = config.num_epochs * steps_per_epoch
  warmup = int(config.warmup_epochs * steps_per_epoch)
  lr = config.learning_rate
  schedule = SCHEDULES[config.schedule](config, lr, total, warmup)
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])
  mask = None if config.weight_decay_on == 'all' else decay_mask
  return OPTIMIZERS[config.optimizer](config, schedule, mask)


def decay_mask(params) -> Any:
  """True for the kernels of dense and convolution layers (flax's and big_vision's default for
  weight decay); biases and BatchNorm scales and offsets are not decayed."""
  return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == 'kernel', params)


def backbone_weights(config) -> str | None:
  """The weight file a MobileNetV2 backbone starts from, resolved (and downloaded) once per run.

  None for other models and for config.backbone.weights='random'.
  """
  if config.model != 'mobilenetv2_transfer':
    return None
  return pretrained.resolve(config.backbone.weights)


def create_train_state(config, model, steps_per_epoch: int, seed: int | None = None,
                       tx: optax.GradientTransformation | None = None,
                       weights: str | None = None) -> TrainState:
  """One seed's state (config.seed unless `seed` is given).

  A MobileNetV2 backbone starts from the Keras weight file `weights` (see `backbone_weights`);
  None leaves it randomly initialised (also for a state a checkpoint is about to overwrite).
  """
  variables = models.init_variables(model, streams.init_key(config.seed if seed is None else seed))
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  if weights:
    params, batch_stats = dict(params), dict(batch_stats)
    params['backbone'], batch_stats['backbone'] = pretrained.to_flax(
        pretrained.keras_layer_weights(weights), params['backbone'], batch_stats['backbone'])
  ema = {}
  if config.ema_decay:
    ema = jax.tree_util.tree_map(jnp.array, {'params': params, 'batch_stats': batch_stats}
                                 if batch_stats else {'params': params})
  return TrainState.create(apply_fn=model.apply, params=params, batch_stats=batch_stats,
                           tx=tx or create_optimizer(config, steps_per_epoch, model), ema=ema,
                           ema_decay=config.ema_decay)


def create_train_states(config, model, steps_per_epoch: int,
                        weights: str | None = None) -> TrainState:
  """The states of all seeds, stacked along a leading seed axis."""
  # One optimizer: the states' static parts match.
  tx = create_optimizer(config, steps_per_epoch, model)
  return seeds.stack([create_train_state(config, model, steps_per_epoch, s, tx, weights)
                      for s in seeds.of(config)])


def empty_totals(num_seeds: int) -> metrics.Metrics:
  return seeds.stack([metrics.Metrics.empty()] * num_seeds)


def checkpoint_item(config, model, steps_per_epoch: int,
                    weights: str | None = None) -> dict[str, Any]:
  """What a checkpoint holds, freshly initialised (also the shape to restore one into)."""
  state = create_train_states(config, model, steps_per_epoch, weights)
  # A copy: the train step donates (frees) the state's buffers.
  return {'state': state, 'best': jax.tree_util.tree_map(jnp.copy, state.eval_variables),
          'totals': empty_totals(len(seeds.of(config)))}
