"""A run's workdir: checked before anything starts, held by one training process at a time, and
read for what it holds already (its saved config, a finished run's results).

The lock is an OS file lock (`fcntl.flock` on <workdir>/.lock), so the kernel drops it when its
process dies, even by SIGKILL: no stale lock to clean up. `evaluate` and `predict` only read and
take no lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Any

from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import console
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import results as results_lib

LOCK_FILE = '.lock'


def check(workdir: str, must_hold_run: bool = False, flag: str = '--workdir') -> str:
  """The absolute workdir, created if needed; WorkdirError if it is not a writable directory.

  `must_hold_run`: evaluate and predict need a trained run in it (config.json and checkpoints).
  """
  path = os.path.abspath(os.path.expanduser(workdir))
  if must_hold_run:
    if not os.path.isdir(path):
      raise errors.WorkdirError(f'--workdir {workdir!r} is not a directory; give the workdir of a '
                                'training run (the --workdir given to fmnist_jax.main).')
    if not os.path.exists(os.path.join(path, 'config.json')):
      raise errors.WorkdirError(f'--workdir {workdir!r} holds no training run (no config.json); '
                                'give the --workdir that `python -m fmnist_jax.main` trained in.')
    return path
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.WorkdirError(f'{flag} {workdir!r} is a file, not a directory; give a new or '
                              'existing directory.')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise errors.WorkdirError(f'{flag} {workdir!r} cannot be created ({e.strerror}); give a '
                              'directory you can write to.') from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise errors.WorkdirError(f'{flag} {workdir!r} is not writable; give a directory you can '
                              'write to.')
  return path


@contextlib.contextmanager
def lock(workdir: str):
  """Holds <workdir>/.lock for the block; WorkdirBusyError (naming the holder's PID) if taken."""
  path = os.path.join(workdir, LOCK_FILE)
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      pid = f.read().strip() or 'unknown'
      raise errors.WorkdirBusyError(
          f'--workdir {workdir!r} is in use by another training process (PID {pid}). Wait for it '
          f'to finish, stop it (`kill {pid}`: it saves a checkpoint and this command resumes it), '
          'or give another --workdir.') from None
    try:
      f.seek(0)
      f.truncate()
      f.write(f'{os.getpid()}\n')
      f.flush()
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def saved_results(workdir: str) -> dict[str, Any] | None:
  """The results.json of the workdir's finished run (None if it has none); refuses results of
  another results version. A damaged results.json is set aside, and the run's final checkpoint
  writes it again."""
  results_path = os.path.join(workdir, 'results.json')
  try:
    results = files.read_json(results_path, '', required=results_lib.REQUIRED)
  except errors.DamagedFileError as e:
    console.warn(f'{e} It is rebuilt from the run\'s final checkpoint.')
    os.replace(results_path, results_path + '.damaged')
    return None
  if results is None:
    return None
  made_by = provenance.results_version(results)
  if made_by != provenance.RESULTS_VERSION:
    raise errors.WorkdirError(
        f'{workdir} holds a finished run of results version {made_by}; this code is results '
        f'version {provenance.RESULTS_VERSION} and gives other numbers. Use a new --workdir '
        'to train it with this code (or move this one away).')
  return results


def saved_config(workdir: str) -> dict[str, Any] | None:
  """The workdir's config.json (None for a new workdir); when it is damaged, the copy that every
  checkpoint carries (written back); DamagedFileError when there is neither."""
  path = os.path.join(workdir, 'config.json')
  try:
    return files.read_json(path, '', required=config_check.REQUIRED)
  except errors.DamagedFileError as e:
    copy = checkpoint.saved_config(workdir)
    if copy is not None:
      console.warn(f'{e} Rebuilt from the copy in checkpoint {copy[0]}.')
      results_lib.write_json(path, copy[1])
      return copy[1]
    if checkpoint.has_checkpoints(workdir):
      raise errors.DamagedFileError(
          f'{e} No checkpoint holds a copy to rebuild it from: restore it, or delete it to '
          'continue this run under the command\'s config.') from None
    console.warn(f'{e} The run has no checkpoint yet, so nothing is lost: it is written again.')
    return None
