"""A sweep's early stopping: Ray Tune's ASHA scheduler stops trials whose validation accuracy
trails the others' at the same epoch.

Each trial is an ordinary run in its own workdir (as without early stopping) that reports every
epoch's validation accuracy to Tune once the epoch's checkpoint is saved; ASHA
(Li et al. 2020, asynchronous successive halving) lets a trial continue past a rung (grace
epochs × reduction_factor^k) only if it is in the top 1/reduction_factor of the trials that reached
that rung. Only validation accuracy is read: the test split is not loaded by any trial. A stopped
trial keeps its checkpoints; it is ranked by its best validation accuracy but cannot win (its
schedule did not finish). With several trials at a time ASHA's decisions depend on which trial
reaches a rung first, so which trials stop may differ between two sweeps; a trial that finishes
has the numbers it has without early stopping.
"""
from __future__ import annotations

import os

from experiments.lib import distribute


STOPPED = 'stopped_early.json'  # in a trial's workdir: ASHA stopped it (kept for reruns)


def _trial(params, configs, workdirs, cores, gpu_fraction):
  """One trial in a fresh actor: its cores, then JAX, then the run reporting each epoch."""
  distribute.prepare_process(cores, gpu_fraction)
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top  (JAX: after the pinning)
  from ray import tune  # pylint: disable=g-import-not-at-top
  i = params['trial']
  def report(entry):
    # The last epoch is not reported: a stop there would cut the run before its test-free
    # results.json, and the trial has nothing left to save.
    if entry['epoch'] < configs[i].num_epochs:
      tune.report({'validation_accuracy': entry['validation_accuracy'], 'epoch': entry['epoch']})
  runs.run(configs[i], workdirs[i], on_epoch=report)


def run(runner, configs: list, workdirs: list[str], args) -> list[dict]:
  """Trains the trials under ASHA; per trial its results.json, or for a trial ASHA stopped its
  best validation epoch with 'stopped_early': True.

  A rerun trains only the trials neither finished nor stopped (ASHA's rungs then hold only their
  reports, not those of the trials of the first sitting).
  """
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top
  todo = [i for i, (c, w) in enumerate(zip(configs, workdirs))
          if not os.path.exists(os.path.join(w, STOPPED)) and runs.finished_run(w, c) is None]
  if todo:
    _tune(runner, configs, workdirs, todo, args)
  return [outcome(c, w) for c, w in zip(configs, workdirs)]


def _tune(runner, configs, workdirs, todo, args) -> None:
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
                         {'epoch': result['epoch'],
                          'validation_accuracy': result['validation_accuracy']})
      return decision

  epochs = max(c.num_epochs for c in configs)
  grace = args.grace_epochs or max(1, epochs // 4)
  trainable = tune.with_parameters(_trial, configs=configs, workdirs=workdirs,
                                   cores=runner.cores, gpu_fraction=runner.gpu_fraction)
  resources = {'cpu': runner.cores, 'gpu': runner.gpu_fraction}
  tuner = tune.Tuner(
      tune.with_resources(trainable, resources),
      param_space={'trial': tune.grid_search(todo)},
      tune_config=tune.TuneConfig(
          metric='validation_accuracy', mode='max', max_concurrent_trials=runner.workers,
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


def outcome(config, workdir: str) -> dict:
  """A trial's results.json if it finished, else (ASHA stopped it) its best validation epoch."""
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  results = runs.finished_run(workdir, config)
  if results is not None:
    return results
  history = runs.checkpoint_history(workdir)
  if not os.path.exists(os.path.join(workdir, STOPPED)) or not history:
    raise errors.UserError(f'the sweep stopped before the trial in {workdir} finished '
                           '(interrupted?); run the same command to continue it.')
  best = max(history, key=lambda h: h['validation_accuracy'])
  return {'validation_accuracy': best['validation_accuracy'],
          'validation_loss': best['validation_loss'], 'epochs': len(history),
          'best_epoch': best['epoch'], 'stopped_early': True}
