"""A run's workdir: checked before anything starts, and held by one training process at a time.

The lock is an OS file lock (`fcntl.flock` on <workdir>/.lock), so the kernel drops it when its
process dies, even by SIGKILL: no stale lock to clean up. `evaluate` and `predict` only read and
take no lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os

from fmnist_jax import errors

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
