"""One run's workdir: training it, and reading what it has finished.

A run is an ordinary workdir of `fmnist_jax.train.train_and_evaluate` (checkpoints, resume,
TensorBoard, results.json). A finished run's config and results may also be kept as a seed record
(a JSON file committed with a table), so a later session reuses it instead of training it again.
Neither is reused when it was made under another config or by code of another results version.

This module imports JAX (through fmnist_jax.train): a Ray worker imports it only after pinning
its cores (distribute.prepare_process).
"""
from __future__ import annotations

import json
import os

from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import results as results_lib
from fmnist_jax import train

provenance.code()  # the code this process runs, read before any run starts (it is cached)


def run(config, workdir: str, on_epoch=None) -> dict:
  """Trains (or resumes, or just reads) the run in `workdir`. A run there made by another results
  version is first moved aside to <workdir>.results_v<N> (kept; its numbers are not today's).
  `on_epoch`: see train.train_and_evaluate."""
  older = older_results_version(workdir)
  if older is not None:
    aside = f'{workdir}.results_v{older}'
    while os.path.exists(aside):
      aside += '_'
    os.rename(workdir, aside)
    print(f'{workdir} held a run of results version {older}; moved to {aside} and trained '
          f'again by today\'s code (results version {provenance.RESULTS_VERSION}).', flush=True)
  return train.train_and_evaluate(config, workdir, on_epoch=on_epoch)


def older_results_version(run_dir: str) -> int | None:
  """The results version of the run in `run_dir` when it is not today's (None: today's or none),
  from its results.json or its newest checkpoint."""
  results = _read_json(os.path.join(run_dir, 'results.json'))
  if results is None:
    results = checkpoint.newest_meta(run_dir)
  if not isinstance(results, dict):
    return None
  version = provenance.results_version(results)
  return None if version == provenance.RESULTS_VERSION else version


def _read_json(path: str, record: bool = False, required: tuple[str, ...] = ()):
  """A run's own file (results.json, config.json, a checkpoint's meta) or, with `record`, a seed
  record; None if absent. A damaged run file reads as None (the run rebuilds it when it is run
  again); a damaged record is a one-line error naming it (records are committed: restore it)."""
  try:
    return files.read_json(path, 'delete it to train that seed again, or restore it (git '
                           f'checkout -- {path}).', required)
  except errors.DamagedFileError:
    if record:
      raise
    return None


def read_record(path: str) -> dict | None:
  """A seed record ({'config', 'results'}); None if absent, a one-line error if damaged."""
  return _read_json(path, record=True, required=('config', 'results'))


def finished_run(run_dir: str, config, record: str | None = None,
                 any_version: bool = False) -> dict | None:
  """results.json of a finished run of `config` in `run_dir`, else of its record file, else None.

  A run or record made under another config (fields other than config_check.NOT_COMPARED), or by
  code of another results version (unless `any_version`, for labeled tables), is not used.
  """
  kept = read_record(record) if record else None
  for results, used_config in (
      (_read_json(os.path.join(run_dir, 'results.json'), required=results_lib.REQUIRED),
       lambda: _read_json(os.path.join(run_dir, 'config.json'))),
      (kept and kept['results'], lambda: kept['config'])):
    if (results is not None and used_config() is not None
        and is_run_of(config, results, used_config(), any_version=any_version)):
      return results
  return None


def is_run_of(config, results: dict, used_config: dict, may_differ: tuple[str, ...] = (),
              any_version: bool = False) -> bool:
  """Whether `results`, trained under `used_config`, are a finished run of `config` by today's code
  (its results version; any with `any_version`).

  Fields in `may_differ` (and config_check.NOT_COMPARED) may differ.
  """
  wanted = json.loads(config.to_json_best_effort())
  differences = [d for d in config_check.config_differences(used_config, wanted)
                 if d.split(':')[0] not in may_differ]
  today = any_version or provenance.results_version(results) == provenance.RESULTS_VERSION
  return today and results['epochs'] >= config.num_epochs and not differences


def keep_record(run_dir: str, record: str, results: dict) -> None:
  """Copies a finished run's config and results to `record` (written whole, then renamed)."""
  config = _read_json(os.path.join(run_dir, 'config.json'))
  if config is None or _read_json(record) == {'config': config, 'results': results}:
    return
  os.makedirs(os.path.dirname(record), exist_ok=True)
  files.write_json(record, {'config': config, 'results': results})


def epochs_done(run_dir: str) -> int:
  """Epochs in the newest checkpoint of `run_dir` (0 without one); reads no arrays."""
  return len(checkpoint_history(run_dir))


def checkpoint_history(run_dir: str) -> list[dict]:
  """The history (one entry per epoch) in the newest checkpoint of `run_dir`; reads no arrays."""
  meta = checkpoint.newest_meta(run_dir)
  return meta['history'] if meta is not None else []
