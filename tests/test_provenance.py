"""Provenance and the results version: results say what made them, and the numbers of a fixed run
cannot change without a new `provenance.RESULTS_VERSION`.

The fixed run is small (the BN-CNN on synthetic data, 2 epochs of 8 steps, with dropout, every
augmentation, the moving average over params and BatchNorm statistics, and AdamW's masked decay,
so every random stream and the optimizer are in it); its
losses for each results version are in tests/data/results_versions.json. A change that moves them
fails here until it bumps RESULTS_VERSION and records the new numbers (run this file with
FMNIST_RECORD_RESULTS_VERSION=1). The tolerance, 1e-5 relative, is far above float rounding on
another CPU or library version (about 1e-7 here) and far below what a changed stream, step or
default does (1e-3 and more).
"""
import json
import os

import pytest

from configs import default
from fmnist_jax import input_pipeline
from fmnist_jax import provenance
from fmnist_jax import train
from tests.test_train import _synthetic_data

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'results_versions.json')


def _fixed_config(tmp):
  config = default.get_config()
  # Large decay: biases start at zero, so only a strong one shows on them within 16 steps.
  config.update(model='bn_cnn', num_epochs=2, batch_size=64, progress_bar='off', seed=7,
                optimizer='adamw', learning_rate=3e-3, weight_decay=0.5, ema_decay=0.9,
                data_dir=str(tmp / 'unused'))
  config.augment.update(flip=True, shift=0.1, rotation=5.0, crop=1, erase=0.25)
  return config


@pytest.fixture(scope='module')
def fixed_run(tmp_path_factory) -> dict:
  tmp = tmp_path_factory.mktemp('fixed')
  config = _fixed_config(tmp)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(input_pipeline, 'load', _synthetic_data)
    return train.train_and_evaluate(config, str(tmp / 'run'))


def _numbers(results: dict) -> dict[str, list[float]]:
  return {'train_loss': [h['train_loss'] for h in results['history']],
          'validation_loss': [h['validation_loss'] for h in results['history']],
          'test_loss': [results['test_loss'], results['final_test_loss']]}


def test_a_fixed_runs_numbers_change_only_with_the_results_version(fixed_run):
  numbers = _numbers(fixed_run)
  with open(GOLDEN) as f:
    golden = json.load(f)
  version = str(provenance.RESULTS_VERSION)
  if os.environ.get('FMNIST_RECORD_RESULTS_VERSION') == '1' and version not in golden:
    golden[version] = numbers
    with open(GOLDEN, 'w') as f:
      json.dump(golden, f, indent=2)
  assert version in golden, (
      f'results version {version} has no recorded numbers: run FMNIST_RECORD_RESULTS_VERSION=1 '
      'pytest tests/test_provenance.py once, and commit tests/data/results_versions.json')
  for key, values in golden[version].items():
    assert numbers[key] == pytest.approx(values, rel=1e-5), (
        f'{key} of the fixed run moved ({values} -> {numbers[key]}) under results version '
        f'{version}: a change that moves numbers must bump provenance.RESULTS_VERSION')


def test_results_json_names_what_made_it(fixed_run):
  results = fixed_run
  assert results['results_version'] == provenance.RESULTS_VERSION
  prov = results['provenance']
  assert set(prov['libraries']) == set(provenance.LIBRARIES)
  assert all(prov['libraries'][name] for name in ('jax', 'jaxlib', 'flax', 'optax'))
  assert prov['backend'] == 'cpu' and prov['device_kinds']
  code = prov['code']
  if os.path.exists(os.path.join(os.path.dirname(os.path.dirname(__file__)), '.git')):
    assert len(code['commit']) == 40 and isinstance(code['uncommitted_changes'], bool)
  else:  # an installed package without its git checkout
    assert 'package_version' in code
  # The final weights' test figures, beside the best-validation epoch's (2 epochs, EMA on).
  assert 0 <= results['final_test_accuracy'] <= 1 and results['final_test_loss'] > 0
  assert provenance.code_line(prov).startswith(f'results version {provenance.RESULTS_VERSION}, ')


def test_code_line_of_older_results():
  assert provenance.results_version({}) == provenance.UNVERSIONED
  assert provenance.code_line(None) == 'results version 1 (no provenance recorded)'
  assert provenance.code_line({'results_version': 2, 'code': {
      'commit': '0123456789abcdef', 'uncommitted_changes': True}}) == (
          'results version 2, commit 0123456 with uncommitted changes')


def test_a_changed_step_moves_the_fixed_runs_numbers_beyond_the_tolerance(tmp_path, monkeypatch):
  """The negative control: the dropout and augmentation keys swapped (a changed step) fail the
  comparison above."""
  from fmnist_jax import streams  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(streams, 'STEP_STREAMS', tuple(reversed(streams.STEP_STREAMS)))
  config = _fixed_config(tmp_path)
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  numbers = _numbers(train.train_and_evaluate(config, str(tmp_path / 'run')))
  with open(GOLDEN) as f:
    golden = json.load(f)[str(provenance.RESULTS_VERSION)]
  assert numbers['train_loss'] != pytest.approx(golden['train_loss'], rel=1e-5)
