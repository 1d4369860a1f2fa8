"""Config checks that run before anything is loaded, downloaded or compiled (they only look, after
importing the modules config.imports names).

`validate_config` names the first bad field and what is allowed; `config_differences` says how a
workdir's saved config differs from a new one (what may not change when resuming).
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections

from fmnist_jax import augment
from fmnist_jax import batch_transforms
from fmnist_jax import defaults
from fmnist_jax import errors
from fmnist_jax import input_pipeline
from fmnist_jax import losses
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import state

WEIGHT_DECAY_ON = ('kernels', 'all')
DTYPES = ('float32', 'bfloat16')  # bfloat16: mixed precision for accelerators (state.DTYPES).


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config completed over the defaults (`defaults.complete`), checked: fails on a bad field
  before any data is loaded or anything is compiled.

  Names are checked against the registries themselves (models.MODELS, augment.AUGMENTATIONS,
  metrics.EVAL_METRICS, state.OPTIMIZERS and SCHEDULES), after the modules in config.imports are
  imported (their registrations run then); nothing else is touched.
  """
  config = defaults.complete(config)
  defaults.import_extensions(config)  # the user's registrations, before their names are checked
  _check_data_dir(config.data_dir, _bad)
  _check_registered(config, _bad)
  if config.tta not in augment.TTA:
    _bad('tta', config.tta, f'choose one of {list(augment.TTA)}')
  if config.weight_decay_on not in WEIGHT_DECAY_ON:
    _bad('weight_decay_on', config.weight_decay_on, f'choose one of {list(WEIGHT_DECAY_ON)}')
  for field in ('learning_rate', 'num_epochs', 'batch_size', 'eval_batch_size', 'keep_checkpoints'):
    if not config[field] > 0:
      _bad(field, config[field], 'it must be positive')
  ranges = {}
  for field in ('train_split', 'validation_split', 'test_split'):
    if field == 'test_split' and not config.test_split:
      continue  # '' skips the test evaluation (sweep trials).
    try:
      ranges[field] = input_pipeline.split_ranges(config[field])
    except ValueError as e:
      _bad(field, config[field], f'{e} Use tfds split syntax such as "train[:90%]" or '
          '"train[54000:]"')
    wanted = 'test' if field == 'test_split' else 'train'
    if any(split != wanted for split, _, _ in ranges[field]):
      _bad(field, config[field], f"it must only take from '{wanted}'" + (
          ' (the test split is only for the final evaluation)' if wanted == 'train' else ''))
  n_train = sum(stop - start for _, start, stop in ranges['train_split'])
  if n_train < config.batch_size:
    raise errors.ConfigError(f'config.train_split={config.train_split!r} holds {n_train} '
                             f'images, fewer than config.batch_size={config.batch_size}.')
  overlap = [(a, b) for a in ranges['train_split'] for b in ranges['validation_split']
             if max(a[1], b[1]) < min(a[2], b[2])]
  if overlap:
    (_, a0, a1), (_, b0, b1) = overlap[0]
    _bad('validation_split', config.validation_split,
        f'it overlaps config.train_split={config.train_split!r} (train images '
        f'{max(a0, b0)}..{min(a1, b1) - 1}); validation must be held out of training')
  if config.batch_size % jax.device_count() or config.eval_batch_size % jax.device_count():
    _bad('batch_size/eval_batch_size', (config.batch_size, config.eval_batch_size),
        f'both must be divisible by the {jax.device_count()} devices the batch is split over')
  if config.dtype not in DTYPES:
    _bad('dtype', config.dtype, f'choose one of {list(DTYPES)}')
  if not (isinstance(config.num_seeds, int) and config.num_seeds >= 1):
    _bad('num_seeds', config.num_seeds, 'it must be a positive integer')
  if not 0 <= config.label_smoothing < 1:
    _bad('label_smoothing', config.label_smoothing, 'it must be in [0, 1)')
  if not 0 <= config.ema_decay < 1:
    _bad('ema_decay', config.ema_decay, 'it must be in [0, 1) (0: off; e.g. 0.999)')
  k = config.steps_per_dispatch
  if not (isinstance(k, int) and k >= 1):
    _bad('steps_per_dispatch', k, 'it must be a positive integer')
  if config.data_source not in ('archives', 'tfds', 'auto'):
    _bad('data_source', config.data_source, "choose 'archives' or 'tfds'")
  if config.data_source == 'tfds' and not input_pipeline.have_tensorflow():
    _bad('data_source', 'tfds', "TensorFlow is not installed; use 'archives' (the same "
        'images in the same order, read without TensorFlow)')
  if config.progress_bar not in ('auto', 'on', 'off'):
    _bad('progress_bar', config.progress_bar, "choose 'auto', 'on' or 'off'")
  return config


def _bad(field, value, allowed):
  raise errors.ConfigError(f'config.{field}={value!r} is invalid; {allowed}.')


def _check_registered(config, bad) -> None:
  """Names and fields against the registries themselves: models, metrics, optimizers,
  schedules, augmentations (each augmentation checks its own fields)."""
  if config.model not in models.MODELS:
    bad('model', config.model, f'choose one of {sorted(models.MODELS)}')
  values = model_field_values(config)
  unknown = set(config.model_args) - set(models.settable_fields(config.model))
  if unknown:
    bad('model_args', sorted(unknown), f'{config.model} has the fields '
        f'{sorted(models.settable_fields(config.model))}')
  problem = models.check_fields(config.model, values)
  if problem:
    bad(*problem)
  unknown = set(config.metrics) - set(metrics.EVAL_METRICS)
  if isinstance(config.metrics, str) or unknown:
    bad('metrics', config.metrics, f'give a tuple of names from {sorted(metrics.EVAL_METRICS)}')
  if config.best_by not in metrics.HIGHER_IS_BETTER:
    bad('best_by', config.best_by, f'choose one of {sorted(metrics.HIGHER_IS_BETTER)}')
  if config.best_by not in ('accuracy', 'loss') and config.best_by not in config.metrics:
    bad('best_by', config.best_by, 'a registered metric chooses the best epoch only when '
        f'config.metrics computes it: add {config.best_by!r} to config.metrics')
  if config.loss not in losses.LOSSES:
    bad('loss', config.loss, f'choose one of {sorted(losses.LOSSES)}')
  unknown = set(config.loss_args) - set(losses.arguments(config.loss))
  if unknown:
    bad('loss_args', sorted(unknown), f'loss {config.loss!r} takes '
        f'{losses.arguments(config.loss) or "no arguments"}')
  if config.optimizer not in state.OPTIMIZERS:
    bad('optimizer', config.optimizer, f'choose one of {sorted(state.OPTIMIZERS)}')
  if config.schedule not in state.SCHEDULES:
    bad('schedule', config.schedule, f'choose one of {sorted(state.SCHEDULES)}')
  for block, registry in (('augment', augment.AUGMENTATIONS),
                          ('batch_transforms', batch_transforms.TRANSFORMS)):
    known = [f for entry in registry.values() for f in entry.fields]
    unknown = set(config[block].keys()) - set(known)
    if unknown:
      bad(block, sorted(unknown), f'known keys are {known}')
    for entry in registry.values():
      values = entry.values(config[block].to_dict())
      problem = entry.check(values)
      if problem:
        bad(f'{block}.{problem[0]}', values[problem[0]], problem[1])


def model_field_values(config) -> dict[str, Any]:
  """The chosen model's own field values: config.model_args, and the fields its registration
  maps to other config fields (`models.register(config_fields=...)`) where the config has them."""
  values = {k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in config.model_args.items()}
  for field, path in models.CONFIG_FIELDS[config.model].items():
    if _dotted(config, path) is not None:
      values[field] = _dotted(config, path)
  return values


def _dotted(config, path: str):
  """The value at a dotted path of the config; None where it has none."""
  node = config
  for part in path.split('.'):
    node = node.get(part) if hasattr(node, 'get') else None
  return node


def _check_data_dir(data_dir: str, bad) -> None:
  """tfds prepares Fashion-MNIST in data_dir: it must be (or be creatable as) a writable folder."""
  path = os.path.abspath(os.path.expanduser(data_dir))
  if os.path.exists(path) and not os.path.isdir(path):
    bad('data_dir', data_dir, 'it is a file; give a folder where tfds can prepare Fashion-MNIST')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    bad('data_dir', data_dir, f'{existing} is a file, so the folder cannot be created')
  if not os.path.isdir(os.path.join(path, input_pipeline.DATASET)) and not os.access(
      existing, os.W_OK | os.X_OK):
    bad('data_dir', data_dir, f'{existing} is not writable, so Fashion-MNIST cannot be prepared '
        'there; give a folder you can write to')


# What a saved config.json must hold to be read as one (an edited or damaged one is rebuilt).
REQUIRED = ('model', 'seed', 'num_epochs', 'batch_size', 'learning_rate', 'optimizer',
            'train_split', 'augment')
# Fields that do not change what is computed; a workdir may be resumed with other values.
NOT_COMPARED = ('progress_bar', 'report_every_steps', 'data_dir', 'archives_dir', 'data_source')
NOT_COMPARED_PREFIXES = ('report.',)  # a report config's description of itself (title, seeds).


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """'field: old -> new' for every (dotted) field that differs, ignoring NOT_COMPARED (and
  weight_decay_on where neither decays: it then changes nothing).

  `old` (saved by this or older code) is read over the defaults; a field it lacks had the value
  older code ran with (defaults.OLDER_CODE) or today's default.
  """
  as_json = lambda c: ml_collections.ConfigDict(json.loads(c.to_json_best_effort()))  # () == []
  flat = lambda c: {k: v for k, v in flat_hparams(as_json(c)).items()
                    if k not in NOT_COMPARED and not k.startswith(NOT_COMPARED_PREFIXES)}
  old, new = flat(defaults.complete(old, older_code=True)), flat(defaults.complete(new))
  inert = {'weight_decay_on'} if not old.get('weight_decay') and not new.get('weight_decay') else set()
  return [f'{k}: {old.get(k, "(absent)")!r} -> {new.get(k, "(absent)")!r}'
          for k in sorted((set(old) | set(new)) - inert) if old.get(k) != new.get(k)]


def resume_changes(workdir: str, saved: dict[str, Any] | None, config_json: dict[str, Any],
                   allow_config_change: bool) -> list[str]:
  """How `config_json` differs from the `saved` config.json of `workdir` (none for a new one);
  ConfigMismatchError when it does and the change is not allowed."""
  differences = config_differences(saved, config_json) if saved is not None else []
  if differences and not allow_config_change:
    raise errors.ConfigMismatchError(
        f'{workdir} holds a run with another config; differing fields: '
        + '; '.join(differences) + '. Use a new --workdir, or pass --allow_config_change to '
        'continue this run under the new config (e.g. more epochs; a schedule that depends on '
        'num_epochs then changes mid-run).')
  if differences:
    logging.warning('Continuing %s under a changed config: %s', workdir, differences)
  return differences


def flat_hparams(config) -> dict[str, Any]:
  """Dotted field -> value (TensorBoard hparams and config comparison)."""
  flat = {}
  def walk(d, prefix=''):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, f'{prefix}{k}.')
      else:
        flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
  walk(config.to_dict())
  return flat
