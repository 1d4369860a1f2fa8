"""Training: `train_and_evaluate` reads the config once into the objects a run is made of, then runs
one loop over the epochs and their steps, in the shape of flax's examples/imagenet:

    for epoch in range(first_epoch, num_epochs + 1):
      for i, k in dispatches:       # k optimizer steps a dispatch, every seed
        ...                         # a signal saves a mid-epoch checkpoint and exits
      validate, keep each seed's best variables, log, checkpoint
    test the best variables, write results.json

A run resumed from a checkpoint continues exactly as the uninterrupted run would have (`step.py`);
several seeds train together along a leading seed axis (`seeds.py`).
"""
from __future__ import annotations

import contextlib
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

from fmnist_jax import build
from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import console
from fmnist_jax import defaults
from fmnist_jax import errors
from fmnist_jax import evaluator
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import provenance
from fmnist_jax import results as results_lib
from fmnist_jax import seeds
from fmnist_jax import state as state_lib
from fmnist_jax import step as step_lib
from fmnist_jax import streams
from fmnist_jax import workdir as workdir_lib
from fmnist_jax import writers


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
  workdir = workdir_lib.check(workdir)
  config_json = json.loads(config.to_json_best_effort())
  # Several hosts share one workdir and only process 0 writes to it; it alone holds the lock.
  with workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    finished = workdir_lib.finished_results(workdir, config_json, config.num_epochs,
                                            allow_config_change)
    if finished is not None:
      print(results_lib.summary_line(finished))
      return finished
    return _train(config, workdir, config_json, on_epoch)


def _train(config, workdir: str, config_json: dict[str, Any], on_epoch) -> dict[str, Any]:
  """Builds the run from the config, then trains from the restored step to the last."""
  data = build.data(config)
  steps_per_epoch = _steps_per_epoch(len(data['train']['label']), config)
  model, selection, run_seeds = build.model(config), build.selection(config), build.seeds(config)
  # `best`: each seed's variables from its best validation epoch so far; `totals`: the training
  # metrics of the epoch in progress (for a checkpoint taken in the middle of one).
  mngr, ckpt, progress = checkpoint.restore_or_init(
      workdir, config.keep_checkpoints,
      build.checkpoint_item(config, model, steps_per_epoch, images=data['train']['image']),
      selection, config_json)
  # Written once the checkpoint is known to fit it, so a refused resume leaves the workdir as it
  # was; every checkpoint carries a copy (a damaged config.json is rebuilt from it).
  progress.config = config_json
  results_lib.write_json(os.path.join(workdir, 'config.json'), config_json)
  history = progress.history
  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if not history:
    writer.write_hparams(config_check.flat_hparams(config))
  _describe_model(config.model, model, ckpt['state'], run_seeds)

  mesh = parallel.create_mesh()
  best = parallel.replicate(ckpt['best'], mesh)
  images, labels = parallel.replicate((data['train']['image'], data['train']['label']), mesh)
  validate = build.evaluator_for(config, model, data['validation'], mesh)
  seed_keys = parallel.replicate(jax.vmap(streams.seed_key)(jnp.array(run_seeds)), mesh)
  shuffle = _shuffles(seed_keys, len(data['train']['label']), steps_per_epoch, config.batch_size,
                      mesh)
  stepper = step_lib.Stepper(build.step_spec(config), model,
                             *parallel.replicate((ckpt['state'], ckpt['totals']), mesh), images,
                             labels, jax.vmap(streams.step_root)(seed_keys), mesh, steps_per_epoch)
  progress.compile_seconds = stepper.compile_seconds
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=config.num_epochs * steps_per_epoch, writer=writer,
      every_steps=config.report_every_steps)
  seeds_range = range(len(run_seeds))
  best_so_far = [_best_value(selection, seeds.history(history, k)) for k in seeds_range]

  # A mid-epoch checkpoint of a run whose steps per epoch have since shrunk (a batch size changed
  # under --allow_config_change) ends that epoch at once.
  steps_done = min(progress.epoch_steps_done, steps_per_epoch)
  with _StopRequested() as stop:
    for epoch in range(len(history) + 1, config.num_epochs + 1):
      epoch_start = time.perf_counter() - progress.epoch_seconds_done
      stepper.start_epoch(epoch, shuffle(epoch), resumed=steps_done > 0)
      bar = _progress_bar(config.progress_bar, steps_per_epoch,
                          f'epoch {epoch}/{config.num_epochs}', steps_done)
      for i, k in _dispatches(steps_done, steps_per_epoch, config.steps_per_dispatch):
        stepper.dispatch(i, k)
        _report_steps(report_progress, bar, (epoch - 1) * steps_per_epoch + i, k)
        if stop.signum is not None:
          _save_and_exit(mngr, stepper.carry, best, progress, epoch, i + k, epoch_start,
                         stop.signum, writer)
      if bar is not None:
        bar.close()

      carry = stepper.carry
      train_metrics = _train_metrics(carry, len(run_seeds))  # waits for the epoch's last step
      train_seconds = time.perf_counter() - epoch_start
      _stop_if_diverged(train_metrics['loss'], np.asarray(carry.first_nonfinite_step), epoch,
                        steps_per_epoch, run_seeds)
      with report_progress.timed('validation'):
        val_metrics = [validate(seeds.take(carry.state.eval_variables, k)) for k in seeds_range]
      best, best_so_far = _keep_best(selection, val_metrics, carry.state.eval_variables, best,
                                     best_so_far)
      history.append(results_lib.epoch_entry(
          epoch, train_metrics, val_metrics, steps_per_epoch * config.batch_size, train_seconds,
          time.perf_counter() - epoch_start))
      _log_epoch(writer, history[-1], epoch, config.num_epochs, steps_per_epoch,
                 steps_per_epoch * config.batch_size * len(run_seeds) / train_seconds)
      steps_done = 0
      _save_epoch(mngr, carry.state, best, progress, {selection.key: history[-1][selection.key]},
                  mesh)
      if on_epoch is not None:
        on_epoch(history[-1])

  results = _test(config, model, data.get('test'), mesh, workdir, writer, history, best,
                  stepper.carry.state.eval_variables, progress.compile_seconds,
                  len(history) * steps_per_epoch)
  return _finish(workdir, writer, results, len(history) * steps_per_epoch)


# ----------------------------------------------------------------------------------------------
# The loop's named pieces.

def _steps_per_epoch(n_train: int, config) -> int:
  if n_train < config.batch_size:
    raise errors.ConfigError(f'config.train_split={config.train_split!r} holds {n_train} '
                             f'images, fewer than config.batch_size={config.batch_size}.')
  return n_train // config.batch_size


def _dispatches(first: int, steps: int, k: int) -> list[tuple[int, int]]:
  """(first batch, steps) of each dispatch of an epoch from batch `first`: k steps a dispatch,
  the epoch's tail one by one."""
  full = (steps - first) // k
  return [(first + j * k, k) for j in range(full)] + [(i, 1) for i in range(first + full * k,
                                                                             steps)]


def _report_steps(report_progress, bar, first: int, k: int) -> None:
  """Steps first+1 .. first+k done: clu's periodic actions want every step, once."""
  for done in range(first + 1, first + k + 1):
    report_progress(done)
  if bar is not None:
    bar.update(k)


def _shuffles(seed_keys, n: int, steps: int, batch_size: int, mesh):
  """epoch -> each seed's shuffle of the training set (a run with that seed alone gets the same)."""
  def permutations(keys, epoch):
    return jax.vmap(lambda k: jax.random.permutation(
        streams.epoch_shuffle_key(streams.shuffle_root(k), epoch), n)[:steps * batch_size])(keys)
  permutations = jax.jit(permutations, out_shardings=parallel.replicated(mesh))
  return lambda epoch: permutations(seed_keys, epoch)


def _keep_best(selection, val_metrics, variables, best, best_so_far):
  """(best variables, best values): each seed's new variables where its validation improved."""
  improved = [selection.better(m[selection.name], b) for m, b in zip(val_metrics, best_so_far)]
  values = [m[selection.name] if up else b for m, b, up in zip(val_metrics, best_so_far, improved)]
  return _where_improved(np.array(improved), variables, best), values


@jax.jit
def _where_improved(improved, new, old):
  return jax.tree_util.tree_map(
      lambda n, o: jnp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def _best_value(selection, own_history) -> float:
  values = [h[selection.key] for h in own_history if selection.key in h]
  return values[selection.best_index(values)] if values else selection.worst


def _train_metrics(carry, num_seeds: int) -> dict[str, np.ndarray]:
  per_seed = [seeds.take(carry.totals, k).compute() for k in range(num_seeds)]
  return {key: np.array([float(m[key]) for m in per_seed]) for key in ('loss', 'accuracy')}


def _stop_if_diverged(losses, first_nonfinite_step, epoch: int, steps_per_epoch: int,
                      run_seeds) -> None:
  """A NaN or infinite loss stops the run loudly, naming the seed and the step."""
  for k, loss in enumerate(losses):
    if not math.isfinite(loss):
      step = int(first_nonfinite_step[k])
      raise errors.TrainingDivergedError(
          f'The training loss of seed {run_seeds[k]} became {loss} at step {step} '
          f'(step {step - (epoch - 1) * steps_per_epoch} of epoch {epoch}); the run stops here '
          f'and the last checkpoint (after epoch {epoch - 1}) is kept. Lower '
          'config.learning_rate.')


def _log_epoch(writer, h: dict[str, Any], epoch: int, num_epochs: int, steps_per_epoch: int,
               images_per_second: float) -> None:
  """The epoch's TensorBoard scalars, log entry and the one terminal line."""
  writer.write_scalars(epoch * steps_per_epoch, {k: v for k, v in h.items()
                                                 if k not in ('train_images', 'per_seed')})
  writer.write_scalars(epoch * steps_per_epoch, {'train_images_per_second': images_per_second})
  logging.info('epoch %d: %s', epoch, json.dumps(h))
  print(f'epoch {epoch:3d}/{num_epochs}  train loss {h["train_loss"]:.4f} '
        f'acc {h["train_accuracy"]:.4f}  val loss {h["validation_loss"]:.4f} '
        f'acc {h["validation_accuracy"]:.4f}' + (' (seed means)' if 'per_seed' in h else '')
        + f'  {h["seconds"]:.1f}s', flush=True)


def _save_epoch(mngr, state, best, progress, val_metrics, mesh) -> None:
  """The checkpoint at an epoch's end, ranked by the selection's validation metric."""
  progress.epoch_steps_done, progress.epoch_seconds_done = 0, 0.0
  totals = parallel.replicate(state_lib.empty_totals(len(state.step)), mesh)
  checkpoint.save(mngr, _optimizer_step(state), {'state': state, 'best': best, 'totals': totals},
                  progress, metrics=val_metrics)


def _save_and_exit(mngr, carry, best, progress, epoch: int, steps_done: int, epoch_start: float,
                   signum: int, writer) -> None:
  """A signal: saves a checkpoint in the middle of the epoch and exits; a rerun continues."""
  progress.epoch_steps_done = steps_done
  progress.epoch_seconds_done = time.perf_counter() - epoch_start
  saved_at = _optimizer_step(carry.state)
  checkpoint.save(mngr, saved_at, {'state': carry.state, 'best': best, 'totals': carry.totals},
                  progress)
  print(f'\nStopped by signal {signum} at step {progress.epoch_steps_done} of epoch {epoch}; '
        f'saved the checkpoint at step {saved_at}. Run the same command to continue.', flush=True)
  writer.flush()
  raise SystemExit(128 + signum)


def _test(config, model, test, mesh, workdir: str, writer, history, best, final,
          compile_seconds, last_step: int) -> dict[str, Any]:
  """results.json's figures: every seed's best and final variables on the test split."""
  tester = test is not None and build.evaluator_for(config, model, test, mesh)
  run_seeds, selection = build.seeds(config), build.selection(config)
  per_seed = [_test_seed(tester, test, workdir, k, seed, len(run_seeds), history, best, final,
                         writer, selection, last_step) for k, seed in enumerate(run_seeds)]
  return results_lib.build(config.model, model, seeds.take(best, 0), history, compile_seconds,
                           per_seed, selection)


def _test_seed(tester, test, workdir: str, k: int, seed: int, num_seeds: int, history, best,
               final, writer, selection, last_step: int) -> dict[str, Any]:
  """Seed k's best variables on the test split (its report files) and its final variables (the
  reports' protocol; selects nothing). test_split='' (sweep trials): the test split is never read."""
  own_history = seeds.history(history, k)
  if not tester:
    return results_lib.seed_results(own_history, {'accuracy': None, 'loss': None}, seed,
                                    selection=selection)
  # One seed: the report goes to the workdir; several: to workdir/seed_<s>/ each.
  report_dir = workdir if num_seeds == 1 else os.path.join(workdir, f'seed_{seed}')
  os.makedirs(report_dir, exist_ok=True)
  test_metrics = evaluator.report_on_test(tester, seeds.take(best, k), test, report_dir,
                                          own_history, writer if num_seeds == 1 else None,
                                          last_step)
  return results_lib.seed_results(own_history, test_metrics, seed, tester(seeds.take(final, k)),
                                  selection)


def _finish(workdir: str, writer, results: dict[str, Any], last_step: int) -> dict[str, Any]:
  if results['test_accuracy'] is not None:
    writer.write_scalars(last_step, {'test_loss': results['test_loss'],
                                     'test_accuracy': results['test_accuracy']})
  writer.flush()
  writer.close()
  results_lib.write_json(os.path.join(workdir, 'results.json'), results)
  print(results_lib.summary_line(results), flush=True)
  return results


def _describe_model(name: str, model, state, run_seeds) -> None:
  one_seed = seeds.take(state.variables, 0)
  logging.info('%s parameters:\n%s', name, parameter_overview.get_parameter_overview(one_seed))
  print(f'{name}: {models.count_params(one_seed):,} parameters '
        f'({models.count_trainable(model, one_seed["params"]):,} trainable)'
        + (f', seeds {run_seeds} trained together' if len(run_seeds) > 1 else ''), flush=True)


def _optimizer_step(state) -> int:
  """The optimizer steps taken so far: a checkpoint's key, which only grows (also when a resumed
  run's batch size, and with it the steps per epoch, changed)."""
  return int(np.asarray(state.step).reshape(-1)[0])


# ----------------------------------------------------------------------------------------------
# Progress and signals.

def _progress_bar(progress_bar: str, total: int, desc: str, done: int):
  if not (progress_bar == 'on' or (progress_bar == 'auto' and console.stream().isatty())):
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm.tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=console.stream())
  bar.update(done)
  return bar


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
