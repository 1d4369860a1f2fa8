"""Report numbers against scikit-learn, the official test order, figure and CSV files."""
import csv
import gzip
import json
import os

import numpy as np
import pytest
from sklearn import metrics as skmetrics

from fmnist_jax import input_pipeline
from fmnist_jax import reporting


def _archive(name, offset):
  path = os.path.join(input_pipeline.DEBIAN_ARCHIVES_DIR, name)
  return np.frombuffer(gzip.open(path).read()[offset:], np.uint8)


def test_official_test_order_matches_the_archive(builder):
  test = input_pipeline.load_split(builder, 'test', official_order=True)
  images = _archive('t10k-images-idx3-ubyte.gz', 16).reshape(10000, 28, 28)
  labels = _archive('t10k-labels-idx1-ubyte.gz', 8)
  np.testing.assert_array_equal(test['index'], np.arange(10000))
  np.testing.assert_array_equal(test['image'][..., 0], images)
  np.testing.assert_array_equal(test['label'], labels)


def test_indices_of_a_slice_point_into_the_archive(builder):
  part = input_pipeline.load_split(builder, 'train[100:300]')
  images = _archive('train-images-idx3-ubyte.gz', 16).reshape(60000, 28, 28)
  np.testing.assert_array_equal(part['image'][..., 0], images[part['index']])


@pytest.fixture
def fake_predictions():
  rng = np.random.default_rng(0)
  n = 300
  labels = rng.integers(0, 10, n).astype(np.int32)
  logits = rng.normal(size=(n, 10)) + 3 * np.eye(10)[labels] * (rng.random(n) < 0.7)[:, None]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
  return {'image': images, 'label': labels, 'index': np.arange(n) * 2}, probs


def test_report_equals_scikit_learn_and_files_are_written(fake_predictions, tmp_path):
  test, probs = fake_predictions
  history = [{'epoch': e, 'train_loss': 1 / e, 'validation_loss': 1.2 / e,
              'train_accuracy': 1 - 0.5 / e, 'validation_accuracy': 1 - 0.6 / e} for e in (1, 2, 3)]
  out = reporting.write_all(str(tmp_path), test, probs, 0.5, history, 'SUMMARY TABLE')
  predicted = probs.argmax(1)
  precision, recall, f1, support = skmetrics.precision_recall_fscore_support(
      test['label'], predicted, labels=range(10), zero_division=0)
  report = json.load(open(tmp_path / 'classification_report.json'))
  for i, name in enumerate(input_pipeline.CLASS_NAMES):
    row = report['report'][name]
    assert row['precision'] == pytest.approx(precision[i])
    assert row['recall'] == pytest.approx(recall[i])
    assert row['f1-score'] == pytest.approx(f1[i])
    assert row['support'] == support[i]
  accuracy = skmetrics.accuracy_score(test['label'], predicted)
  assert report['accuracy'] == out['accuracy'] == pytest.approx(accuracy)
  assert report['report']['macro avg']['f1-score'] == pytest.approx(
      skmetrics.f1_score(test['label'], predicted, average='macro'))
  cm = np.array(json.load(open(tmp_path / 'confusion_matrix.json'))['matrix'])
  np.testing.assert_array_equal(cm, skmetrics.confusion_matrix(test['label'], predicted))
  top = report['most_confused_pairs'][0]
  off = cm - np.diag(np.diag(cm))
  assert top['count'] == off.max()
  md = (tmp_path / 'classification_report.md').read_text()
  assert 'SUMMARY TABLE' in md and 'Ankle boot' in md and f'{accuracy:.4f}' in md
  rows = list(csv.DictReader(open(tmp_path / 'test_predictions.csv')))
  assert [int(r['index']) for r in rows] == list(test['index'])
  assert np.mean([r['label'] == r['predicted'] for r in rows]) == pytest.approx(accuracy)
  assert float(rows[0]['p_Ankle boot']) == pytest.approx(probs[0, 9], abs=1e-6)
  import matplotlib.pyplot as plt
  for name in reporting.FIGURES:
    image = plt.imread(tmp_path / f'{name}.png')
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05  # something is drawn
