"""What a person reads after a run: the classification report, figures and per-image predictions.

Numbers come from scikit-learn (`classification_report`, `confusion_matrix`) on the predictions of
the test split, figures from matplotlib; the same figures go to TensorBoard through the clu writer.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

import matplotlib
matplotlib.use('Agg')  # files only; no display is needed or wanted.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from fmnist_jax import files
from fmnist_jax.input_pipeline import CLASS_NAMES

FIGURES = ('confusion_matrix', 'curves', 'samples', 'misclassified')


def classification_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
  """scikit-learn's report as a dict: one entry per class name, accuracy, macro and weighted avg."""
  from sklearn import metrics as skmetrics  # pylint: disable=g-import-not-at-top  (1 s)
  return skmetrics.classification_report(labels, predicted, labels=range(len(CLASS_NAMES)),
                                         target_names=CLASS_NAMES, output_dict=True,
                                         zero_division=0)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
  from sklearn import metrics as skmetrics  # pylint: disable=g-import-not-at-top
  return skmetrics.confusion_matrix(labels, predicted, labels=range(len(CLASS_NAMES)))


def most_confused_pairs(cm: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
  off = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p]
  return [{'true': CLASS_NAMES[t], 'predicted': CLASS_NAMES[p], 'count': n}
          for n, t, p in sorted(off, reverse=True)[:k] if n > 0]


def write_predictions_csv(path: str, indices: np.ndarray, labels: np.ndarray,
                          probs: np.ndarray) -> None:
  """One row per image: index (in the original archive),label,predicted,confidence,p_<class>..."""
  predicted = probs.argmax(1)
  with files.atomic(path) as f:
    w = csv.writer(f)
    w.writerow(['index', 'label', 'predicted', 'confidence'] + [f'p_{c}' for c in CLASS_NAMES])
    for i, y, p, row in zip(indices, labels, predicted, probs):
      w.writerow([int(i), int(y), int(p), f'{row[p]:.6f}'] + [f'{v:.6f}' for v in row])


def plot_confusion_matrix(cm: np.ndarray, path: str) -> None:
  fig, ax = plt.subplots(figsize=(8, 7))
  im = ax.imshow(cm, cmap='Blues')
  fig.colorbar(im, ax=ax, fraction=0.046)
  ticks = range(len(CLASS_NAMES))
  ax.set(xticks=ticks, yticks=ticks, xlabel='predicted', ylabel='true',
         title='Confusion matrix (test)')
  ax.set_xticklabels(CLASS_NAMES, rotation=45, ha='right')
  ax.set_yticklabels(CLASS_NAMES)
  for t in ticks:
    for p in ticks:
      ax.text(p, t, int(cm[t, p]), ha='center', va='center', fontsize=8,
              color='white' if cm[t, p] > cm.max() / 2 else 'black')
  _save(fig, path)


def plot_curves(history: Sequence[dict[str, float]], path: str) -> None:
  epochs = [h['epoch'] for h in history]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, what in zip(axes, ('loss', 'accuracy')):
    ax.plot(epochs, [h[f'train_{what}'] for h in history], 'o-', label='train')
    ax.plot(epochs, [h[f'validation_{what}'] for h in history], 'o-', label='validation')
    ax.set(xlabel='epoch', ylabel=what, title=what)
    ax.grid(alpha=0.3)
    ax.legend()
  _save(fig, path)


def _image_grid(images, labels, probs, indices, path, title) -> None:
  cols = 5
  rows = max(1, -(-len(indices) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.5))
  for ax in np.ravel(axes):
    ax.axis('off')
  for ax, i in zip(np.ravel(axes), indices):
    pred = int(probs[i].argmax())
    ok = pred == labels[i]
    ax.imshow(images[i, :, :, 0], cmap='gray_r')
    ax.set_title(f'{CLASS_NAMES[pred]} {probs[i, pred]:.0%}\ntrue: {CLASS_NAMES[labels[i]]}'
                 + ('' if ok else ' ✗'), fontsize=8, color='black' if ok else 'red')
  fig.suptitle(title)
  _save(fig, path)


def plot_samples(images, labels, probs, path: str, n: int = 25) -> None:
  _image_grid(images, labels, probs, range(min(n, len(labels))), path,
              'Test images: predicted class and confidence (wrong ones in red)')


def plot_misclassified(images, labels, probs, path: str, n: int = 25) -> None:
  wrong = np.nonzero(probs.argmax(1) != labels)[0]
  worst = wrong[np.argsort(-probs[wrong].max(1), kind='stable')][:n]
  _image_grid(images, labels, probs, worst, path, 'The most confident mistakes')


def _save(fig, path: str) -> None:
  fig.tight_layout()
  with files.atomic(path, 'wb') as f:  # a report file is whole or absent
    fig.savefig(f, format='png', dpi=80)
  plt.close(fig)


def _markdown(report, cm_pairs, accuracy, loss, summary) -> str:
  lines = ['# Classification report (test split)', '',
           f'Accuracy {accuracy:.4f}, loss {loss:.4f}, {int(report["macro avg"]["support"])} '
           'images.', '', '| class | precision | recall | f1-score | support |',
           '| --- | ---: | ---: | ---: | ---: |']
  for name in list(CLASS_NAMES) + ['macro avg', 'weighted avg']:
    r = report[name]
    lines.append(f'| {name} | {r["precision"]:.4f} | {r["recall"]:.4f} | {r["f1-score"]:.4f} | '
                 f'{int(r["support"])} |')
  lines += ['', '## Most confused pairs', '', '| true | predicted as | count |',
            '| --- | --- | ---: |']
  lines += [f'| {p["true"]} | {p["predicted"]} | {p["count"]} |' for p in cm_pairs]
  lines += ['', '## Model', '', '```', summary.rstrip(), '```', '']
  return '\n'.join(lines)


def write_all(workdir: str, test: dict[str, np.ndarray], probs: np.ndarray, loss: float, history: Sequence[dict[str, float]], model_summary: str,
              writer=None, step: int = 0) -> dict[str, Any]:
  """Writes every report file into `workdir` (and the figures to `writer`); returns the report.

  `test` holds 'image', 'label' and 'index' (see input_pipeline.load_split), rows matching `probs`.
  """
  images, labels = test['image'], test['label']
  predicted = probs.argmax(1)
  report = classification_report(labels, predicted)
  cm = confusion_matrix(labels, predicted)
  pairs = most_confused_pairs(cm)
  accuracy = float(report['accuracy'])
  out = lambda name: os.path.join(workdir, name)
  files.write_json(out('classification_report.json'), {
      'accuracy': accuracy, 'loss': loss, 'report': report, 'most_confused_pairs': pairs})
  with files.atomic(out('classification_report.md')) as f:
    f.write(_markdown(report, pairs, accuracy, loss, model_summary))
  files.write_json(out('confusion_matrix.json'), {
      'class_names': list(CLASS_NAMES), 'rows': 'true', 'columns': 'predicted',
      'matrix': cm.tolist()})
  write_predictions_csv(out('test_predictions.csv'), test['index'], labels, probs)
  plot_confusion_matrix(cm, out('confusion_matrix.png'))
  plot_curves(history, out('curves.png'))
  plot_samples(images, labels, probs, out('samples.png'))
  plot_misclassified(images, labels, probs, out('misclassified.png'))
  if writer is not None:
    writer.write_images(step, {name: _read_png(out(f'{name}.png')) for name in FIGURES})
  return {'accuracy': accuracy, 'loss': loss, 'report': report}


def _read_png(path: str) -> np.ndarray:
  with open(path, 'rb') as f:
    image = plt.imread(io.BytesIO(f.read()), format='png')
  return (image[..., :3] * 255).astype(np.uint8)


# Across seeds: the comparison tables of experiments/.

def machine() -> dict[str, Any]:
  """The machine a table or benchmark was measured on (written beside every result)."""
  import datetime  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  return {'date': datetime.date.today().isoformat(), 'backend': jax.default_backend(),
          'devices': [d.device_kind for d in jax.devices()],
          'cpu': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
          'platform': platform.platform(), 'python': sys.version.split()[0],
          'jax': jax.__version__}


def machine_line(m: dict[str, Any]) -> str:
  return (f'{m["date"]}, {m["backend"]} ({", ".join(sorted(set(m["devices"])))}), '
          f'{m["cpu_count"]} CPU cores, jax {m["jax"]}')


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """One Markdown table; cells are str()-ed and a '|' inside one is escaped."""
  cell = lambda c: str(c).replace('|', '\\|').replace('\n', ' ')
  lines = ['| ' + ' | '.join(map(cell, header)) + ' |', '|' + ' --- |' * len(header)]
  lines += ['| ' + ' | '.join(map(cell, r)) + ' |' for r in rows]
  return '\n'.join(lines)


def seed_summary(values: Sequence[float]) -> dict[str, float]:
  """Mean, sample std, min and max of per-seed values, and two Student-t 95 % intervals.

  ci95: the confidence interval of the *mean* (where the mean over seeds lies): for comparing
  means. pi95: the prediction interval for *one new run* (mean ± t · s · sqrt(1 + 1/n)): for
  judging a single run, such as a report's figure.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, float)
  n = len(values)
  mean = float(values.mean())
  std = float(values.std(ddof=1)) if n > 1 else float('nan')
  t = float(stats.t.ppf(0.975, n - 1)) if n > 1 else float('nan')
  half, predict = t * std / np.sqrt(n), t * std * np.sqrt(1 + 1 / n)
  return {'n': n, 'mean': mean, 'std': std, 'ci95_low': mean - half, 'ci95_high': mean + half,
          'pi95_low': mean - predict, 'pi95_high': mean + predict, 'min': float(values.min()),
          'max': float(values.max())}


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm's step-down adjustment of several p-values (controls the family-wise error rate).

  The i-th smallest p is multiplied by (m - i) (i from 0), then made non-decreasing and capped at 1.
  """
  p = np.asarray(p_values, float)
  tested = np.flatnonzero(~np.isnan(p))  # a NaN p (two constant groups) is no test: left NaN
  adjusted, running = np.full(len(p), np.nan), 0.0
  for rank, i in enumerate(tested[np.argsort(p[tested])]):
    running = max(running, min(1.0, (len(tested) - rank) * p[i]))
    adjusted[i] = running
  return [float(a) for a in adjusted]


def welch_tests(groups: dict[str, Sequence[float]]) -> list[dict[str, Any]]:
  """Welch's t-test (unequal variances) of every pair of groups' per-seed test accuracies, with
  Holm's adjustment over all the pairs of one table beside the raw p (p_holm)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  names = list(groups)
  rows = []
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      t, p = stats.ttest_ind(groups[a], groups[b], equal_var=False)
      rows.append({'a': a, 'b': b, 'mean_difference': float(np.mean(groups[a]) - np.mean(groups[b])),
                   't': float(t), 'p_value': float(p), 'significant_at_0.05': bool(p < 0.05)})
  for row, adjusted in zip(rows, holm([r['p_value'] for r in rows])):
    row.update({'p_holm': adjusted, 'significant_at_0.05_holm': bool(adjusted < 0.05)})
  return rows


def plot_seed_accuracies(groups: dict[str, Sequence[float]], path: str, title: str) -> None:
  """Mean test accuracy with a 95 % interval per group, and every seed as a dot."""
  fig, ax = plt.subplots(figsize=(1.8 * len(groups) + 2, 4))
  for i, (name, values) in enumerate(groups.items()):
    s = seed_summary(values)
    ax.errorbar([i], [s['mean']], yerr=[[s['mean'] - s['ci95_low']], [s['ci95_high'] - s['mean']]],
                fmt='o', capsize=6, color='C0')
    ax.plot(np.full(len(values), i + 0.12), values, '.', color='C1', alpha=0.8)
  ax.set_xticks(range(len(groups)))
  ax.set_xticklabels(list(groups), rotation=20, ha='right')
  ax.set(ylabel='test accuracy', title=title)
  ax.grid(alpha=0.3)
  _save(fig, path)


def plot_validation_bands(histories: dict[str, Sequence[Sequence[float]]], path: str,
                          title: str) -> None:
  """Validation accuracy per epoch: the mean over seeds with a ±1 std band, one line per group.

  `histories[name]` is a list over seeds of per-epoch validation accuracies.
  """
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, curves in histories.items():
    curves = np.asarray(curves, float)
    epochs = np.arange(1, curves.shape[1] + 1)
    mean, std = curves.mean(0), curves.std(0, ddof=1) if len(curves) > 1 else 0 * curves[0]
    ax.plot(epochs, mean, label=f'{name} ({len(curves)} seeds)')
    ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
  ax.set(xlabel='epoch', ylabel='validation accuracy', title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  _save(fig, path)
