"""Digests of fixed runs on a real slice: a refactor that claims "same results" shows them equal.

Trains mlp, cnn (two seeds together) and bn_cnn with dropout, every augmentation, EMA and AdamW's
masked decay on 3,000 real training images for 2 epochs, then prints one sha256 per run of
results.json's metrics (timings and provenance left out) and one of every array of the final
checkpoint (state, optimizer state, EMA, best variables). Run it before and after a change:

    python experiments/digests.py --workdir ~/runs/digests_before
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import default  # pylint: disable=g-import-not-at-top
from fmnist_jax import checkpoint
from fmnist_jax import state as state_lib
from fmnist_jax import train

RUNS = {'mlp': {}, 'cnn': {'num_seeds': 2}, 'bn_cnn': {}}
TIMING = ('train_seconds', 'seconds', 'train_images_per_second', 'compile_seconds', 'provenance',
          'devices', 'device_kinds')


def config_for(model: str, **overrides):
  config = default.get_config()
  config.model = model
  config.train_split, config.validation_split = 'train[:3000]', 'train[59000:]'
  config.test_split = 'test[:1000]'
  config.num_epochs, config.batch_size, config.progress_bar = 2, 100, 'off'
  config.optimizer, config.weight_decay, config.ema_decay = 'adamw', 1e-2, 0.9
  config.augment.update(flip=True, shift=0.1, rotation=5.0, zoom=0.1, shear=5.0, crop=2,
                        erase=0.5)
  config.update(overrides)
  return config


def _strip(tree):
  if isinstance(tree, dict):
    return {k: _strip(v) for k, v in tree.items() if k not in TIMING}
  if isinstance(tree, list):
    return [_strip(v) for v in tree]
  return tree


def digests(config, workdir: str) -> tuple[str, str]:
  results = train.train_and_evaluate(config, workdir)
  metrics = hashlib.sha256(json.dumps(_strip(results), sort_keys=True).encode()).hexdigest()
  model = state_lib.create_model(config)
  mngr, _, item, _ = checkpoint.restore_latest(workdir, config.keep_checkpoints,
                                               state_lib.checkpoint_item(config, model, 1),
                                               read_only=True)
  mngr.close()
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(item):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.asarray(leaf).tobytes())
  return metrics, h.hexdigest()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a fresh folder for the three runs')
  args = parser.parse_args()
  for model, overrides in RUNS.items():
    workdir = os.path.join(os.path.expanduser(args.workdir), model)
    shutil.rmtree(workdir, ignore_errors=True)
    metrics, arrays = digests(config_for(model, **overrides), workdir)
    print(f'{model:7s} results.json metrics {metrics[:16]}  checkpoint arrays {arrays[:16]}',
          flush=True)


if __name__ == '__main__':
  main()
