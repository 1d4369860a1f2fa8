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
import os
import signal
import threading
import time
from typing import Any, Callable

from absl import logging
from clu import periodic_actions
import jax
import ml_collections

from fmnist_jax import build
from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import console
from fmnist_jax import evaluator
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import provenance
from fmnist_jax import results as results_lib
from fmnist_jax import seeds
from fmnist_jax import step as step_lib
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
  # Every field present (the code reads config.x, nothing else), and checked.
  config = config_check.validate_config(config)
  provenance.code()  # read now: the code this process runs, not what is on disk when it ends
  workdir = workdir_lib.check(workdir)
  config_json = json.loads(config.to_json_best_effort())
  # Several hosts share one workdir and only process 0 writes to it; it alone holds the lock.
  with workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    changes = config_check.resume_changes(workdir, workdir_lib.saved_config(workdir), config_json,
                                          allow_config_change)
    finished = workdir_lib.saved_results(workdir)
    if finished is not None and finished['epochs'] >= config.num_epochs:
      logging.info('%s already holds a finished run; nothing to train.', workdir)
      print(results_lib.summary_line(finished))
      return finished
    return _train(config, workdir, config_json, on_epoch, changes)


def _train(config, workdir: str, config_json: dict[str, Any], on_epoch,
           changes: list[str]) -> dict[str, Any]:
  """Builds the run from the config, then trains from the restored step to the last and tests."""
  data = build.data(config)
  model, selection, run_seeds = build.model(config), build.selection(config), build.seeds(config)
  steps_per_epoch = len(data['train']['label']) // config.batch_size
  # `best`: each seed's variables from its best validation epoch so far; `totals`: the training
  # metrics of the epoch in progress (for a checkpoint taken in the middle of one).
  mngr, ckpt, progress = checkpoint.restore_or_init(
      workdir, config.keep_checkpoints,
      lambda fresh: build.checkpoint_item(config, model, steps_per_epoch, load_weights=fresh,
                                          images=data['train']['image'] if fresh else None),
      selection, changes)
  # Written once the checkpoint is known to fit it, so a refused resume leaves the workdir as it
  # was; every checkpoint carries a copy (a damaged config.json is rebuilt from it).
  progress.config = config_json
  results_lib.write_json(os.path.join(workdir, 'config.json'), config_json)
  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if not progress.history:
    writer.write_hparams(config_check.flat_hparams(config))
  print(models.describe(config.model, model, seeds.take(ckpt['state'].variables, 0), run_seeds),
        flush=True)
  mesh = parallel.create_mesh()
  best = parallel.replicate(ckpt['best'], mesh)
  validate = build.evaluator_for(config, model, data['validation'], mesh)
  stepper = step_lib.Stepper(build.step_spec(config), model, ckpt['state'], ckpt['totals'],
                             data['train'], run_seeds, mesh)
  progress.compile_seconds = stepper.compile_seconds
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=config.num_epochs * steps_per_epoch, writer=writer,
      every_steps=config.report_every_steps)
  history = progress.history  # the epochs done; it travels in every checkpoint
  best_so_far = selection.best_values([seeds.history(history, k) for k in range(len(run_seeds))])
  # How far a resumed run got into the epoch it was stopped in (0: it stopped at an epoch's end).
  first_epoch, resume = len(history) + 1, (progress.epoch_steps_done, progress.epoch_seconds_done)

  with _StopRequested() as stop:
    for epoch in range(first_epoch, config.num_epochs + 1):
      steps_done, seconds_done = resume if epoch == first_epoch else (0, 0.0)
      epoch_start = time.perf_counter() - seconds_done
      steps_done = stepper.start_epoch(epoch, steps_done)
      bar = console.progress_bar(config.progress_bar, steps_per_epoch,
                                 f'epoch {epoch}/{config.num_epochs}', steps_done)
      for i, k in stepper.dispatches(steps_done):
        stepper.dispatch(i, k)
        console.report_steps(report_progress, bar, (epoch - 1) * steps_per_epoch + i, k)
        if stop.signum is not None:
          _save_and_exit(mngr, stepper, best, progress, steps_done=i + k, epoch_start=epoch_start,
                         signum=stop.signum, writer=writer)
      if bar is not None:
        bar.close()

      train_metrics = stepper.epoch_metrics()  # waits for the epoch's last step; stops on a NaN
      train_seconds = time.perf_counter() - epoch_start
      state = stepper.carry.state
      with report_progress.timed('validation'):
        val_metrics = [validate(seeds.take(state.eval_variables, k))
                       for k in range(len(run_seeds))]
      improved, best_so_far = selection.update(val_metrics, best_so_far)
      best = seeds.where(improved, state.eval_variables, best)
      history.append(results_lib.epoch_entry(
          epoch, train_metrics, val_metrics, steps_per_epoch * config.batch_size, train_seconds,
          time.perf_counter() - epoch_start))
      results_lib.log_epoch(writer, history[-1], config.num_epochs, steps_per_epoch,
                            steps_per_epoch * config.batch_size * len(run_seeds) / train_seconds)
      checkpoint.save_epoch(mngr, state, best, stepper.fresh_totals(), progress,
                            {selection.key: history[-1][selection.key]})
      if on_epoch is not None:
        on_epoch(history[-1])

  tester = build.evaluator_for(config, model, data['test'], mesh) if 'test' in data else None
  last_step = len(history) * steps_per_epoch
  per_seed = evaluator.test_seeds(
      tester, data.get('test'), workdir=workdir, history=history, best=best,
      final=stepper.carry.state.eval_variables, writer=writer, selection=selection,
      run_seeds=run_seeds, last_step=last_step)
  return results_lib.finish(workdir, writer, results_lib.build(
      config.model, model, seeds.take(best, 0), history=history,
      compile_seconds=progress.compile_seconds, per_seed=per_seed, selection=selection),
                            last_step)


def _save_and_exit(mngr, stepper, best, progress, *, steps_done: int, epoch_start: float,
                   signum: int, writer) -> None:
  """A signal: saves a checkpoint in the middle of the epoch and exits; a rerun continues."""
  progress.epoch_steps_done = steps_done
  progress.epoch_seconds_done = time.perf_counter() - epoch_start
  carry = stepper.carry
  saved_at = checkpoint.step_of(carry.state)
  checkpoint.save(mngr, saved_at, {'state': carry.state, 'best': best, 'totals': carry.totals},
                  progress)
  print(f'\nStopped by signal {signum} at step {steps_done} of epoch {stepper.epoch}; saved the '
        f'checkpoint at step {saved_at}. Run the same command to continue.', flush=True)
  writer.flush()
  raise SystemExit(128 + signum)


# ----------------------------------------------------------------------------------------------
# Signals.

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
