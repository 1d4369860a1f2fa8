"""What the experiment scripts share: loading configs, training them over seeds, the machine line.

Training goes through `fmnist_jax.train.train_and_evaluate` with `config.num_seeds` (the seeds of one
config are vmapped into one program), so every run is an ordinary workdir: checkpoints, resume,
TensorBoard, and a per-seed test report under workdir/seed_<s>/.
"""
import ast
import datetime
import importlib.util
import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `configs` imports as it does for `python -m fmnist_jax.main`.

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from fmnist_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position


def load_config(path: str, overrides: list[str] = (), validate: bool = True):
  """get_config() of a config file, then `field=value` overrides (dotted fields allowed)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'Config file {path} does not exist.')
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for item in overrides:
    field, sep, text = item.partition('=')
    if not sep:
      raise ValueError(f'Override {item!r} is not of the form field=value.')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # a plain string such as train[:5000]
    config.update_from_flattened_dict({field: value})
  if validate:
    train.validate_config(config)
  return config


def config_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def run(config, workdir: str) -> dict:
  """Trains (or resumes, or just reads) the run in `workdir`."""
  return train.train_and_evaluate(config, workdir)


def _finished(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'results.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run_seeds(config, workdir: str, sequential: bool = False, finished_only: bool = False) -> dict:
  """All of config.num_seeds seeds: vmapped in one run, or one run per seed merged afterwards.

  The merged form is the one train.py writes for a vmapped run (per_seed, means, std).
  `finished_only` trains nothing and merges the seeds whose runs have finished (None if none).
  """
  if not sequential or config.num_seeds == 1:
    return _finished(workdir) if finished_only else run(config, workdir)
  runs = []
  for seed in train.seeds(config):
    one = config.copy_and_resolve_references()
    one.seed, one.num_seeds = seed, 1
    seed_dir = os.path.join(workdir, f'seed_{seed}')
    result = _finished(seed_dir) if finished_only else run(one, seed_dir)
    if result is not None:
      runs.append(result)
  if not runs:
    return None
  if len(runs) == 1:
    return runs[0]
  per = [{k: r[k] for k in ('seed', 'best_epoch', 'test_accuracy', 'test_loss',
                            'validation_accuracy', 'validation_loss')} for r in runs]
  merged = dict(runs[0], per_seed=per, seed=[r['seed'] for r in per],
                best_epoch=[r['best_epoch'] for r in per])
  merged.update(train.seed_means(per))
  merged['train_seconds'] = sum(r['train_seconds'] for r in runs)
  merged['train_images_per_second'] = float(np.mean([r['train_images_per_second'] for r in runs]))
  merged['history'] = _merge_histories([r['history'] for r in runs])
  return merged


def _merge_histories(histories: list[list[dict]]) -> list[dict]:
  """Per-seed histories as one history of a vmapped run (means at top level, 'per_seed' lists)."""
  keys = ('train_loss', 'train_accuracy', 'validation_loss', 'validation_accuracy')
  merged = []
  for entries in zip(*histories):
    per = {k: [e[k] for e in entries] for k in keys}
    merged.append({'epoch': entries[0]['epoch'], **{k: float(np.mean(v)) for k, v in per.items()},
                   'per_seed': per})
  return merged


def per_seed(results: dict, key: str) -> list[float]:
  if 'per_seed' in results:
    return [r[key] for r in results['per_seed']]
  return [results[key]]


def validation_curves(results: dict) -> list[list[float]]:
  """Per seed, the validation accuracy of every epoch."""
  n = len(results['per_seed']) if 'per_seed' in results else 1
  return [[h['validation_accuracy'] for h in train.seed_history(results['history'], k)]
          for k in range(n)]


def machine() -> dict:
  return {'date': datetime.date.today().isoformat(), 'backend': jax.default_backend(),
          'devices': [d.device_kind for d in jax.devices()], 'cpu_count': os.cpu_count(),
          'platform': platform.platform(), 'jax': jax.__version__}


def machine_line(m: dict) -> str:
  return (f'{m["date"]}, {m["backend"]} ({", ".join(sorted(set(m["devices"])))}), '
          f'{m["cpu_count"]} CPU cores, jax {m["jax"]}')


def write_json(path: str, obj) -> None:
  with open(path, 'w') as f:
    json.dump(obj, f, indent=2)
