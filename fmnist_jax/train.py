"""Training: the state, the jitted train step and the epoch loop with checkpoints and writers.

Reproducibility: the dropout and augmentation rngs of a step are `fold_in(key(seed), step)` and the
shuffle of an epoch is `fold_in(shuffle_key, epoch)`, so a run resumed from a checkpoint continues
exactly as the uninterrupted run would have.

Seeds: `config.num_seeds=N` trains seeds `seed, seed+1, ..., seed+N-1` together, every array of the
state with a leading seed axis and the step `jax.vmap`-ed over it (one compiled program). Each seed
has its own initialisation, dropout, augmentation and shuffle streams, exactly those of a run with
that seed alone, and keeps its own best-validation variables. With N=1 the axis has size 1.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from fmnist_jax import augment
from fmnist_jax import checkpoint
from fmnist_jax import errors
from fmnist_jax import evaluate
from fmnist_jax import input_pipeline
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import pretrained
from fmnist_jax import workdir as workdir_lib

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'cosine', 'step')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class TrainState(train_state.TrainState):
  batch_stats: Any

  @property
  def variables(self) -> dict[str, Any]:
    if self.batch_stats:
      return {'params': self.params, 'batch_stats': self.batch_stats}
    return {'params': self.params}


ConfigError = errors.ConfigError
ConfigMismatchError = errors.ConfigMismatchError


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails on a bad field before any data is loaded or anything is compiled."""
  def bad(field, value, allowed):
    raise ConfigError(f'config.{field}={value!r} is invalid; {allowed}.')
  if config.model not in models.MODELS:
    bad('model', config.model, f'choose one of {sorted(models.MODELS)}')
  if config.optimizer not in OPTIMIZERS:
    bad('optimizer', config.optimizer, f'choose one of {list(OPTIMIZERS)}')
  if config.schedule not in SCHEDULES:
    bad('schedule', config.schedule, f'choose one of {list(SCHEDULES)}')
  for field in ('learning_rate', 'num_epochs', 'batch_size', 'eval_batch_size', 'keep_checkpoints'):
    if not config[field] > 0:
      bad(field, config[field], 'it must be positive')
  ranges = {}
  for field in ('train_split', 'validation_split', 'test_split'):
    if field == 'test_split' and not config.test_split:
      continue  # '' skips the test evaluation (sweep trials).
    try:
      ranges[field] = input_pipeline.split_ranges(config[field])
    except ValueError as e:
      bad(field, config[field], f'{e} Use tfds split syntax such as "train[:90%]" or '
          '"train[54000:]"')
    wanted = 'test' if field == 'test_split' else 'train'
    if any(split != wanted for split, _, _ in ranges[field]):
      bad(field, config[field], f"it must only take from '{wanted}'" + (
          ' (the test split is only for the final evaluation)' if wanted == 'train' else ''))
  overlap = [(a, b) for a in ranges['train_split'] for b in ranges['validation_split']
             if max(a[1], b[1]) < min(a[2], b[2])]
  if overlap:
    (_, a0, a1), (_, b0, b1) = overlap[0]
    bad('validation_split', config.validation_split,
        f'it overlaps config.train_split={config.train_split!r} (train images '
        f'{max(a0, b0)}..{min(a1, b1) - 1}); validation must be held out of training')
  unknown = set(config.augment.keys()) - set(augment.KEYS)
  if unknown:
    bad('augment', sorted(unknown), f'known keys are {list(augment.KEYS)}')
  if config.batch_size % jax.device_count() or config.eval_batch_size % jax.device_count():
    bad('batch_size/eval_batch_size', (config.batch_size, config.eval_batch_size),
        f'both must be divisible by the {jax.device_count()} devices the batch is split over')
  if config.dtype not in DTYPES:
    bad('dtype', config.dtype, f'choose one of {list(DTYPES)}')
  if not (isinstance(config.get('num_seeds', 1), int) and config.get('num_seeds', 1) >= 1):
    bad('num_seeds', config.get('num_seeds'), 'it must be a positive integer')
  _check_data_dir(config.data_dir, bad)
  if config.progress_bar not in ('auto', 'on', 'off'):
    bad('progress_bar', config.progress_bar, "choose 'auto', 'on' or 'off'")
  if config.model == 'mobilenetv2_transfer':
    backbone = config.get('backbone')
    if backbone is None:
      bad('backbone', None, 'mobilenetv2_transfer needs a config.backbone block with weights and '
          'unfreeze_blocks (see configs/reports/keras_mobilenetv2_90_31_transfer.py)')
    if not (isinstance(backbone.unfreeze_blocks, int)
            and 0 <= backbone.unfreeze_blocks <= models.MOBILENETV2_UNITS):
      bad('backbone.unfreeze_blocks', backbone.unfreeze_blocks,
          f'it must be an integer from 0 (frozen) to {models.MOBILENETV2_UNITS} (all trainable)')
    # The weight file must exist (Keras' is downloaded here when missing and its host answers);
    # otherwise WeightsUnavailableError names the file and the fix.
    pretrained.resolve(backbone.weights)


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


def create_optimizer(config, steps_per_epoch: int,
                     model=None) -> optax.GradientTransformation:
  """The config's optimizer; with a `model` that freezes parameters, those get no updates."""
  tx = _optimizer(config, steps_per_epoch)
  if model is None or not hasattr(model, 'trainable'):
    return tx
  labels = lambda params: jax.tree_util.tree_map(
      lambda t: 'train' if t else 'frozen', models.trainable_mask(model, params))
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)


def _optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  total = config.num_epochs * steps_per_epoch
  warmup = int(config.warmup_epochs * steps_per_epoch)
  lr = config.learning_rate
  if config.schedule == 'cosine':
    schedule = optax.cosine_decay_schedule(lr, max(total - warmup, 1))
  elif config.schedule == 'step':
    schedule = optax.piecewise_constant_schedule(
        lr, {int(b * total) - warmup: config.step_decay for b in config.step_boundaries})
  else:
    schedule = optax.constant_schedule(lr)
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])
  if config.optimizer == 'sgd':
    return optax.sgd(schedule, momentum=config.momentum)
  if config.optimizer == 'adamw':
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  return optax.adam(schedule)


def create_model(config):
  kwargs = {'dtype': DTYPES[config.dtype]}
  if config.dropout_rate >= 0:
    kwargs['dropout_rate'] = config.dropout_rate
  if config.model == 'mobilenetv2_transfer':
    kwargs['unfreeze_blocks'] = config.backbone.unfreeze_blocks
  return models.create_model(config.model, **kwargs)


def create_train_state(config, model, steps_per_epoch: int, seed: int | None = None,
                       tx: optax.GradientTransformation | None = None,
                       load_pretrained: bool = True) -> TrainState:
  """One seed's state (config.seed unless `seed` is given).

  A MobileNetV2 backbone gets the weights of config.backbone.weights unless `load_pretrained` is
  False (a state that a checkpoint is about to overwrite).
  """
  variables = models.init_variables(model, jax.random.key(config.seed if seed is None else seed))
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  path = pretrained.resolve(config.backbone.weights) if (
      load_pretrained and config.model == 'mobilenetv2_transfer') else None
  if path:
    params, batch_stats = dict(params), dict(batch_stats)
    params['backbone'], batch_stats['backbone'] = pretrained.to_flax(
        pretrained.keras_layer_weights(path), params['backbone'], batch_stats['backbone'])
  return TrainState.create(apply_fn=model.apply, params=params, batch_stats=batch_stats,
                           tx=tx or create_optimizer(config, steps_per_epoch, model))


def seeds(config) -> list[int]:
  return [config.seed + k for k in range(config.get('num_seeds', 1))]


def create_train_states(config, model, steps_per_epoch: int,
                        load_pretrained: bool = True) -> TrainState:
  """The states of all seeds, stacked along a leading seed axis."""
  # One optimizer: the states' static parts match.
  tx = create_optimizer(config, steps_per_epoch, model)
  states = [create_train_state(config, model, steps_per_epoch, s, tx, load_pretrained)
            for s in seeds(config)]
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def empty_totals(num_seeds: int) -> evaluate.Metrics:
  return jax.tree_util.tree_map(lambda x: jnp.stack([x] * num_seeds), evaluate.Metrics.empty())


def checkpoint_item(config, model, steps_per_epoch: int,
                    load_pretrained: bool = True) -> dict[str, Any]:
  """What a checkpoint holds, freshly initialised (also the shape to restore one into)."""
  state = create_train_states(config, model, steps_per_epoch, load_pretrained)
  # A copy: the train step donates (frees) the state's buffers.
  return {'state': state, 'best': jax.tree_util.tree_map(jnp.copy, state.variables),
          'totals': empty_totals(len(seeds(config)))}


def take_seed(tree, k: int):
  """Seed k's slice of a stacked tree."""
  return jax.tree_util.tree_map(lambda x: x[k], tree)


def gather_batch(images, labels, perm, i, batch_size: int, mesh=None):
  """Batch `i` of the epoch's permutation, split across the mesh's devices when there is one."""
  idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
  x, y = images[idx], labels[idx]
  return (x, y) if mesh is None else parallel.shard_batch((x, y), mesh)


def train_step(state: TrainState, totals: evaluate.Metrics, images, labels, perm, i, rng, *,
               batch_size: int, augment_cfg, mesh=None, trainable=None):
  """One optimizer step on batch `i` of the epoch's permutation; everything stays on the device.

  `trainable` (a tree of bools like the params, None: all) stops the gradient at frozen
  parameters, so their weight gradients are never computed.
  """
  x, y = gather_batch(images, labels, perm, i, batch_size, mesh)
  dropout_rng, augment_rng = jax.random.split(jax.random.fold_in(rng, state.step))
  x = augment.augment(x.astype(jnp.float32) / 255.0, augment_rng, augment_cfg)
  x = (x - input_pipeline.MEAN) / input_pipeline.STD

  def loss_fn(params):
    if trainable is not None:
      params = jax.tree_util.tree_map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                                      trainable)
    variables = {'params': params}
    if state.batch_stats:
      variables['batch_stats'] = state.batch_stats
    logits, updates = state.apply_fn(variables, x, train=True, rngs={'dropout': dropout_rng},
                                     mutable=['batch_stats'])
    logits = logits.astype(jnp.float32)  # the loss in float32 also under bfloat16.
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (logits, updates)

  (_, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads,
                                batch_stats=updates.get('batch_stats', state.batch_stats))
  return state, totals.merge(evaluate.batch_metrics(logits, y))


def compile_train_step(config, state, totals, images, labels, perm, rng, mesh):
  """AOT-compiles the train step, vmapped over the seed axis of state, totals, perm and rng.

  Returns (step, seconds); step(state, totals, bad, images, labels, perm, i, rng) -> (state,
  totals, bad). `bad` (int32, one per seed, -1 while all is well) records the first optimizer
  step whose loss was not finite, so a NaN is reported with its step without a sync per step.
  The images and labels are shared by all seeds.
  """
  t0 = time.perf_counter()
  model = create_model(config)
  trainable = models.trainable_mask(model, take_seed(state.params, 0))
  one = functools.partial(train_step, batch_size=config.batch_size, augment_cfg=config.augment,
                          mesh=mesh, trainable=trainable)

  def step(state, totals, bad, images, labels, perm, i, rng):
    new_state, new_totals = one(state, totals, images, labels, perm, i, rng)
    bad = jnp.where((bad < 0) & ~jnp.isfinite(new_totals.loss.total), new_state.step, bad)
    return new_state, new_totals, bad

  step = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None, None, 0, None, 0)),
                 donate_argnums=(0, 1, 2))
  bad = parallel.replicate(no_bad_step(len(rng)), mesh)
  compiled = step.lower(state, totals, bad, images, labels, perm, np.int32(0), rng).compile()
  return compiled, time.perf_counter() - t0


def no_bad_step(num_seeds: int) -> np.ndarray:
  return np.full((num_seeds,), -1, np.int32)


def _permutations(keys, epoch, n, steps, batch_size):
  """Each seed's shuffle of the training set for `epoch` (a run with that seed alone gets the same)."""
  return jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n)[
      :steps * batch_size])(keys)


def seed_history(history: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
  """Seed k's own history (the form of a single-seed run) from a multi-seed one."""
  out = []
  for h in history:
    h = dict(h)
    for key, values in h.pop('per_seed', {}).items():
      h[key] = values[k]
    out.append(h)
  return out


def _flat_hparams(config) -> dict[str, Any]:
  flat = {}
  def walk(d, prefix=''):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, f'{prefix}{k}.')
      else:
        flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
  walk(config.to_dict())
  return flat


def _progress_bar(config, total, desc):
  enabled = config.progress_bar == 'on' or (config.progress_bar == 'auto' and sys.stderr.isatty())
  if not enabled:
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _write_json(path: str, obj: Any) -> None:
  """Writes through a temporary file so a reader never sees half a file (process 0 only)."""
  if jax.process_index() != 0:
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def _seed_results(history, test_metrics, seed) -> dict[str, Any]:
  best_epoch = checkpoint.best_epoch(history)
  best = history[best_epoch - 1]
  return {
      'seed': seed,
      'best_epoch': best_epoch,
      'test_accuracy': test_metrics['accuracy'],
      'test_loss': test_metrics['loss'],
      'validation_accuracy': best['validation_accuracy'],
      'validation_loss': best['validation_loss'],
  }


def _results(config, variables, history, meta, per_seed) -> dict[str, Any]:
  train_images = sum(h['train_images'] for h in history)
  train_time = sum(h['train_seconds'] for h in history)
  results = {
      'model': config.model,
      'num_params': models.count_params(variables),
      'num_trainable_params': models.count_trainable(create_model(config), variables['params']),
      'epochs': len(history),
      **per_seed[0],
      'train_seconds': sum(h['seconds'] for h in history),
      # Images of all seeds together.
      'train_images_per_second': train_images * len(per_seed) / train_time,
      'compile_seconds': meta['compile_seconds'],
      'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()],
      'history': history,
  }
  if config.model == 'mobilenetv2_transfer':
    results['backbone'] = pretrained.describe(config.backbone.weights)
  if len(per_seed) > 1:
    results.update(seed_means(per_seed))
    results['seed'] = [r['seed'] for r in per_seed]
    results['best_epoch'] = [r['best_epoch'] for r in per_seed]
    results['per_seed'] = per_seed
  return results


def seed_means(per_seed: list[dict[str, Any]]) -> dict[str, float]:
  """Means over seeds of the final metrics, with the sample standard deviation (ddof=1) beside."""
  out = {}
  for key in ('test_accuracy', 'test_loss', 'validation_accuracy', 'validation_loss'):
    if per_seed[0][key] is not None:  # test metrics are None when the test split was skipped
      values = np.array([r[key] for r in per_seed])
      out[key], out[key + '_std'] = float(values.mean()), float(values.std(ddof=1))
  return out


def _epoch_entry(epoch, train_metrics, val_metrics, images, train_seconds, seconds):
  """A history entry: seed means at top level, each seed's values under 'per_seed' if N > 1."""
  per_seed = {
      'train_loss': [float(v) for v in train_metrics['loss']],
      'train_accuracy': [float(v) for v in train_metrics['accuracy']],
      'validation_loss': [m['loss'] for m in val_metrics],
      'validation_accuracy': [m['accuracy'] for m in val_metrics],
  }
  entry = {'epoch': epoch, **{k: float(np.mean(v)) for k, v in per_seed.items()},
           'train_images': images, 'train_seconds': train_seconds, 'seconds': seconds}
  if len(val_metrics) > 1:
    entry['per_seed'] = per_seed
  return entry


# Fields that do not change what is computed; a workdir may be resumed with other values.
NOT_COMPARED = ('progress_bar', 'report_every_steps', 'data_dir', 'archives_dir')
NOT_COMPARED_PREFIXES = ('report.',)  # a report config's description of itself (title, seeds).


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """'field: old -> new' for every (dotted) field that differs, ignoring NOT_COMPARED."""
  flat = lambda d: {k: v for k, v in _flat_hparams(ml_collections.ConfigDict(d)).items()
                    if k not in NOT_COMPARED and not k.startswith(NOT_COMPARED_PREFIXES)}
  old, new = flat(old), flat(new)
  return [f'{k}: {old.get(k, "(absent)")!r} -> {new.get(k, "(absent)")!r}'
          for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


class _StopRequested:
  """SIGINT/SIGTERM during training: remember the signal; the loop saves and exits."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:  # a second Ctrl-C: stop at once, as Python would.
      raise KeyboardInterrupt
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_config_change: bool = False) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns and writes results.json. A finished run only reports.

  A workdir whose config.json differs from `config` is refused (the differing fields are listed)
  unless `allow_config_change`; so is a workdir another live process is training in.
  """
  validate_config(config)
  path = workdir_lib.check(workdir)
  # Several hosts share one workdir and only process 0 writes to it; it alone holds the lock.
  with workdir_lib.lock(path) if jax.process_index() == 0 else contextlib.nullcontext():
    return _train_and_evaluate(config, workdir, allow_config_change)


def _train_and_evaluate(config, workdir: str, allow_config_change: bool) -> dict[str, Any]:
  results_path = os.path.join(workdir, 'results.json')
  config_path = os.path.join(workdir, 'config.json')
  new_config = json.loads(config.to_json_best_effort())
  if os.path.exists(config_path):
    with open(config_path) as f:
      differences = config_differences(json.load(f), new_config)
    if differences and not allow_config_change:
      raise ConfigMismatchError(
          f'{workdir} holds a run with another config; differing fields: '
          + '; '.join(differences) + '. Use a new --workdir, or pass --allow_config_change to '
          'continue this run under the new config (e.g. more epochs; a schedule that depends on '
          'num_epochs then changes mid-run).')
    if differences:
      logging.warning('Continuing %s under a changed config: %s', workdir, differences)
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
    if results['epochs'] >= config.num_epochs:
      logging.info('%s already holds a finished run; nothing to train.', workdir)
      print(summary_line(results))
      return results

  _write_json(config_path, new_config)
  data = input_pipeline.load(config)
  train = data['train']
  n_train = len(train['label'])
  batch_size = config.batch_size
  if n_train < batch_size:
    raise ConfigError(f'config.train_split={config.train_split!r} holds {n_train} images, fewer '
                      f'than config.batch_size={batch_size}.')
  steps_per_epoch = n_train // batch_size
  model = create_model(config)
  run_seeds = seeds(config)
  num_seeds = len(run_seeds)
  # `best` holds each seed's variables from its best validation epoch so far; `totals` the
  # training metrics of the epoch in progress (for a checkpoint taken in the middle of one).
  ckpt = checkpoint_item(config, model, steps_per_epoch)
  mngr, latest, restored, meta = checkpoint.restore_latest(workdir, config.keep_checkpoints, ckpt)
  if latest is None:
    meta = {'history': [], 'compile_seconds': None, 'epoch_steps_done': 0,
            'epoch_seconds_done': 0.0}
  else:
    ckpt = restored
    logging.info('Resumed from the checkpoint at step %d (%d epochs and %d steps done).', latest,
                 len(meta['history']), meta['epoch_steps_done'])
  state, best = ckpt['state'], ckpt['best']
  history = meta['history']
  start_epoch = len(history)
  best_accuracy = [max([h['validation_accuracy'] for h in seed_history(history, k)],
                       default=-1.0) for k in range(num_seeds)]

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start_epoch == 0:
    writer.write_hparams(_flat_hparams(config))
  one_seed = take_seed(state.variables, 0)
  logging.info('%s parameters:\n%s', config.model,
               parameter_overview.get_parameter_overview(one_seed))
  print(f'{config.model}: {models.count_params(one_seed):,} parameters '
        f'({models.count_trainable(model, one_seed["params"]):,} trainable)'
        + (f', seeds {run_seeds} trained together' if num_seeds > 1 else ''), flush=True)

  mesh = parallel.create_mesh()
  state, best, partial_totals = parallel.replicate((state, best, ckpt['totals']), mesh)
  images, labels = parallel.replicate((train['image'], train['label']), mesh)
  validation = evaluate.Evaluator(model, data['validation']['image'],
                                  data['validation']['label'], config.eval_batch_size, mesh)
  rngs = parallel.replicate(jax.vmap(jax.random.key)(jnp.array(run_seeds)), mesh)
  shuffle_rngs = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(rngs)
  permutations = jax.jit(_permutations, static_argnums=(2, 3, 4),
                         out_shardings=parallel.replicated(mesh))
  epoch_perm = lambda epoch: permutations(shuffle_rngs, epoch, n_train, steps_per_epoch,
                                          batch_size)
  new_totals = lambda: parallel.replicate(empty_totals(num_seeds), mesh)
  compiled_step, meta['compile_seconds'] = compile_train_step(
      config, state, new_totals(), images, labels, epoch_perm(1), rngs, mesh)
  logging.info('Compiled the train step in %.1f s.', meta['compile_seconds'])
  keep_best = jax.jit(lambda improved, new, old: jax.tree_util.tree_map(
      lambda n, o: jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old))

  total_steps = config.num_epochs * steps_per_epoch
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.report_every_steps)
  with _StopRequested() as stop:
    for epoch in range(start_epoch + 1, config.num_epochs + 1):
      # A resumed mid-epoch checkpoint continues its epoch at the next step.
      first = meta['epoch_steps_done'] if epoch == start_epoch + 1 else 0
      epoch_start = time.perf_counter() - (meta['epoch_seconds_done'] if first else 0.0)
      perm = epoch_perm(epoch)
      totals = partial_totals if first else new_totals()
      bad = parallel.replicate(no_bad_step(num_seeds), mesh)
      bar = _progress_bar(config, steps_per_epoch, f'epoch {epoch}/{config.num_epochs}')
      if bar is not None:
        bar.update(first)
      for i in range(first, steps_per_epoch):
        state, totals, bad = compiled_step(state, totals, bad, images, labels, perm, np.int32(i),
                                           rngs)
        report_progress((epoch - 1) * steps_per_epoch + i + 1)
        if bar is not None:
          bar.update()
        if stop.signum is not None:
          meta.update(epoch_steps_done=i + 1,
                      epoch_seconds_done=time.perf_counter() - epoch_start)
          step = (epoch - 1) * steps_per_epoch + i + 1
          checkpoint.save(mngr, step, {'state': state, 'best': best, 'totals': totals}, meta)
          print(f'\nStopped by signal {stop.signum} at step {i + 1} of epoch {epoch}; saved the '
                f'checkpoint at step {step}. Run the same command to continue.', flush=True)
          writer.flush()
          raise SystemExit(128 + stop.signum)
      per_seed_totals = [take_seed(totals, k).compute() for k in range(num_seeds)]  # waits.
      train_metrics = {key: np.array([float(m[key]) for m in per_seed_totals])
                       for key in ('loss', 'accuracy')}
      train_seconds = time.perf_counter() - epoch_start
      if bar is not None:
        bar.close()
      bad = np.asarray(bad)
      for k, loss in enumerate(train_metrics['loss']):
        if not math.isfinite(loss):
          in_epoch = int(bad[k]) - (epoch - 1) * steps_per_epoch
          raise errors.TrainingDivergedError(
              f'The training loss of seed {run_seeds[k]} became {loss} at step {int(bad[k])} '
              f'(step {in_epoch} of epoch {epoch}); the run stops here and the last checkpoint '
              f'(after epoch {epoch - 1}) is kept. Lower config.learning_rate.')
      with report_progress.timed('validation'):
        val_metrics = [validation(take_seed(state.variables, k)) for k in range(num_seeds)]
      improved = np.array([m['accuracy'] > b for m, b in zip(val_metrics, best_accuracy)])
      best_accuracy = [max(m['accuracy'], b) for m, b in zip(val_metrics, best_accuracy)]
      best = keep_best(improved, state.variables, best)
      history.append(_epoch_entry(epoch, train_metrics, val_metrics,
                                  steps_per_epoch * batch_size, train_seconds,
                                  time.perf_counter() - epoch_start))
      step = epoch * steps_per_epoch
      writer.write_scalars(step, {k: v for k, v in history[-1].items()
                                  if k not in ('train_images', 'per_seed')})
      writer.write_scalars(step, {'train_images_per_second': steps_per_epoch * batch_size *
                                  num_seeds / train_seconds})
      logging.info('epoch %d: %s', epoch, json.dumps(history[-1]))
      h = history[-1]
      print(f'epoch {epoch:3d}/{config.num_epochs}  train loss {h["train_loss"]:.4f} '
            f'acc {h["train_accuracy"]:.4f}  val loss {h["validation_loss"]:.4f} '
            f'acc {h["validation_accuracy"]:.4f}' + (' (seed means)' if num_seeds > 1 else '')
            + f'  {h["seconds"]:.1f}s', flush=True)
      meta.update(epoch_steps_done=0, epoch_seconds_done=0.0)
      checkpoint.save(mngr, step, {'state': state, 'best': best, 'totals': new_totals()}, meta,
                      metric=h['validation_accuracy'])

  last_step = len(history) * steps_per_epoch
  per_seed = []
  for k, seed in enumerate(run_seeds):
    if 'test' not in data:  # test_split='' (e.g. sweep trials): the test split is never read.
      per_seed.append(_seed_results(seed_history(history, k), {'accuracy': None, 'loss': None},
                                    seed))
      continue
    # One seed: the report goes to the workdir; several: to workdir/seed_<s>/ each.
    own_history = seed_history(history, k)
    report_dir = workdir if num_seeds == 1 else os.path.join(workdir, f'seed_{seed}')
    os.makedirs(report_dir, exist_ok=True)
    test_metrics = evaluate.report_on_test(
        model, take_seed(best, k), data['test'], config.eval_batch_size, report_dir, own_history,
        writer if num_seeds == 1 else None, last_step, mesh)
    per_seed.append(_seed_results(own_history, test_metrics, seed))
  results = _results(config, take_seed(best, 0), history, meta, per_seed)
  if results['test_accuracy'] is not None:
    writer.write_scalars(last_step, {'test_loss': results['test_loss'],
                                     'test_accuracy': results['test_accuracy']})
  writer.flush()
  writer.close()
  _write_json(results_path, results)
  print(summary_line(results), flush=True)
  return results


def summary_line(results: dict[str, Any]) -> str:
  model = results['model']
  if 'backbone' in results:
    model += (' (pretrained backbone)' if results['backbone']['pretrained']
              else ' (random backbone, NOT pretrained)')
  if results['test_accuracy'] is None:
    return (f'{model}: validation accuracy {results["validation_accuracy"]:.4f} '
            f'(no test split evaluated), {results["epochs"]} epochs, '
            f'{results["train_seconds"]:.0f} s')
  if 'per_seed' in results:
    return (f'{model}: test accuracy {results["test_accuracy"]:.4f} ± '
            f'{results["test_accuracy_std"]:.4f} over {len(results["per_seed"])} seeds '
            f'({", ".join("%.4f" % r["test_accuracy"] for r in results["per_seed"])}), '
            f'validation accuracy {results["validation_accuracy"]:.4f} ± '
            f'{results["validation_accuracy_std"]:.4f}, {results["epochs"]} epochs, '
            f'{results["train_images_per_second"]:.0f} train images/s (all seeds), '
            f'{results["train_seconds"]:.0f} s')
  return (f'{model}: test accuracy {results["test_accuracy"]:.4f}, test loss '
          f'{results["test_loss"]:.4f} (best validation epoch {results["best_epoch"]} of '
          f'{results["epochs"]}, validation accuracy {results["validation_accuracy"]:.4f}), '
          f'{results["train_images_per_second"]:.0f} train images/s, '
          f'{results["train_seconds"]:.0f} s')
