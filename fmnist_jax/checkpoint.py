"""Orbax checkpoints, keyed by the global step: the latest few and the best by validation kept.

A checkpoint is written after every epoch (step = epoch * steps_per_epoch) and, on SIGINT or
SIGTERM, in the middle of one. Orbax writes into a temporary folder and renames it when complete,
so a killed save never looks finished; a checkpoint that is complete but unreadable (truncated or
altered files) is moved to `corrupt_checkpoints/` by the training (skipped by evaluate and
predict, which never write under checkpoints/) and the previous one is used. A readable checkpoint
of another shape is refused and left untouched.
"""
from __future__ import annotations

import glob
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from fmnist_jax import config_check
from fmnist_jax import console
from fmnist_jax import defaults
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import results
from fmnist_jax import seeds
from fmnist_jax import state as state_lib
from fmnist_jax import workdir as workdir_lib

BEST_METRIC = results.BEST_METRIC
NOT_RANKED = -1.0  # the metric of a mid-epoch checkpoint: never "best".


StructureMismatchError = errors.StructureMismatchError


def manager(workdir: str, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
  """The workdir's checkpoints; `read_only` (evaluate, predict) never writes, moves or deletes."""
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=keep),
          policies.BestN(get_metric_fn=lambda m: m.get(BEST_METRIC, NOT_RANKED), reverse=False,
                         n=1),
      ]),
      enable_async_checkpointing=False,
      read_only=read_only,
      create=not read_only,
  )
  # Handlers named up front, so a checkpoint's metadata can be read before any restore.
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options,
                               item_handlers={'state': ocp.StandardCheckpointHandler(),
                                              'meta': ocp.JsonCheckpointHandler()})


def save(mngr: ocp.CheckpointManager, step: int, item: Any, meta: dict[str, Any],
         metric: float = NOT_RANKED) -> None:
  """Saves at global `step`; `meta` (JSON) carries what is needed to resume identically.

  An interrupted epoch's checkpoint can hold the same step as that epoch's own; it is replaced.
  A full disk leaves no partial checkpoint behind and ends in DiskFullError, which names the
  folder and the space a checkpoint needs; the earlier checkpoints are intact.
  """
  if step in mngr.all_steps():
    mngr.delete(step)
  try:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(item),
                                            meta=ocp.args.JsonSave(meta)),
              metrics={BEST_METRIC: metric}, force=True)
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    folder = str(mngr.directory)
    if (not os.path.isdir(folder) or isinstance(e, FileNotFoundError)
        or str(e).startswith('NOT_FOUND')):
      raise errors.MachineError(
          f'Files under {folder} vanished while checkpoint {step} was written (the workdir '
          'deleted, or its disk unmounted). Restore the workdir (or start over in a new one) '
          'and run the same command again.') from None
    if not files.is_disk_full(e):
      raise
    for partial in glob.glob(os.path.join(folder, f'{step}.orbax-checkpoint-tmp*')):
      shutil.rmtree(partial, ignore_errors=True)
    needed = sum(x.nbytes for x in jax.tree_util.tree_leaves(item)) / 2**20
    raise errors.DiskFullError(
        f'No space left on the device of {folder} while writing checkpoint {step}: a checkpoint '
        f'needs about {needed:.0f} MB there and {files.free_mb(folder):.0f} MB are free. The '
        'earlier checkpoints are intact; free some space and run the same command again to '
        'continue from the last of them.') from None


META_KEYS = ('history', 'epoch_steps_done', 'epoch_seconds_done')  # what a resume needs


def restore(mngr: ocp.CheckpointManager, step: int, abstract_item: Any):
  """Returns (item, meta) saved at `step`, shaped like `abstract_item`; ValueError when the meta
  lacks what a resume needs (a damaged or edited file)."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_item), meta=ocp.args.JsonRestore()))
  meta = restored.meta
  if not (isinstance(meta, dict) and all(k in meta for k in META_KEYS)
          and isinstance(meta['history'], list)):
    raise ValueError(f'its meta/metadata lacks {", ".join(META_KEYS)}')
  return restored.state, meta


def saved_config(workdir: str) -> tuple[int, dict[str, Any]] | None:
  """(step, config) of the newest checkpoint that carries a copy of its run's config (read-only)."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return None
  mngr = _open(workdir, 1, read_only=True)
  try:
    for step in sorted(mngr.all_steps(), reverse=True):
      try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
      except Exception:  # pylint: disable=broad-except  (damaged: try the one before)
        continue
      if isinstance(meta, dict) and isinstance(meta.get('config'), dict):
        return step, meta['config']
    return None
  finally:
    mngr.close()


def shape_mismatch(mngr: ocp.CheckpointManager, step: int, abstract_item: Any) -> str | None:
  """How the arrays saved at `step` differ from `abstract_item`'s ('path: saved -> wanted'), or
  None when they fit. Reads only the checkpoint's metadata; raises if that cannot be read."""
  saved = mngr.item_metadata(step)['state']
  if saved is None:
    raise ValueError('no array metadata')
  flat_saved = {_path(p): tuple(m.shape) for p, m in jax.tree_util.tree_leaves_with_path(saved)}
  flat_wanted = {_path(p): tuple(np.shape(x))
                 for p, x in jax.tree_util.tree_leaves_with_path(abstract_item)}
  for path in sorted(set(flat_saved) | set(flat_wanted)):
    a, b = flat_saved.get(path, '(absent)'), flat_wanted.get(path, '(absent)')
    if a != b:
      return f'{path}: {a} in the checkpoint, {b} for this config'
  return None


def _open(workdir: str, keep: int, read_only: bool, attempts: int = 20) -> ocp.CheckpointManager:
  """`manager`, which lists the checkpoints; a reader retries when one vanishes while it lists
  them (the training that owns the workdir deletes its old ones)."""
  for attempt in range(attempts):
    try:
      return manager(workdir, keep, read_only)
    except FileNotFoundError:
      if not read_only or attempt == attempts - 1:
        raise
      time.sleep(0.05)
  raise AssertionError('unreachable')


def _path(path) -> str:
  """A leaf's path as 'state.params.Dense_0.kernel', however the tree spells its keys (a saved
  dataclass comes back as a dict, a tuple as a list)."""
  return '.'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


# Errors of a restore that say nothing about the checkpoint's files: out of host or device memory.
_NOT_DAMAGE = (MemoryError, jax.errors.JaxRuntimeError)


def restore_latest(workdir: str, keep: int, abstract_item: Any, read_only: bool = False,
                   newest_only: bool = False):
  """(manager, step, item, meta) of the newest readable checkpoint; step None if there is none.

  A checkpoint whose arrays do not fit `abstract_item` (another model, optimizer or num_seeds) is
  refused with StructureMismatchError and left exactly as it is. A checkpoint that cannot be read
  is moved to <workdir>/corrupt_checkpoints/<step> (kept for inspection, out of the manager's
  way), or with `read_only` just skipped, and the next older one is tried; with `newest_only`
  (evaluate, whose report must match the run's best) a damaged newest one is an error instead.
  One that vanishes while it is read (a training deletes its old checkpoints) is not damage: a
  reader lists and reads again.
  """
  mngr = _open(workdir, keep, read_only)
  tried, retries_left = set(), {}
  while True:
    steps = [s for s in sorted(mngr.all_steps(), reverse=True) if s not in tried]
    if not steps:
      return mngr, None, None, None
    step = steps[0]
    tried.add(step)
    path = os.path.join(mngr.directory, str(step))
    try:
      mismatch = shape_mismatch(mngr, step, abstract_item)
      if mismatch is None:
        item, meta = restore(mngr, step, abstract_item)
        return mngr, step, item, meta
    except Exception as e:  # pylint: disable=broad-except
      # Orbax, TensorStore (even a bare Exception) and JSON raise many kinds for damaged or
      # vanishing files; running out of memory is not the checkpoint's fault.
      if isinstance(e, _NOT_DAMAGE):
        raise
      error = e
    else:
      raise StructureMismatchError(
          f'Checkpoint {step} in {workdir} holds a differently shaped state than the config asks '
          f'for ({mismatch}); it is left untouched. Use a new --workdir for this config.')
    if read_only and retries_left.get(step, 2):
      # Orbax deletes an old checkpoint folder file by file: a reader can meet it half gone.
      # Wait, list again, and read it again while it is still there.
      retries_left[step] = retries_left.get(step, 2) - 1
      time.sleep(0.2)
      tried.discard(step)
    if not os.path.exists(path) or step not in tried:  # deleted under us, or to be read again
      mngr = _open(workdir, keep, read_only)
      continue
    message = f'Checkpoint {step} in {workdir} cannot be read ({type(error).__name__}: ' \
              f'{str(error)[:300]})'
    if read_only and newest_only:
      raise errors.DamagedFileError(
          f'{message}. The newest checkpoint holds the run\'s best variables, so none older is '
          'read in its place: run the training command once (it sets the damaged checkpoint '
          'aside and continues from the one before it), or restore it.')
    if read_only:
      message += '; left as it is, trying the previous one.'
    else:
      aside = os.path.join(os.path.abspath(workdir), 'corrupt_checkpoints', str(step))
      message += f'; moved to {aside}, trying the previous one.'
      os.makedirs(os.path.dirname(aside), exist_ok=True)
      shutil.rmtree(aside, ignore_errors=True)
      shutil.move(path, aside)
      mngr = manager(workdir, keep)
    console.warn(message)


def load_best(workdir: str, seed_index: int = 0, newest_only: bool = False):
  """(config, model, variables, history, best_epoch) of a workdir's best variables for one seed.

  The best variables of every seed travel in each checkpoint, so the latest one is read (with
  `newest_only`, a damaged latest one is an error rather than skipped for an older one).
  """
  config_path = os.path.join(workdir_lib.check(workdir, must_hold_run=True), 'config.json')
  try:
    saved = files.read_json(config_path, '', required=config_check.REQUIRED)
  except errors.DamagedFileError as e:
    copy = saved_config(workdir)
    if copy is None:
      raise errors.DamagedFileError(f'{e} No checkpoint holds a copy of it: restore it, or run '
                                    'the training command once, which rewrites it.') from None
    console.warn(f'{e} Using the copy in checkpoint {copy[0]}.')
    saved = copy[1]
  config = defaults.complete(saved, older_code=True)
  defaults.import_extensions(config)  # a user's model or metric, registered by its module
  model = state_lib.create_model(config)
  mngr, step, ckpt, meta = restore_latest(
      workdir, config.keep_checkpoints, state_lib.checkpoint_item(config, model, 1),
      read_only=True, newest_only=newest_only)
  mngr.close()
  if step is None:
    raise errors.WorkdirError(f'--workdir {workdir!r} holds no checkpoint yet: its run has not '
                              'finished an epoch. Train first (or wait for the first epoch).')
  history = seeds.history(meta['history'], seed_index)
  return (config, model, seeds.take(ckpt['best'], seed_index), history,
          results.best_epoch(history))
