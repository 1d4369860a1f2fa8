"""The experiment scripts on real slices: seeds tables, report rows, and a sweep that never peeks."""
import json
import os
import sys

import numpy as np
import pytest

from fmnist_jax import input_pipeline
from fmnist_jax import reporting

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'experiments'))
import compare_architectures  # pylint: disable=g-import-not-at-top,wrong-import-position
import reproduce_tables  # pylint: disable=g-import-not-at-top,wrong-import-position
import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = ['train_split=train[:1000]', 'validation_split=train[59000:]', 'progress_bar=off']


def test_seed_summary_and_welch():
  s = reporting.seed_summary([1.0, 2.0, 3.0])
  assert s['mean'] == 2.0 and s['std'] == 1.0 and s['min'] == 1.0 and s['max'] == 3.0
  assert s['ci95_high'] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
  same, apart = reporting.welch_tests({'a': [0.90, 0.91, 0.92], 'b': [0.905, 0.91, 0.915],
                                       'c': [0.80, 0.81, 0.82]})[:2]
  assert not same['significant_at_0.05'] and apart['significant_at_0.05']
  assert apart['mean_difference'] == pytest.approx(0.1)


def test_compare_architectures_writes_tables_and_plots(data_dir, tmp_path):
  out = tmp_path / 'out'
  rows, tests = compare_architectures.main([
      '--configs', 'configs/mlp.py', 'configs/cnn.py', '--num_seeds', '2', '--epochs', '1',
      '--set', *TINY, f'data_dir={data_dir}', 'test_split=test[:1000]',
      '--workdir', str(tmp_path / 'w'), '--output', str(out)])
  assert [r['model'] for r in rows] == ['mlp', 'cnn'] and all(r['seeds'] == 2 for r in rows)
  assert len(tests) == 1 and 0 <= tests[0]['p_value'] <= 1
  md = (out / 'comparison.md').read_text()
  assert 'SHORTENED' in md and '±' in md and "Welch" in md
  assert md.count('SHORTENED') >= 3  # the title and every row
  for png in ('accuracy.png', 'validation_curves.png'):
    assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  per_seed = json.loads((out / 'comparison.json').read_text())['rows'][0]['per_seed_test_accuracy']
  assert rows[0]['test_accuracy_mean'] == pytest.approx(np.mean(per_seed))


def test_reproduce_tables_labels_shortened_rows(data_dir, tmp_path):
  config = os.path.join(reproduce_tables.common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  rows = reproduce_tables.main(['--configs', config, '--num_seeds', '2', '--max_epochs', '1',
                                '--set', f'data_dir={data_dir}', 'progress_bar=off',
                                '--workdir', str(tmp_path / 'w'), '--output', str(tmp_path / 'o')])
  (row,) = rows
  assert row['reported_test_accuracy'] == 0.85 and row['epochs_run'] == 1
  assert row['report_epochs'] == 10 and row['shortened']
  md = (tmp_path / 'o' / 'reproduction.md').read_text()
  assert 'SHORTENED' in md.splitlines()[0] and '1 / 10 SHORTENED' in md and '85.00%' in md


def test_mobilenetv2_row_without_imagenet_weights_says_not_pretrained(data_dir, tmp_path,
                                                                     monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'empty_keras_home'))
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  config = os.path.join(reproduce_tables.common.ROOT,
                        'configs/reports/keras_mobilenetv2_90_31_transfer.py')
  common_args = ['--configs', config, '--num_seeds', '1', '--max_epochs', '1', '--set',
                 f'data_dir={data_dir}', 'progress_bar=off', 'train_split=train[:320]',
                 'validation_split=train[59500:]', 'test_split=test[:500]',
                 '--workdir', str(tmp_path / 'w'), '--output', str(tmp_path / 'o')]
  with pytest.raises(SystemExit, match='config.backbone.weights'):
    reproduce_tables.main(common_args + ['--require_pretrained'])
  (row,) = reproduce_tables.main(common_args)
  assert row['pretrained'] is False and row['reported_test_accuracy'] == 0.9031
  assert row['num_params'] == 3_733_992
  assert (tmp_path / 'w' / 'keras_mobilenetv2_90_31_transfer_random_backbone' /
          'results.json').exists()
  md = (tmp_path / 'o' / 'reproduction.md').read_text()
  assert '**NOT PRETRAINED**' in md and 'MobileNetV2 transfer' in md


def test_every_report_config_loads_with_its_reported_figure():
  names = [os.path.basename(p) for p in reproduce_tables.REPORT_CONFIGS]
  assert len(names) == 8
  for path in reproduce_tables.REPORT_CONFIGS:
    # (The transfer row's ImageNet file is not on a fresh machine; its own tests cover that.)
    overrides = ['backbone.weights=random'] if 'transfer' in path else []
    config = reproduce_tables.common.load_config(path, overrides)
    assert config.report.title and config.report.file.endswith('.md')
  small = reproduce_tables.common.load_config(
      [p for p in reproduce_tables.REPORT_CONFIGS if 'mobilenetv2_90_31_cnn' in p][0])
  assert small.model == 'small_cnn' and small.report.reported_test_accuracy == 0.9021


def test_sweep_ranks_on_validation_and_reads_test_only_for_the_winner(data_dir, tmp_path,
                                                                     monkeypatch):
  reads = []
  real = input_pipeline.load_split
  def recording(builder, split, official_order=False):
    reads.append(split)
    return real(builder, split, official_order)
  monkeypatch.setattr(input_pipeline, 'load_split', recording)
  rows = sweep.main(['--config', 'configs/mlp.py', '--grid', 'learning_rate=0.001,0.3',
                     '--set', *TINY, 'num_epochs=1', f'data_dir={data_dir}', 'test_split=test[:500]',
                     '--workdir', str(tmp_path / 'w'), '--output', str(tmp_path / 'o')])
  test_reads = [i for i, s in enumerate(reads) if s.startswith('test')]
  assert test_reads == [len(reads) - 1] and reads[-1] == 'test[:500]'  # once, after all trials
  assert rows[0]['validation_accuracy'] >= rows[1]['validation_accuracy']
  assert 'test_accuracy' in rows[0] and 'test_accuracy' not in rows[1]
  assert rows[0]['trial'] == {'learning_rate': 0.001}  # Adam at 0.3 wrecks a 1-epoch MLP.
  assert (tmp_path / 'o' / 'winner_test' / 'classification_report.json').exists()
