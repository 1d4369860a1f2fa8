"""Orbax checkpoints, keyed by the global step: the latest few and the best by validation kept.

A checkpoint is written after every epoch (step = epoch * steps_per_epoch) and, on SIGINT or
SIGTERM, in the middle of one. Orbax writes into a temporary folder and renames it when complete,
so a killed save never looks finished; a checkpoint that is complete but unreadable (truncated or
altered files) is moved to `corrupt_checkpoints/` by the training (skipped by evaluate and
predict, which never write under checkpoints/) and the previous one is used. A readable checkpoint
of another shape is refused and left untouched.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import time
from typing import Any, Callable

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from fmnist_jax import console
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import metrics as metrics_lib
from fmnist_jax import provenance

MID_EPOCH = {'mid_epoch': 1}  # the metrics of a mid-epoch checkpoint: never "best".


@dataclasses.dataclass
class Progress:
  """What a checkpoint carries beside its arrays (its JSON meta), so a run resumes identically:
  the epochs' history, how far the epoch in progress got, and the config it was trained under."""
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  epoch_steps_done: int = 0
  epoch_seconds_done: float = 0.0
  compile_seconds: float | None = None
  results_version: int = provenance.RESULTS_VERSION
  config: dict[str, Any] | None = None

  @classmethod
  def from_json(cls, meta: dict[str, Any]) -> 'Progress':
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in meta.items() if k in known
                  and not (k == 'results_version' and v is None)},
               **({} if 'results_version' in meta else
                  {'results_version': provenance.UNVERSIONED}))


def _rank(saved: dict[str, Any] | None, selection: metrics_lib.Selection) -> float:
  """A checkpoint's place in the best-by-validation order (larger is better)."""
  value = (saved or {}).get(selection.key)
  if value is None or (saved or {}).get('mid_epoch'):
    return float('-inf')
  return value if selection.higher_is_better else -value


def manager(workdir: str, keep: int, read_only: bool = False,
            selection: metrics_lib.Selection = metrics_lib.Selection()) -> ocp.CheckpointManager:
  """The workdir's checkpoints, the latest `keep` and the best by `selection` kept; `read_only`
  (evaluate, predict) never writes, moves or deletes."""
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=keep),
          policies.BestN(get_metric_fn=lambda m: _rank(m, selection), reverse=False, n=1),
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


def save(mngr: ocp.CheckpointManager, step: int, item: Any, progress: Progress,
         metrics: dict[str, float] | None = None) -> None:
  """Saves at global `step` with its `progress`; `metrics` (the epoch's validation figures, by
  which the best is kept) None for a checkpoint in the middle of an epoch.

  An interrupted epoch's checkpoint can hold the same step as that epoch's own; it is replaced.
  A full disk leaves no partial checkpoint behind and ends in DiskFullError, which names the
  folder and the space a checkpoint needs; the earlier checkpoints are intact.
  """
  if step in mngr.all_steps():
    mngr.delete(step)
  try:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(item),
        meta=ocp.args.JsonSave(dataclasses.asdict(progress))),
              metrics=MID_EPOCH if metrics is None else metrics, force=True)
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
  """Returns (item, meta dict) saved at `step`, shaped like `abstract_item`; ValueError when the
  meta lacks what a resume needs (a damaged or edited file)."""
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


def _open(workdir: str, keep: int, read_only: bool, attempts: int = 20,
          selection: metrics_lib.Selection = metrics_lib.Selection()) -> ocp.CheckpointManager:
  """`manager`, which lists the checkpoints; a reader retries when one vanishes while it lists
  them (the training that owns the workdir deletes its old ones)."""
  for attempt in range(attempts):
    try:
      return manager(workdir, keep, read_only, selection)
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
                   newest_only: bool = False,
                   selection: metrics_lib.Selection = metrics_lib.Selection()):
  """(manager, step, item, meta) of the newest readable checkpoint; step None if there is none.

  A checkpoint whose arrays do not fit `abstract_item` (another model, optimizer or num_seeds) is
  refused with StructureMismatchError and left exactly as it is. A checkpoint that cannot be read
  is moved to <workdir>/corrupt_checkpoints/<step> (kept for inspection, out of the manager's
  way), or with `read_only` just skipped, and the next older one is tried; with `newest_only`
  (evaluate, whose report must match the run's best) a damaged newest one is an error instead.
  One that vanishes while it is read (a training deletes its old checkpoints) is not damage: a
  reader lists and reads again.
  """
  mngr = _open(workdir, keep, read_only, selection=selection)
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
      raise errors.StructureMismatchError(
          f'Checkpoint {step} in {workdir} holds a differently shaped state than the config asks '
          f'for ({mismatch}); it is left untouched. Use a new --workdir for this config.')
    if read_only and retries_left.get(step, 2):
      # Orbax deletes an old checkpoint folder file by file: a reader can meet it half gone.
      # Wait, list again, and read it again while it is still there.
      retries_left[step] = retries_left.get(step, 2) - 1
      time.sleep(0.2)
      tried.discard(step)
    if not os.path.exists(path) or step not in tried:  # deleted under us, or to be read again
      mngr = _open(workdir, keep, read_only, selection=selection)
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
      mngr = manager(workdir, keep, selection=selection)
    console.warn(message)


def restore_or_init(workdir: str, keep: int, make_item: Callable[[bool], Any],
                    selection: metrics_lib.Selection, changes: list[str]):
  """(manager, item, Progress): the newest readable checkpoint, or a fresh item and Progress.

  `make_item(fresh)` builds the item: with fresh=False only its shape to restore into (no
  pretrained file read, no data-dependent initialisation), with fresh=True a run's start. A
  checkpoint of another shape (the config changed under --allow_config_change: `changes`) or made
  by code of another results version is refused, naming what changed, and left as it is.
  """
  try:
    mngr, latest, restored, meta = restore_latest(workdir, keep, make_item(False),
                                                  selection=selection)
  except errors.StructureMismatchError as e:
    changed = '; '.join(changes)
    raise errors.StructureMismatchError(
        str(e).replace('; it is left', (f'; the config changed: {changed}' if changed else '')
                       + '; it is left')) from None
  if latest is None:
    return mngr, make_item(True), Progress()
  progress = Progress.from_json(meta)
  if progress.results_version != provenance.RESULTS_VERSION:
    raise errors.WorkdirError(
        f'{workdir} holds a run started by code of results version {progress.results_version}; '
        f'this code is results version {provenance.RESULTS_VERSION} and gives other numbers, so '
        'it cannot continue that run. Use a new --workdir (or move this one away).')
  logging.info('Resumed from the checkpoint at step %d (%d epochs and %d steps done).', latest,
               len(progress.history), progress.epoch_steps_done)
  return mngr, restored, progress


def save_epoch(mngr: ocp.CheckpointManager, state, best, totals, progress: Progress,
               metrics: dict[str, float]) -> None:
  """The checkpoint at an epoch's end (fresh `totals`), ranked by its validation `metrics`."""
  progress.epoch_steps_done, progress.epoch_seconds_done = 0, 0.0
  save(mngr, step_of(state), {'state': state, 'best': best, 'totals': totals}, progress, metrics)


def step_of(state) -> int:
  """The optimizer steps a (stacked) state has taken: its checkpoint's key, which only grows (also
  when a resumed run's batch size, and with it the steps per epoch, changed)."""
  return int(np.asarray(state.step).reshape(-1)[0])


def newest_meta(workdir: str) -> dict[str, Any] | None:
  """The JSON meta (a Progress: history, results version, config) of the newest checkpoint whose
  meta reads, without orbax or any array; None without one. A cheap look at a run."""
  root = os.path.join(workdir, 'checkpoints')
  steps = sorted((int(d) for d in (os.listdir(root) if os.path.isdir(root) else ())
                  if d.isdigit()), reverse=True)
  for step in steps:
    try:
      meta = files.read_json(os.path.join(root, str(step), 'meta', 'metadata'), '')
    except errors.DamagedFileError:
      continue
    if isinstance(meta, dict) and isinstance(meta.get('history'), list):
      return meta
  return None


def has_checkpoints(workdir: str) -> bool:
  return bool(glob.glob(os.path.join(workdir, 'checkpoints', '[0-9]*')))
