"""The config, read once into the objects a run is made of.

Training (`train.py`), `evaluate`, `predict`, `benchmark` and the experiments build their model,
data, optimizer, states, step and evaluators here, and every module below takes plain values or the
small specs made here (`state.OptimizerSpec`, `step.StepSpec`, `input_pipeline.Source`), each read
from the config fields of the same names: what a field means is decided in one place.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import ml_collections

from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import console
from fmnist_jax import defaults
from fmnist_jax import errors
from fmnist_jax import evaluator
from fmnist_jax import files
from fmnist_jax import input_pipeline
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import results
from fmnist_jax import seeds as seeds_lib
from fmnist_jax import state as state_lib
from fmnist_jax import step as step_lib
from fmnist_jax import workdir as workdir_lib

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}  # config.dtype -> compute dtype


def spec(cls, config):
  """A spec dataclass from the config fields of its field names (dicts as sorted items, lists as
  tuples: hashable)."""
  def plain(value):
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      return tuple(sorted((k, plain(v)) for k, v in dict(value).items()))
    return tuple(value) if isinstance(value, list) else value
  return cls(**{f.name: plain(config[f.name]) for f in dataclasses.fields(cls)})


def model(config):
  """The config's architecture: config.model with its fields, config.dtype and config.dropout_rate
  (>= 0) where the class has those fields."""
  kwargs = config_check.model_field_values(config)
  fields = models.fields(config.model)
  if 'dtype' in fields:
    kwargs['dtype'] = DTYPES[config.dtype]
  if config.dropout_rate >= 0 and 'dropout_rate' in fields:
    kwargs['dropout_rate'] = config.dropout_rate
  return models.create_model(config.model, **kwargs)


def without_pretrained_weights(config):
  """A copy of `config` whose model starts from random weights (the model's `NO_WEIGHTS`, set
  through its config fields); None when the model has no pretrained weights to go without."""
  no_weights = getattr(models.MODELS[config.model], 'NO_WEIGHTS', None)
  if no_weights is None:
    return None
  config = ml_collections.ConfigDict(config.to_dict())
  for field, value in no_weights.items():
    path = models.CONFIG_FIELDS[config.model].get(field, f'model_args.{field}')
    *parents, last = path.split('.')
    node = config
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[last] = value
  return config


def seeds(config) -> list[int]:
  """The seeds a config trains: seed .. seed + num_seeds - 1."""
  return [config.seed + k for k in range(config.num_seeds)]


def selection(config) -> metrics.Selection:
  return metrics.selection(config.best_by)


def data(config, which: tuple[str, ...] = ('train', 'validation', 'test')):
  """The config's splits, whole (a split set to '' is left out: test in sweep trials)."""
  splits = {name: config[f'{name}_split'] for name in which if config[f'{name}_split']}
  return input_pipeline.load(spec(input_pipeline.Source, config), splits)


def optimizer(config, steps_per_epoch: int, model_=None):
  return state_lib.create_optimizer(spec(state_lib.OptimizerSpec, config), steps_per_epoch,
                                    model_)


def train_states(config, model_, steps_per_epoch: int, images=None, load_weights: bool = True,
                 run_seeds: list[int] | None = None):
  """Every seed's fresh state, stacked (see `state.create_train_state`)."""
  return state_lib.create_train_states(model_, optimizer(config, steps_per_epoch, model_),
                                       run_seeds or seeds(config), config.ema_decay, images,
                                       load_weights)


def train_state(config, model_, steps_per_epoch: int, seed: int | None = None,
                load_weights: bool = True):
  """One seed's fresh state (config.seed unless `seed` is given), not stacked."""
  return seeds_lib.take(train_states(config, model_, steps_per_epoch, load_weights=load_weights,
                                     run_seeds=[config.seed if seed is None else seed]), 0)


def checkpoint_item(config, model_, steps_per_epoch: int, images=None,
                    load_weights: bool = True) -> dict[str, Any]:
  return state_lib.checkpoint_item(train_states(config, model_, steps_per_epoch, images,
                                                load_weights))


def step_spec(config) -> step_lib.StepSpec:
  return spec(step_lib.StepSpec, config)


def evaluator_for(config, model_, split: dict[str, Any], mesh=None) -> evaluator.Evaluator:
  """The evaluator of one split as the config asks: its batch size, extra metrics and
  test-time augmentation (training's validation and test, `evaluate`, the sweep's winner)."""
  return evaluator.Evaluator(model_, split['image'], split['label'], config.eval_batch_size, mesh,
                             config.metrics, config.tta)


def saved_config(workdir: str):
  """A trained workdir's config, completed over today's defaults (read-only: a damaged
  config.json is read from a checkpoint's copy, not rewritten); its modules imported."""
  path = os.path.join(workdir_lib.check(workdir, must_hold_run=True), 'config.json')
  try:
    saved = files.read_json(path, '', required=config_check.REQUIRED)
  except errors.DamagedFileError as e:
    copy = checkpoint.saved_config(workdir)
    if copy is None:
      raise errors.DamagedFileError(f'{e} No checkpoint holds a copy of it: restore it, or run '
                                    'the training command once, which rewrites it.') from None
    console.warn(f'{e} Using the copy in checkpoint {copy[0]}.')
    saved = copy[1]
  config = defaults.complete(saved, older_code=True)
  defaults.import_extensions(config)  # a user's model or metric, registered by its module
  return config


def load_best(workdir: str, seed_index: int = 0, newest_only: bool = False):
  """(config, model, variables, history, best_epoch) of a workdir's best variables for one seed.

  The best variables of every seed travel in each checkpoint, so the latest one is read (with
  `newest_only`, a damaged latest one is an error rather than skipped for an older one).
  """
  config = saved_config(workdir)
  model_ = model(config)
  mngr, step, ckpt, meta = checkpoint.restore_latest(
      workdir, config.keep_checkpoints, checkpoint_item(config, model_, 1, load_weights=False),
      read_only=True, newest_only=newest_only)
  mngr.close()
  if step is None:
    raise errors.WorkdirError(f'--workdir {workdir!r} holds no checkpoint yet: its run has not '
                              'finished an epoch. Train first (or wait for the first epoch).')
  history = seeds_lib.history(meta['history'], seed_index)
  return (config, model_, seeds_lib.take(ckpt['best'], seed_index), history,
          results.best_epoch(history, selection(config)))
