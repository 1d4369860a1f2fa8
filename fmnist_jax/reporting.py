"""What a person reads after a run: the classification report, figures and per-image predictions.

Numbers come from scikit-learn (`classification_report`, `confusion_matrix`) on the predictions of
the test split, figures from matplotlib; the same figures go to TensorBoard through the clu writer.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Sequence

import matplotlib
matplotlib.use('Agg')  # files only; no display is needed or wanted.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn import metrics as skmetrics

from fmnist_jax.input_pipeline import CLASS_NAMES

FIGURES = ('confusion_matrix', 'curves', 'samples', 'misclassified')


def classification_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
  """scikit-learn's report as a dict: one entry per class name, accuracy, macro and weighted avg."""
  return skmetrics.classification_report(labels, predicted, labels=range(len(CLASS_NAMES)),
                                         target_names=CLASS_NAMES, output_dict=True,
                                         zero_division=0)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
  return skmetrics.confusion_matrix(labels, predicted, labels=range(len(CLASS_NAMES)))


def most_confused_pairs(cm: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
  off = [(int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p]
  return [{'true': CLASS_NAMES[t], 'predicted': CLASS_NAMES[p], 'count': n}
          for n, t, p in sorted(off, reverse=True)[:k] if n > 0]


def write_predictions_csv(path: str, indices: np.ndarray, labels: np.ndarray,
                          probs: np.ndarray) -> None:
  """One row per image: index (in the original archive),label,predicted,confidence,p_<class>..."""
  predicted = probs.argmax(1)
  with open(path, 'w', newline='') as f:
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
  fig.savefig(path, dpi=80)
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
  with open(out('classification_report.json'), 'w') as f:
    json.dump({'accuracy': accuracy, 'loss': loss, 'report': report,
               'most_confused_pairs': pairs}, f, indent=2)
  with open(out('classification_report.md'), 'w') as f:
    f.write(_markdown(report, pairs, accuracy, loss, model_summary))
  with open(out('confusion_matrix.json'), 'w') as f:
    json.dump({'class_names': list(CLASS_NAMES), 'rows': 'true', 'columns': 'predicted',
               'matrix': cm.tolist()}, f, indent=2)
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
