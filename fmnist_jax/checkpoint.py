"""Orbax checkpoints: one per epoch, the latest few and the best by validation accuracy kept."""
from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = 'validation_accuracy'


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=keep),
          policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=False, n=1),
      ]),
      enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options, item_names=('state', 'meta'))


def save(mngr: ocp.CheckpointManager, epoch: int, state: Any, meta: dict[str, Any]) -> None:
  """Saves after `epoch`; `meta` (JSON) carries the history needed to resume identically."""
  mngr.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)),
            metrics={BEST_METRIC: meta['history'][-1][BEST_METRIC]})
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, epoch: int, abstract_state: Any):
  """Returns (state, meta) saved after `epoch`, shaped like `abstract_state`."""
  restored = mngr.restore(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def best_epoch(history: list[dict[str, Any]]) -> int:
  """The epoch whose checkpoint is evaluated on test: the best validation accuracy, earliest first."""
  return max(history, key=lambda h: h[BEST_METRIC])['epoch']
