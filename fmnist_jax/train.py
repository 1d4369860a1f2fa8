"""Training: the jitted train step, and one loop over the global step (`train_and_evaluate`).

The loop, in the shape of flax's examples/imagenet, runs from the restored step to the last; what
the run built once (model, data on the mesh, compiled step, evaluators, writer, checkpoint manager)
and what it carries between steps (state, best weights, history) live on one `Run` object, whose
named calls are the loop's steps: `train` (one dispatch of k steps), `end_epoch` (validate, keep
the best weights, log, checkpoint), `save_and_exit` (a signal), `finish` (test, results.json).

Reproducibility: the dropout and augmentation keys of a step are functions of the seed and the
global step, and the shuffle of an epoch of the seed and the epoch (`streams`), so a run resumed
from a checkpoint continues exactly as the uninterrupted run would have. Several seeds are trained
together along a leading seed axis (`seeds`).
"""
from __future__ import annotations

import contextlib
import functools
import glob
import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable

from absl import logging
from clu import parameter_overview
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fmnist_jax import augment
from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import defaults
from fmnist_jax import console
from fmnist_jax import errors
from fmnist_jax import evaluate
from fmnist_jax import files
from fmnist_jax import input_pipeline
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import provenance
from fmnist_jax import results as results_lib
from fmnist_jax import seeds
from fmnist_jax import state as state_lib
from fmnist_jax import streams
from fmnist_jax import workdir as workdir_lib
from fmnist_jax import writers



# ----------------------------------------------------------------------------------------------
# The step.

def gather_batch(images, labels, perm, i, batch_size: int, mesh=None):
  """Batch `i` of the epoch's permutation, split across the mesh's devices when there is one."""
  idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
  x, y = images[idx], labels[idx]
  return (x, y) if mesh is None else parallel.shard_batch((x, y), mesh)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Per-example cross-entropy; with label smoothing, against optax.smooth_labels' targets."""
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def train_step(state: state_lib.TrainState, totals: metrics.Metrics, images, labels, perm, i, rng, *,
               batch_size: int, augment_cfg, mesh=None, trainable=None,
               label_smoothing: float = 0.0):
  """One optimizer step on batch `i` of the epoch's permutation; everything stays on the device.

  `rng` is the seed's `streams.step_root`.

  `trainable` (a tree of bools like the params, None: all) stops the gradient at frozen
  parameters, so their weight gradients are never computed.
  """
  x, y = gather_batch(images, labels, perm, i, batch_size, mesh)
  keys = streams.step_keys(rng, state.step)
  x = augment.augment(x.astype(jnp.float32) / 255.0, keys['augment'], augment_cfg)
  x = (x - input_pipeline.MEAN) / input_pipeline.STD

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
    loss = cross_entropy(logits, y, label_smoothing).mean()
    return loss, (logits, updates)

  (_, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads,
                                batch_stats=updates.get('batch_stats', state.batch_stats))
  return state, totals.merge(metrics.batch_metrics(logits, y))


def compile_train_step(config, model, state, totals, images, labels, perm, rng, mesh):
  """AOT-compiles the train step for one group of seeds (`seeds.groups`) of state, totals, perm, rng.

  Returns ({k: step}, seconds) for k in {1, config.steps_per_dispatch};
  step(state, totals, bad, images, labels, perm, i, rng) -> (state, totals, bad) runs the k
  optimizer steps on batches i .. i+k-1 in one program (a lax.scan when k > 1), for the seeds of
  one group: call it on each part of `seeds.split`. `bad` (int32, one per seed, -1 while all is
  well) records the first optimizer step whose loss was not finite, so a NaN is reported with its
  step without a sync per step. The images and labels are shared by all seeds.
  """
  t0 = time.perf_counter()
  state, totals, perm, rng = seeds.split((state, totals, perm, rng),
                                         seeds.groups(len(rng), mesh))[0]
  steps_per_dispatch = config.steps_per_dispatch
  trainable = models.trainable_mask(model, seeds.take(state.params, 0))
  one = functools.partial(train_step, batch_size=config.batch_size, augment_cfg=config.augment,
                          mesh=mesh, trainable=trainable,
                          label_smoothing=config.label_smoothing)

  def step(state, totals, first_nonfinite_step, images, labels, perm, i, rng):
    new_state, new_totals = one(state, totals, images, labels, perm, i, rng)
    first_nonfinite_step = jnp.where(
        (first_nonfinite_step < 0) & ~jnp.isfinite(new_totals.loss.total), new_state.step,
        first_nonfinite_step)
    return new_state, new_totals, first_nonfinite_step

  def steps(k, state, totals, first_nonfinite_step, images, labels, perm, i, rng):
    """k consecutive steps (batches i .. i+k-1) in one program."""
    if k == 1:
      return step(state, totals, first_nonfinite_step, images, labels, perm, i, rng)
    def body(carry, j):
      return step(*carry, images, labels, perm, i + j, rng), None
    carry, _ = jax.lax.scan(body, (state, totals, first_nonfinite_step), jnp.arange(k))
    return carry

  none_yet = parallel.replicate(no_nonfinite_step(len(rng)), mesh)
  compiled = {}
  for k in sorted({1, steps_per_dispatch}):
    fn = jax.jit(_over_seeds(functools.partial(steps, k), len(rng)), donate_argnums=(0, 1, 2))
    compiled[k] = fn.lower(state, totals, none_yet, images, labels, perm, np.int32(0),
                           rng).compile()
  return compiled, time.perf_counter() - t0


def step_seeds(step, parts: list, images, labels, i: int) -> list:
  """One call of the compiled `step` (batches from i) for each part of `seeds.split` of
  (state, totals, bad, perm, rng); the parts after it."""
  return [(*step(s, t, b, images, labels, p, np.int32(i), r), p, r) for s, t, b, p, r in parts]


def _over_seeds(fn, num_seeds: int):
  """`fn` over the seed axis of (state, totals, bad, perm, rng) of one group of seeds.

  Elsewhere than on a CPU vmapped. On a CPU the seeds' plain steps one after another in the
  program (one seed, except over several devices): even a vmap of size 1 costs about 17 % there
  (measured).
  """
  if jax.default_backend() != 'cpu':
    return jax.vmap(fn, in_axes=(0, 0, 0, None, None, 0, None, 0))

  def looped(state, totals, bad, images, labels, perm, i, rng):
    outs = [fn(*seeds.take((state, totals, bad), k), images, labels, perm[k], i, rng[k])
            for k in range(num_seeds)]
    return seeds.stack(outs)
  return looped


def no_nonfinite_step(num_seeds: int) -> np.ndarray:
  return np.full((num_seeds,), -1, np.int32)


def _permutations(keys, epoch, n, steps, batch_size):
  """Each seed's shuffle of the training set for `epoch` (a run with that seed alone gets the same)."""
  return jax.vmap(lambda k: jax.random.permutation(streams.epoch_shuffle_key(k, epoch), n)[
      :steps * batch_size])(keys)


# ----------------------------------------------------------------------------------------------
# The run: train_and_evaluate, its one loop over the global step, and the Run it steps.

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_config_change: bool = False,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns and writes results.json. A finished run only reports.

  A workdir whose config.json differs from `config` is refused (the differing fields are listed)
  unless `allow_config_change`; so is a workdir another live process is training in. `on_epoch`
  gets each epoch's history entry once its checkpoint is saved (a sweep's early stopping listens).
  """
  config = defaults.complete(config)  # every field present: the code reads config.x, nothing else
  config_check.validate_config(config)
  provenance.code()  # read now: the code this process runs, not what is on disk when it ends
  path = workdir_lib.check(workdir)
  # Several hosts share one workdir and only process 0 writes to it; it alone holds the lock.
  with workdir_lib.lock(path) if jax.process_index() == 0 else contextlib.nullcontext():
    finished = _finished_run(config, workdir, allow_config_change)
    return finished if finished is not None else _train(config, workdir, on_epoch)


def _train(config, workdir: str, on_epoch=None) -> dict[str, Any]:
  """From the restored global step to the last: k steps a dispatch, an epoch's end when its steps
  are done (also a resumed epoch whose steps were all done), a signal saves and exits."""
  run = Run(config, workdir, on_epoch)
  with _StopRequested() as stop:
    step = run.first_step
    while step < run.num_steps or run.epoch_done(step):
      if run.epoch_done(step):
        run.end_epoch()
        continue
      step = run.train(step)
      if stop.signum is not None:
        run.save_and_exit(step, stop.signum)
  return run.finish()


def _finished_run(config, workdir: str, allow_config_change: bool) -> dict[str, Any] | None:
  """The workdir's results if its run is finished; refuses a workdir of another config.

  A damaged config.json is rebuilt from the copy in the newest checkpoint; a damaged results.json
  is set aside, and the run's final checkpoint writes it again.
  """
  saved = _saved_config(workdir)
  if saved is not None:
    differences = config_check.config_differences(saved, json.loads(config.to_json_best_effort()))
    if differences and not allow_config_change:
      raise errors.ConfigMismatchError(
          f'{workdir} holds a run with another config; differing fields: '
          + '; '.join(differences) + '. Use a new --workdir, or pass --allow_config_change to '
          'continue this run under the new config (e.g. more epochs; a schedule that depends on '
          'num_epochs then changes mid-run).')
    if differences:
      logging.warning('Continuing %s under a changed config: %s', workdir, differences)
  results_path = os.path.join(workdir, 'results.json')
  try:
    results = files.read_json(results_path, '', required=results_lib.REQUIRED)
  except errors.DamagedFileError as e:
    console.warn(f'{e} It is rebuilt from the run\'s final checkpoint.')
    os.replace(results_path, results_path + '.damaged')
    return None
  if results is not None and results['epochs'] >= config.num_epochs:
    made_by = provenance.results_version(results)
    if made_by != provenance.RESULTS_VERSION:
      raise errors.WorkdirError(
          f'{workdir} holds a finished run of results version {made_by}; this code is results '
          f'version {provenance.RESULTS_VERSION} and gives other numbers. Use a new --workdir '
          'to train it with this code (or move this one away).')
    logging.info('%s already holds a finished run; nothing to train.', workdir)
    print(results_lib.summary_line(results))
    return results
  return None


def _saved_config(workdir: str) -> dict[str, Any] | None:
  """The workdir's config.json (None for a new workdir); when it is damaged, the copy that every
  checkpoint carries; DamagedFileError when there is neither."""
  path = os.path.join(workdir, 'config.json')
  try:
    return files.read_json(path, '', required=config_check.REQUIRED)
  except errors.DamagedFileError as e:
    copy = checkpoint.saved_config(workdir)
    if copy is not None:
      console.warn(f'{e} Rebuilt from the copy in checkpoint {copy[0]}.')
      results_lib.write_json(path, copy[1])
      return copy[1]
    if glob.glob(os.path.join(workdir, 'checkpoints', '[0-9]*')):
      raise errors.DamagedFileError(
          f'{e} No checkpoint holds a copy to rebuild it from: restore it, or delete it to '
          'continue this run under the command\'s config.') from None
    console.warn(f'{e} The run has no checkpoint yet, so nothing is lost: it is written again.')
    return None


class Run:
  """What a training built once, and what it carries from step to step.

  Built once: the model, the data on the mesh, the evaluators, the compiled step, the writer and
  the checkpoint manager. Carried: each seed's state (between dispatches split into the seed
  groups' `parts`), its best-validation variables, the history and the checkpoint's meta.
  """

  def __init__(self, config, workdir: str, on_epoch=None):
    self.config, self.workdir, self.on_epoch = config, workdir, on_epoch
    self.weights = state_lib.backbone_weights(config)  # resolved (or downloaded) once per run
    self.data = input_pipeline.load(config)
    n_train = len(self.data['train']['label'])
    if n_train < config.batch_size:
      raise errors.ConfigError(f'config.train_split={config.train_split!r} holds {n_train} '
                               f'images, fewer than config.batch_size={config.batch_size}.')
    self.steps_per_epoch = n_train // config.batch_size
    self.num_steps = config.num_epochs * self.steps_per_epoch
    self.model = state_lib.create_model(config)
    self.run_seeds = seeds.of(config)
    # `best`: each seed's variables from its best validation epoch so far; `totals`: the training
    # metrics of the epoch in progress (for a checkpoint taken in the middle of one).
    self.mngr, ckpt, self.meta = _restore_or_init(config, self.model, workdir,
                                                  self.steps_per_epoch, self.weights)
    # Written once the checkpoint is known to fit it, so a refused resume leaves the workdir as
    # it was; every checkpoint carries a copy (a damaged config.json is rebuilt from it).
    self.meta['config'] = json.loads(config.to_json_best_effort())
    results_lib.write_json(os.path.join(workdir, 'config.json'), self.meta['config'])
    self.history = self.meta['history']
    self.writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    if not self.history:
      self.writer.write_hparams(config_check.flat_hparams(config))
    _describe_model(config, self.model, ckpt['state'])
    self._put_on_mesh(ckpt)
    # A mid-epoch checkpoint of a run whose steps per epoch have since shrunk (a batch size
    # changed under --allow_config_change) ends that epoch at once.
    self.meta['epoch_steps_done'] = min(self.meta['epoch_steps_done'], self.steps_per_epoch)
    self.first_step = len(self.history) * self.steps_per_epoch + self.meta['epoch_steps_done']
    self.best_accuracy = [max([h['validation_accuracy'] for h in seeds.history(self.history, k)],
                              default=-1.0) for k in range(len(self.run_seeds))]
    self.parts = self.bar = None  # set while an epoch is in progress

  def _put_on_mesh(self, ckpt) -> None:
    """Puts the state and data on the mesh, builds the evaluators and compiles the step."""
    config = self.config
    self.mesh = mesh = parallel.create_mesh()
    self.state, self.best, self.partial_totals = parallel.replicate(
        (ckpt['state'], ckpt['best'], ckpt['totals']), mesh)
    train = self.data['train']
    n_train, batch_size = len(train['label']), config.batch_size
    self.images, self.labels = parallel.replicate((train['image'], train['label']), mesh)
    self.validation = evaluate.for_split(config, self.model, self.data['validation'], mesh)
    seed_keys = parallel.replicate(jax.vmap(streams.seed_key)(jnp.array(self.run_seeds)), mesh)
    self.rngs = jax.vmap(streams.step_root)(seed_keys)
    shuffle_rngs = jax.vmap(streams.shuffle_root)(seed_keys)
    permutations = jax.jit(_permutations, static_argnums=(2, 3, 4),
                           out_shardings=parallel.replicated(mesh))
    self.epoch_perm = lambda epoch: permutations(shuffle_rngs, epoch, n_train,
                                                 self.steps_per_epoch, batch_size)
    self.compiled_step, self.meta['compile_seconds'] = compile_train_step(
        config, self.model, self.state, self.new_totals(), self.images, self.labels,
        self.epoch_perm(1), self.rngs, mesh)
    logging.info('Compiled the train step in %.1f s.', self.meta['compile_seconds'])
    self.keep_best = jax.jit(lambda improved, new, old: jax.tree_util.tree_map(
        lambda n, o: jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old))
    self.report_progress = periodic_actions.ReportProgress(
        num_train_steps=self.num_steps, writer=self.writer,
        every_steps=config.report_every_steps)

  def new_totals(self):
    return parallel.replicate(state_lib.empty_totals(len(self.run_seeds)), self.mesh)

  def epoch_done(self, step: int) -> bool:
    """Whether `step` ends an epoch that is not ended yet (validated, saved)."""
    return step == (len(self.history) + 1) * self.steps_per_epoch

  def _begin_epoch(self, epoch: int, first: int) -> None:
    """Splits the state into seed groups with the epoch's shuffle; a resumed epoch continues."""
    totals = self.partial_totals if first else self.new_totals()
    self.epoch_start = time.perf_counter() - (self.meta['epoch_seconds_done'] if first else 0.0)
    bad = parallel.replicate(no_nonfinite_step(len(self.run_seeds)), self.mesh)
    self.parts = seeds.split((self.state, totals, bad, self.epoch_perm(epoch), self.rngs),
                             seeds.groups(len(self.run_seeds), self.mesh))
    self.bar = _progress_bar(self.config, self.steps_per_epoch,
                             f'epoch {epoch}/{self.config.num_epochs}')
    if self.bar is not None:
      self.bar.update(first)

  def train(self, step: int) -> int:
    """One dispatch from global step `step`: k steps (the epoch's tail one by one); the next step."""
    epoch, i = step // self.steps_per_epoch + 1, step % self.steps_per_epoch
    if self.parts is None:
      self._begin_epoch(epoch, i)
    k_max = max(self.compiled_step)
    k = k_max if i + k_max <= self.steps_per_epoch else 1
    self.parts = step_seeds(self.compiled_step[k], self.parts, self.images, self.labels, i)
    for done in range(step + 1, step + k + 1):  # clu's periodic actions want every step, once
      self.report_progress(done)
    if self.bar is not None:
      self.bar.update(k)
    return step + k

  def _join(self):
    """(state, totals, first non-finite step) of all seeds from the groups' parts."""
    return seeds.join([part[:3] for part in self.parts])

  def save_and_exit(self, step: int, signum: int) -> None:
    """A signal: saves a checkpoint in the middle of the epoch and exits; a rerun continues."""
    epoch, i = (step - 1) // self.steps_per_epoch + 1, step - len(self.history) * self.steps_per_epoch
    state, totals, _ = self._join()
    self.meta.update(epoch_steps_done=i, epoch_seconds_done=time.perf_counter() - self.epoch_start)
    saved_at = optimizer_step(state)
    checkpoint.save(self.mngr, saved_at, {'state': state, 'best': self.best, 'totals': totals},
                    self.meta)
    print(f'\nStopped by signal {signum} at step {i} of epoch {epoch}; saved the checkpoint at '
          f'step {saved_at}. Run the same command to continue.', flush=True)
    self.writer.flush()
    raise SystemExit(128 + signum)

  def end_epoch(self) -> None:
    """Checks the loss, validates, keeps each seed's best variables, logs, saves a checkpoint."""
    epoch = len(self.history) + 1
    if self.parts is None:  # resumed from a checkpoint taken after the epoch's last step
      self._begin_epoch(epoch, self.steps_per_epoch)
    if self.bar is not None:
      self.bar.close()
    self.state, totals, first_nonfinite_step = self._join()
    self.parts = self.bar = None
    num_seeds = len(self.run_seeds)
    per_seed_totals = [seeds.take(totals, k).compute() for k in range(num_seeds)]  # waits.
    train_metrics = {key: np.array([float(m[key]) for m in per_seed_totals])
                     for key in ('loss', 'accuracy')}
    train_seconds = time.perf_counter() - self.epoch_start
    self._stop_if_diverged(train_metrics['loss'], np.asarray(first_nonfinite_step), epoch)
    with self.report_progress.timed('validation'):
      val_metrics = [self.validation(seeds.take(self.state.eval_variables, k))
                     for k in range(num_seeds)]
    improved = np.array([m['accuracy'] > b for m, b in zip(val_metrics, self.best_accuracy)])
    self.best_accuracy = [max(m['accuracy'], b) for m, b in zip(val_metrics, self.best_accuracy)]
    self.best = self.keep_best(improved, self.state.eval_variables, self.best)
    self._log_epoch(epoch, train_metrics, val_metrics, train_seconds)
    self.meta.update(epoch_steps_done=0, epoch_seconds_done=0.0)
    checkpoint.save(self.mngr, optimizer_step(self.state),
                    {'state': self.state, 'best': self.best, 'totals': self.new_totals()},
                    self.meta, metric=self.history[-1]['validation_accuracy'])
    if self.on_epoch is not None:
      self.on_epoch(self.history[-1])

  def _log_epoch(self, epoch: int, train_metrics, val_metrics, train_seconds: float) -> None:
    """The epoch's history entry, TensorBoard scalars, log entry and the one terminal line."""
    steps, num_seeds = self.steps_per_epoch, len(self.run_seeds)
    self.history.append(results_lib.epoch_entry(epoch, train_metrics, val_metrics,
                                                steps * self.config.batch_size, train_seconds,
                                                time.perf_counter() - self.epoch_start))
    h = self.history[-1]
    self.writer.write_scalars(epoch * steps, {k: v for k, v in h.items()
                                              if k not in ('train_images', 'per_seed')})
    self.writer.write_scalars(epoch * steps, {'train_images_per_second': steps *
                                              self.config.batch_size * num_seeds / train_seconds})
    logging.info('epoch %d: %s', epoch, json.dumps(h))
    print(f'epoch {epoch:3d}/{self.config.num_epochs}  train loss {h["train_loss"]:.4f} '
          f'acc {h["train_accuracy"]:.4f}  val loss {h["validation_loss"]:.4f} '
          f'acc {h["validation_accuracy"]:.4f}' + (' (seed means)' if num_seeds > 1 else '')
          + f'  {h["seconds"]:.1f}s', flush=True)

  def _stop_if_diverged(self, losses, first_nonfinite_step, epoch: int) -> None:
    """A NaN or infinite loss stops the run loudly, naming the seed and the step."""
    for k, loss in enumerate(losses):
      if not math.isfinite(loss):
        step = int(first_nonfinite_step[k])
        in_epoch = step - (epoch - 1) * self.steps_per_epoch
        raise errors.TrainingDivergedError(
            f'The training loss of seed {self.run_seeds[k]} became {loss} at step {step} '
            f'(step {in_epoch} of epoch {epoch}); the run stops here and the last checkpoint '
            f'(after epoch {epoch - 1}) is kept. Lower config.learning_rate.')

  def finish(self) -> dict[str, Any]:
    """Each seed's best variables on the test split (its report files), its final variables on
    the test split (the reports' protocol; selects nothing), then results.json."""
    config, data, history = self.config, self.data, self.history
    last_step = len(history) * self.steps_per_epoch
    num_seeds = len(self.run_seeds)
    per_seed = []
    test = data.get('test')
    tester = test and evaluate.for_split(config, self.model, test, self.mesh)
    for k, seed in enumerate(self.run_seeds):
      own_history = seeds.history(history, k)
      if 'test' not in data:  # test_split='' (e.g. sweep trials): the test split is never read.
        per_seed.append(results_lib.seed_results(own_history, {'accuracy': None, 'loss': None},
                                                 seed))
        continue
      # One seed: the report goes to the workdir; several: to workdir/seed_<s>/ each.
      report_dir = self.workdir if num_seeds == 1 else os.path.join(self.workdir, f'seed_{seed}')
      os.makedirs(report_dir, exist_ok=True)
      test_metrics = evaluate.report_on_test(
          tester, seeds.take(self.best, k), test, report_dir, own_history,
          self.writer if num_seeds == 1 else None, last_step)
      final_metrics = tester(seeds.take(self.state.eval_variables, k))
      per_seed.append(results_lib.seed_results(own_history, test_metrics, seed, final_metrics))
    results = results_lib.build(config, self.model, seeds.take(self.best, 0), self.weights,
                                history, self.meta, per_seed)
    if results['test_accuracy'] is not None:
      self.writer.write_scalars(last_step, {'test_loss': results['test_loss'],
                                            'test_accuracy': results['test_accuracy']})
    self.writer.flush()
    self.writer.close()
    results_lib.write_json(os.path.join(self.workdir, 'results.json'), results)
    print(results_lib.summary_line(results), flush=True)
    return results


def _restore_or_init(config, model, workdir: str, steps_per_epoch: int, weights: str | None):
  """(manager, checkpoint item, meta): the newest readable checkpoint, or a fresh start.

  A checkpoint of another shape (the config changed under --allow_config_change) or made by code
  of another results version is refused, naming what changed, and left as it is.
  """
  ckpt = state_lib.checkpoint_item(config, model, steps_per_epoch, weights)
  try:
    mngr, latest, restored, meta = checkpoint.restore_latest(workdir, config.keep_checkpoints,
                                                             ckpt)
  except errors.StructureMismatchError as e:
    changed = _changed_fields(config, workdir)
    raise errors.StructureMismatchError(
        str(e).replace('; it is left', (f'; the config changed: {changed}' if changed else '')
                       + '; it is left')) from None
  if latest is None:
    return mngr, ckpt, {'history': [], 'compile_seconds': None, 'epoch_steps_done': 0,
                        'epoch_seconds_done': 0.0,
                        'results_version': provenance.RESULTS_VERSION}
  made_by = meta.get('results_version', provenance.UNVERSIONED)
  if made_by != provenance.RESULTS_VERSION:
    raise errors.WorkdirError(
        f'{workdir} holds a run started by code of results version {made_by}; this code is '
        f'results version {provenance.RESULTS_VERSION} and gives other numbers, so it cannot '
        'continue that run. Use a new --workdir (or move this one away).')
  logging.info('Resumed from the checkpoint at step %d (%d epochs and %d steps done).', latest,
               len(meta['history']), meta['epoch_steps_done'])
  return mngr, restored, meta


def _changed_fields(config, workdir: str) -> str:
  """The fields in which `config` differs from the workdir's config.json ('' if none or none)."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      return '; '.join(config_check.config_differences(
          json.load(f), json.loads(config.to_json_best_effort())))
  except (OSError, ValueError):
    return ''


def _describe_model(config, model, state) -> None:
  one_seed = seeds.take(state.variables, 0)
  run_seeds = seeds.of(config)
  logging.info('%s parameters:\n%s', config.model,
               parameter_overview.get_parameter_overview(one_seed))
  print(f'{config.model}: {models.count_params(one_seed):,} parameters '
        f'({models.count_trainable(model, one_seed["params"]):,} trainable)'
        + (f', seeds {run_seeds} trained together' if len(run_seeds) > 1 else ''), flush=True)


def optimizer_step(state) -> int:
  """The optimizer steps taken so far: a checkpoint's key, which only grows (also when a resumed
  run's batch size, and with it the steps per epoch, changed)."""
  return int(np.asarray(state.step).reshape(-1)[0])


# ----------------------------------------------------------------------------------------------
# Progress and signals.

def _progress_bar(config, total, desc):
  enabled = config.progress_bar == 'on' or (config.progress_bar == 'auto'
                                            and console.stream().isatty())
  if not enabled:
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=console.stream())


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
