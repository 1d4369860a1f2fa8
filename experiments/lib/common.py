"""What the experiment scripts share: loading configs, training rows of seeds, the machine line.

A row is one config over its seeds: trained together in one run (`config.num_seeds`, one
program), or as one run per seed (side by side under distribute.Runner), merged afterwards into
the form a multi-seed run writes. Every run is an ordinary workdir (experiments.lib.runs):
checkpoints, resume, TensorBoard, and a per-seed test report.
"""
import os

import numpy as np

from experiments.lib import distribute
from experiments.lib import runs as runs_lib
from fmnist_jax import build
from fmnist_jax import cli
from fmnist_jax import config_check
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import reporting
from fmnist_jax import results as results_lib
from fmnist_jax import seeds
from fmnist_jax import workdir as workdir_lib

ROOT = distribute.ROOT  # the repository root (configs/, experiments/results/)


def load_config(path: str, overrides: list[str] = (), validate: bool = True):
  """get_config() of a config file with `field=value` overrides, read as `python -m
  fmnist_jax.main` reads --config.<field>=<value> (cli.load_config: model_args.<name> may set any
  field of the chosen model), then checked whole (config_check) unless not `validate`.

  A missing or broken file, an unknown field or a value of the wrong type is an errors.ConfigError
  naming it.
  """
  config = cli.load_config(path, overrides)
  if validate:
    config_check.validate_config(config)
  return config


def check_dirs(args) -> None:
  """--workdir and --output must be (or become) writable folders before anything trains."""
  for flag in ('workdir', 'output'):
    setattr(args, flag, workdir_lib.check(getattr(args, flag), flag=f'--{flag}'))


def config_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def seed_runs(config, workdir: str, sequential: bool = True):
  """(label, run directory, run config) of each run a row needs.

  One seed, or several together (config.num_seeds): one run in `workdir`. Several one after
  another (`sequential`): a run per seed in `workdir`/seed_<s>.
  """
  all_seeds = build.seeds(config)
  if not sequential or len(all_seeds) == 1:
    label = (f'seed_{all_seeds[0]}' if len(all_seeds) == 1
             else f'seeds_{all_seeds[0]}-{all_seeds[-1]}')
    return [(label, workdir, config)]
  runs = []
  for seed in all_seeds:
    one = config.copy_and_resolve_references()
    one.seed, one.num_seeds = seed, 1
    runs.append((f'seed_{seed}', os.path.join(workdir, f'seed_{seed}'), one))
  return runs


def run_seeds(config, workdir: str, sequential: bool = False, finished_only: bool = False,
              records: str | None = None, any_version: bool = False, runner=None) -> dict | None:
  """All of config.num_seeds seeds: together in one run, or one run per seed merged afterwards.

  The merged form is the one train.py writes for a multi-seed run (per_seed, means, std).
  `finished_only` trains nothing and merges the seeds whose runs have finished (None if none).
  `records`: a directory where each finished run's results are kept as <label>.json, and taken
  from on a machine that lacks the run. `any_version` (with `finished_only`, for a table that
  labels each row's code) also takes runs of older results versions, those of the newest one
  found: seeds of two versions are never merged. `runner` (distribute.Runner) trains the missing
  runs; without one they train here, one after another.
  """
  return run_rows([(config, workdir, sequential, records)], finished_only, any_version,
                  runner)[0]


def run_rows(rows, finished_only: bool = False, any_version: bool = False,
             runner=None) -> list[dict | None]:
  """run_seeds for several (config, workdir, sequential, records) rows at once: every missing
  run of every row is handed to `runner` together, so they can train side by side (one task per
  seed: a runner that spreads runs trains each seed as its own run)."""
  spread = runner is not None and runner.spreads()
  plans = []
  for config, workdir, sequential, records in rows:
    plan = []
    for label, run_dir, run_config in seed_runs(config, workdir, sequential or spread):
      record = records and os.path.join(records, f'{label}.json')
      plan.append({'run_dir': run_dir, 'config': run_config, 'record': record,
                   'result': runs_lib.finished_run(run_dir, run_config, record, any_version)})
    plans.append(plan)
  def keep(p):  # the record of a run finished in its workdir (now, or before this call)
    if p['result'] is not None and p['record'] and os.path.exists(
        os.path.join(p['run_dir'], 'results.json')):
      runs_lib.keep_record(p['run_dir'], p['record'], p['result'])
  missing = [p for plan in plans for p in plan if p['result'] is None]
  for p in (p for plan in plans for p in plan if p['result'] is not None):
    keep(p)
  if missing and not finished_only:
    def trained(i, result):  # each record kept as its run finishes
      missing[i]['result'] = result
      keep(missing[i])
    (runner.run if runner else distribute.one_at_a_time)(
        [(p['config'], p['run_dir']) for p in missing], on_result=trained)
  return [_merge_runs([p['result'] for p in plan if p['result'] is not None]) for plan in plans]


def _merge_runs(runs: list[dict]) -> dict | None:
  """The seeds' results of one row as one (only those of the newest results version)."""
  if runs:
    newest = max(provenance.results_version(r) for r in runs)
    runs = [r for r in runs if provenance.results_version(r) == newest]
  if not runs:
    return None
  if len(runs) == 1:
    return runs[0]
  keys = list(dict.fromkeys(k for r in runs for k in _seed_keys(r)))
  per = [{k: r.get(k) for k in keys} for r in runs]
  merged = dict(runs[0], per_seed=per, seed=[r['seed'] for r in per],
                best_epoch=[r['best_epoch'] for r in per])
  # Means of the figures every seed has (an older run lacks final_test_*, say).
  merged.update(seeds.means([{k: v for k, v in r.items()
                              if all(q[k] is not None for q in per)} for r in per]))
  merged['train_seconds'] = sum(r['train_seconds'] for r in runs)
  merged['train_images_per_second'] = float(np.mean([r['train_images_per_second'] for r in runs]))
  merged['history'] = _merge_histories([r['history'] for r in runs])
  return merged


def _seed_keys(results: dict) -> list[str]:
  """The keys of one seed's own figures in its results.json: results.SEED_KEYS and each extra
  metric's (config.metrics) test_, final_test_ and validation_ figures."""
  return [*results_lib.SEED_KEYS,
          *(k for k in results if k.startswith(('test_', 'final_test_', 'validation_')))]


def _merge_histories(histories: list[list[dict]]) -> list[dict]:
  """Per-seed histories as one history of a multi-seed run (means at top level, 'per_seed' lists):
  the training loss and accuracy and every validation figure (the selection's among them)."""
  merged = []
  for entries in zip(*histories):
    keys = [k for k in entries[0] if k in ('train_loss', 'train_accuracy')
            or k.startswith('validation_')]
    per = {k: [e[k] for e in entries] for k in keys}
    merged.append({'epoch': entries[0]['epoch'], **{k: float(np.mean(v)) for k, v in per.items()},
                   'per_seed': per})
  return merged


def per_seed(results: dict, key: str) -> list:
  """Each seed's `key` (None where a run from older code did not record it)."""
  if 'per_seed' in results:
    return [r.get(key) for r in results['per_seed']]
  return [results.get(key)]


def validation_curves(results: dict) -> list[list[float]]:
  """Per seed, the validation accuracy of every epoch."""
  n = len(results['per_seed']) if 'per_seed' in results else 1
  return [[h['validation_accuracy'] for h in seeds.history(results['history'], k)]
          for k in range(n)]


machine = reporting.machine
machine_line = reporting.machine_line


write_json = files.write_json  # atomic
