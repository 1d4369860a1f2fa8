"""Digests of fixed runs on a real slice: a refactor that claims "same results" shows them equal.

Trains, on 3,000 real training images for 2 epochs each: mlp, cnn (two seeds together) and bn_cnn
with dropout, every augmentation, EMA and AdamW's masked decay; cnn with every augmentation off
(Adam, constant rate: the reproduction rows' path); mlp with 4 steps a dispatch; mlp stopped by a
signal in the middle of its second epoch and resumed (its digests must equal mlp's); bn_cnn with
test-time augmentation and label smoothing; cnn with Nesterov SGD, a warm-up and a linear schedule.
Prints one sha256 per run of results.json's metrics (timings and provenance left out) and one of
every array of the final checkpoint (state, optimizer state, EMA, best variables). Run it before
and after a change:

    python -m experiments.studies.digests --workdir ~/runs/digests_before
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal

import jax
import numpy as np

from configs import default
from fmnist_jax import build
from fmnist_jax import checkpoint
from fmnist_jax import train

PLAIN = {'optimizer': 'adam', 'weight_decay': 0.0, 'ema_decay': 0.0, 'schedule': 'constant',
         'augment': {'flip': False, 'shift': 0.0, 'rotation': 0.0, 'zoom': 0.0, 'shear': 0.0,
                     'crop': 0, 'erase': 0.0}}
# name -> (model, overrides); a name ending in _resumed is stopped mid-epoch 2 and resumed.
RUNS = {
    'mlp': ('mlp', {}),
    'cnn': ('cnn', {'num_seeds': 2}),
    'bn_cnn': ('bn_cnn', {}),
    'cnn_plain': ('cnn', PLAIN),
    'mlp_k4': ('mlp', {'steps_per_dispatch': 4}),
    'mlp_resumed': ('mlp', {}),
    'bn_cnn_tta_ls': ('bn_cnn', {'tta': 'flip_translate', 'label_smoothing': 0.1}),
    'cnn_nesterov': ('cnn', {'optimizer': 'sgd', 'learning_rate': 0.05, 'nesterov': True,
                             'weight_decay': 5e-4, 'schedule': 'linear', 'warmup_epochs': 0.5}),
}
# Timings, and what describes a run without changing a number ('selection': which validation
# metric chose the best epoch, recorded since the selection can be configured).
TIMING = ('train_seconds', 'seconds', 'train_images_per_second', 'compile_seconds', 'provenance',
          'devices', 'device_kinds', 'selection')


def config_for(model: str, **overrides):
  config = default.get_config()
  config.model = model
  config.train_split, config.validation_split = 'train[:3000]', 'train[59000:]'
  config.test_split = 'test[:1000]'
  config.num_epochs, config.batch_size, config.progress_bar = 2, 100, 'off'
  config.optimizer, config.weight_decay, config.ema_decay = 'adamw', 1e-2, 0.9
  config.augment.update(flip=True, shift=0.1, rotation=5.0, zoom=0.1, shear=5.0, crop=2,
                        erase=0.5)
  config.update_from_flattened_dict({k: v for k, v in _flat(overrides).items()})
  return config


def _flat(d, prefix=''):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f'{prefix}{k}.') if isinstance(v, dict) else {prefix + k: v})
  return out


def _strip(tree):
  if isinstance(tree, dict):
    return {k: _strip(v) for k, v in tree.items() if k not in TIMING}
  if isinstance(tree, list):
    return [_strip(v) for v in tree]
  return tree


def _stop_in_epoch_2(entry) -> None:
  """After epoch 1's checkpoint: a SIGTERM, which the loop answers after its next dispatch by
  saving a mid-epoch checkpoint and exiting."""
  if entry['epoch'] == 1:
    os.kill(os.getpid(), signal.SIGTERM)


def digests(config, workdir: str, interrupt: bool = False) -> tuple[str, str]:
  if interrupt:
    try:
      train.train_and_evaluate(config, workdir, on_epoch=_stop_in_epoch_2)
      raise AssertionError('the run was not interrupted')
    except SystemExit:
      pass
  results = train.train_and_evaluate(config, workdir)
  metrics = hashlib.sha256(json.dumps(_strip(results), sort_keys=True).encode()).hexdigest()
  model = build.model(config)
  mngr, _, item, _ = checkpoint.restore_latest(workdir, config.keep_checkpoints,
                                               build.checkpoint_item(config, model, 1),
                                               read_only=True)
  mngr.close()
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(item):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.asarray(leaf).tobytes())
  return metrics, h.hexdigest()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a fresh folder for the runs')
  parser.add_argument('--only', nargs='*', choices=list(RUNS), help='these runs only')
  args = parser.parse_args()
  for name, (model, overrides) in RUNS.items():
    if args.only and name not in args.only:
      continue
    workdir = os.path.join(os.path.expanduser(args.workdir), name)
    shutil.rmtree(workdir, ignore_errors=True)
    metrics, arrays = digests(config_for(model, **overrides), workdir,
                              interrupt=name.endswith('_resumed'))
    print(f'{name:14s} results.json metrics {metrics[:16]}  checkpoint arrays {arrays[:16]}',
          flush=True)


if __name__ == '__main__':
  main()
