"""A sweep's early stopping: Ray Tune's ASHA scheduler stops trials whose validation figure
trails the others' at the same epoch.

The figure is the one that chooses each run's best epoch and ranks the sweep (config.best_by:
validation accuracy by default, validation loss or a registered metric otherwise, each in its own
direction: metrics.Selection). Each trial is an ordinary run in its own workdir (as without early
stopping) that reports every epoch's figure to Tune once the epoch's checkpoint is saved; ASHA
(Li et al. 2020, asynchronous successive halving) lets a trial continue past a rung (grace
epochs × reduction_factor^k) only if it is in the best 1/reduction_factor of the trials that
reached that rung. Only validation is read: the test split is not loaded by any trial. A stopped
trial keeps its checkpoints; it is ranked by its best epoch but cannot win (its schedule did not
finish). With several trials at a time ASHA's decisions depend on which trial reaches a rung
first, so which trials stop may differ between two sweeps; a trial that finishes has the numbers
it has without early stopping.

Nothing here imports JAX at module level: Tune's worker imports this module to unpickle `_trial`,
which pins the worker's cores before anything imports JAX.
"""
from __future__ import annotations

import os

from experiments.lib import distribute


STOPPED = 'stopped_early.json'  # in a trial's workdir: ASHA stopped it (kept for reruns)


def _trial(params, configs, workdirs, metric, cores, gpu_fraction):
  """One trial in a fresh actor: its cores, then JAX, then the run reporting each epoch's
  `metric` (a history key, e.g. 'validation_accuracy')."""
  distribute.prepare_process(cores, gpu_fraction)
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top  (JAX: after the pinning)
  from ray import tune  # pylint: disable=g-import-not-at-top
  i = params['trial']
  def report(entry):
    # The last epoch is not reported: a stop there would cut the run before its test-free
    # results.json, and the trial has nothing left to save.
    if entry['epoch'] < configs[i].num_epochs:
      tune.report({metric: entry[metric], 'epoch': entry['epoch']})
  runs.run(configs[i], workdirs[i], on_epoch=report)


def run(runner, configs: list, workdirs: list[str], args) -> list[dict]:
  """Trains the trials under ASHA (all choosing their best epoch alike: configs[0].best_by); per
  trial its results.json, or for a trial ASHA stopped its best epoch with 'stopped_early': True.

  A rerun trains only the trials neither finished nor stopped (ASHA's rungs then hold only their
  reports, not those of the trials of the first sitting).
  """
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top
  todo = [i for i, (c, w) in enumerate(zip(configs, workdirs))
          if not os.path.exists(os.path.join(w, STOPPED)) and runs.finished_run(w, c) is None]
  from fmnist_jax import build  # pylint: disable=g-import-not-at-top
  selection = build.selection(configs[0])
  if todo:
    _tune(runner, configs, workdirs, todo, args, selection)
  return [outcome(c, w, selection) for c, w in zip(configs, workdirs)]


def _tune(runner, configs, workdirs, todo, args, selection) -> None:
  runner.start()
  os.environ.setdefault('RAY_AIR_NEW_OUTPUT', '0')  # with verbose=0: no progress tables
  os.environ.setdefault('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', '1')  # the runs log themselves
  from ray import tune  # pylint: disable=g-import-not-at-top
  from ray.tune.schedulers import ASHAScheduler, TrialScheduler  # pylint: disable=g-import-not-at-top
  from fmnist_jax import files  # pylint: disable=g-import-not-at-top

  class MarkingASHA(ASHAScheduler):
    """ASHA that leaves a mark in the workdir of each trial it stops."""

    def on_trial_result(self, tune_controller, trial, result):
      decision = super().on_trial_result(tune_controller, trial, result)
      if decision == TrialScheduler.STOP:
        files.write_json(os.path.join(workdirs[trial.config['trial']], STOPPED),
                         {'epoch': result['epoch'], selection.key: result[selection.key]})
      return decision

  epochs = max(c.num_epochs for c in configs)
  grace = args.grace_epochs or max(1, epochs // 4)
  trainable = tune.with_parameters(_trial, configs=configs, workdirs=workdirs,
                                   metric=selection.key, cores=runner.cores,
                                   gpu_fraction=runner.gpu_fraction)
  resources = {'cpu': runner.cores, 'gpu': runner.gpu_fraction}
  tuner = tune.Tuner(
      tune.with_resources(trainable, resources),
      param_space={'trial': tune.grid_search(todo)},
      tune_config=tune.TuneConfig(
          metric=selection.key, mode=selection.mode, max_concurrent_trials=runner.workers,
          reuse_actors=False,
          scheduler=MarkingASHA(time_attr='epoch', max_t=epochs + 1, grace_period=grace,
                                reduction_factor=args.reduction_factor)),
      run_config=tune.RunConfig(
          storage_path=os.path.join(os.path.abspath(args.workdir), '_tune'), name='asha',
          verbose=0,
          # A trial whose worker died runs again and resumes from its checkpoint.
          failure_config=tune.FailureConfig(max_failures=distribute.MAX_RETRIES)))
  grid = tuner.fit()
  if grid.errors:
    raise distribute.task_error(grid.errors[0], 'a sweep trial')


def outcome(config, workdir: str, selection) -> dict:
  """A trial's results.json if it finished, else (ASHA stopped it) its best epoch by
  `selection` (metrics.Selection) among those it finished."""
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  results = runs.finished_run(workdir, config)
  if results is not None:
    return results
  history = runs.checkpoint_history(workdir)
  if not os.path.exists(os.path.join(workdir, STOPPED)) or not history:
    raise errors.UserError(f'the sweep stopped before the trial in {workdir} finished '
                           '(interrupted?); run the same command to continue it.')
  best = history[selection.best_index([h[selection.key] for h in history])]
  return {'validation_accuracy': best['validation_accuracy'],
          'validation_loss': best['validation_loss'], selection.key: best[selection.key],
          'epochs': len(history), 'best_epoch': best['epoch'], 'stopped_early': True}
