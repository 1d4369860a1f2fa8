"""What a run reports: its history entries, results.json (one seed or several), the summary line.

results.json holds seed 0's figures at the top level (or, with several seeds, their means and
sample standard deviations, with each seed's own under 'per_seed'), the epoch history and the
timing; `experiments/` merges one-seed runs into the same form.
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import numpy as np

from fmnist_jax import files
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import provenance
from fmnist_jax import seeds

# What a results.json must hold to be read as one (an edited or damaged one is rebuilt).
REQUIRED = ('model', 'epochs', 'test_accuracy', 'validation_accuracy', 'history')


def best_epoch(history: list[dict[str, Any]],
               selection: metrics.Selection = metrics.Selection()) -> int:
  """The epoch whose variables are evaluated on test: the best by `selection` (validation
  accuracy unless config.best_by says otherwise), the earliest among equals."""
  return history[selection.best_index([h[selection.key] for h in history])]['epoch']


def epoch_entry(epoch, train_metrics, val_metrics, images, train_seconds, seconds):
  """A history entry: seed means at top level, each seed's values under 'per_seed' if N > 1."""
  per_seed = {
      'train_loss': [float(v) for v in train_metrics['loss']],
      'train_accuracy': [float(v) for v in train_metrics['accuracy']],
      'validation_loss': [m['loss'] for m in val_metrics],
      'validation_accuracy': [m['accuracy'] for m in val_metrics],
      # config.metrics (metrics.EVAL_METRICS), in its order
      **{f'validation_{k}': [m[k] for m in val_metrics] for k in val_metrics[0]
         if k not in ('loss', 'accuracy')},
  }
  entry = {'epoch': epoch, **{k: float(np.mean(v)) for k, v in per_seed.items()},
           'train_images': images, 'train_seconds': train_seconds, 'seconds': seconds}
  if len(val_metrics) > 1:
    entry['per_seed'] = per_seed
  return entry


# Each seed's figures in results.json, records and merged runs. test_*: the best-validation
# epoch's variables on test (what every table reports); final_test_*: the last epoch's variables
# on test (the reports' protocol; never used to select anything).
SEED_KEYS = ('seed', 'best_epoch', 'test_accuracy', 'test_loss', 'final_test_accuracy',
             'final_test_loss', 'validation_accuracy', 'validation_loss')


def seed_results(history, test_metrics, seed, final_test_metrics=None,
                 selection: metrics.Selection = metrics.Selection()) -> dict[str, Any]:
  """SEED_KEYS, then each extra metric (config.metrics) on test, final weights and validation."""
  best = best_epoch(history, selection)
  entry = history[best - 1]
  final = final_test_metrics or {'accuracy': None, 'loss': None}
  extra = [k[len('validation_'):] for k in entry if k.startswith('validation_')
           and k not in ('validation_loss', 'validation_accuracy')]
  return {
      'seed': seed,
      'best_epoch': best,
      'test_accuracy': test_metrics['accuracy'],
      'test_loss': test_metrics['loss'],
      'final_test_accuracy': final['accuracy'],
      'final_test_loss': final['loss'],
      'validation_accuracy': entry['validation_accuracy'],
      'validation_loss': entry['validation_loss'],
      **{f'{prefix}{k}': figures.get(k) for k in extra
         for prefix, figures in (('test_', test_metrics), ('final_test_', final),
                                 ('validation_', {k: entry[f'validation_{k}']}))},
  }


def build(model_name: str, model, variables, *, history, compile_seconds: float | None, per_seed,
          selection: metrics.Selection) -> dict[str, Any]:
  """results.json: seed 0's figures at top level; with several seeds their means, stds and each;
  what the model adds of its own (`models.record`, e.g. its weight file)."""
  train_images = sum(h['train_images'] for h in history)
  train_time = sum(h['train_seconds'] for h in history)
  results = {
      'results_version': provenance.RESULTS_VERSION,
      'provenance': provenance.describe(),
      'model': model_name,
      'num_params': models.count_params(variables),
      'num_trainable_params': models.count_trainable(model, variables['params']),
      'epochs': len(history),
      **per_seed[0],
      'train_seconds': sum(h['seconds'] for h in history),
      # Images of all seeds together.
      'train_images_per_second': train_images * len(per_seed) / train_time,
      'compile_seconds': compile_seconds,
      'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()],
      'device_kinds': [d.device_kind for d in jax.devices()],  # e.g. 'NVIDIA H100 80GB HBM3'
      'selection': selection.as_json(),
      'history': history,
      **models.record(model),
  }
  if len(per_seed) > 1:
    results.update(seeds.means(per_seed))
    results['seed'] = [r['seed'] for r in per_seed]
    results['best_epoch'] = [r['best_epoch'] for r in per_seed]
    results['per_seed'] = per_seed
  return results


def summary_line(results: dict[str, Any]) -> str:
  model = results['model']
  if results.get('model_note'):
    model += f' ({results["model_note"]})'
  if results['test_accuracy'] is None:
    return (f'{model}: validation accuracy {results["validation_accuracy"]:.4f} '
            f'(no test split evaluated), {results["epochs"]} epochs, '
            f'{results["train_seconds"]:.0f} s')
  if 'per_seed' in results:
    return (f'{model}: test accuracy {results["test_accuracy"]:.4f} ± '
            f'{results["test_accuracy_std"]:.4f} over {len(results["per_seed"])} seeds '
            f'({", ".join("%.4f" % r["test_accuracy"] for r in results["per_seed"])}), '
            f'validation accuracy {results["validation_accuracy"]:.4f} ± '
            f'{results["validation_accuracy_std"]:.4f}, {results["epochs"]} epochs, '
            f'{results["train_images_per_second"]:.0f} train images/s (all seeds), '
            f'{results["train_seconds"]:.0f} s')
  return (f'{model}: test accuracy {results["test_accuracy"]:.4f}, test loss '
          f'{results["test_loss"]:.4f} (best validation epoch {results["best_epoch"]} of '
          f'{results["epochs"]}, validation accuracy {results["validation_accuracy"]:.4f}), '
          f'{results["train_images_per_second"]:.0f} train images/s, '
          f'{results["train_seconds"]:.0f} s')


def log_epoch(writer, h: dict[str, Any], num_epochs: int, steps_per_epoch: int,
              images_per_second: float) -> None:
  """An epoch's TensorBoard scalars, its log entry and the one terminal line."""
  epoch = h['epoch']
  writer.write_scalars(epoch * steps_per_epoch, {k: v for k, v in h.items()
                                                 if k not in ('train_images', 'per_seed')})
  writer.write_scalars(epoch * steps_per_epoch, {'train_images_per_second': images_per_second})
  logging.info('epoch %d: %s', epoch, json.dumps(h))
  print(f'epoch {epoch:3d}/{num_epochs}  train loss {h["train_loss"]:.4f} '
        f'acc {h["train_accuracy"]:.4f}  val loss {h["validation_loss"]:.4f} '
        f'acc {h["validation_accuracy"]:.4f}' + (' (seed means)' if 'per_seed' in h else '')
        + f'  {h["seconds"]:.1f}s', flush=True)


def finish(workdir: str, writer, results: dict[str, Any], last_step: int) -> dict[str, Any]:
  """The run's end: test scalars to TensorBoard, results.json written, the summary line."""
  if results['test_accuracy'] is not None:
    writer.write_scalars(last_step, {'test_loss': results['test_loss'],
                                     'test_accuracy': results['test_accuracy']})
  writer.flush()
  writer.close()
  write_json(os.path.join(workdir, 'results.json'), results)
  print(summary_line(results), flush=True)
  return results


def write_json(path: str, obj: Any) -> None:
  """files.write_json (atomic), on process 0 only (several hosts share one workdir)."""
  if jax.process_index() == 0:
    files.write_json(path, obj)
