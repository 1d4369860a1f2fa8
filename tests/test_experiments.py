"""The experiment scripts on real slices: seeds tables, report rows, a sweep that never peeks."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from experiments import compare_architectures
from experiments import reproduce_tables
from experiments import sweep
from experiments import time_to_accuracy
from experiments import update_readme_table
from experiments.lib import common
from experiments.lib import early_stopping
from experiments.lib import runs
from fmnist_jax import errors
from fmnist_jax import input_pipeline
from fmnist_jax import metrics
from fmnist_jax import provenance
from fmnist_jax import reporting

def _dirs(tmp_path):
  return ['--workdir', str(tmp_path / 'w'), '--output', str(tmp_path / 'o')]


TINY = ['--config.train_split=train[:1000]', '--config.validation_split=train[59000:]',
        '--config.progress_bar=off']


def test_seed_summary_and_welch():
  s = reporting.seed_summary([1.0, 2.0, 3.0])
  assert s['mean'] == 2.0 and s['std'] == 1.0 and s['min'] == 1.0 and s['max'] == 3.0
  assert s['ci95_high'] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
  same, apart = reporting.welch_tests({'a': [0.90, 0.91, 0.92], 'b': [0.905, 0.91, 0.915],
                                       'c': [0.80, 0.81, 0.82]})[:2]
  assert not same['significant_at_0.05'] and apart['significant_at_0.05']
  assert apart['mean_difference'] == pytest.approx(0.1)
  # The prediction interval for one run is wider than the mean's by sqrt(1 + 1/n) / sqrt(1/n).
  assert (s['pi95_high'] - 2.0) / (s['ci95_high'] - 2.0) == pytest.approx(2.0)  # sqrt(4/3 * 3)


def test_holm_adjusts_like_its_definition_and_welch_tables_carry_it():
  # p sorted 0.01, 0.02, 0.04 of m = 3: 0.03, max(0.03, 0.04), max(0.04, 0.04).
  assert reporting.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
  assert reporting.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
  assert reporting.holm([0.03]) == pytest.approx([0.03])  # one test: unchanged
  adjusted = reporting.holm([0.02, float('nan'), 0.04])  # NaN: no test, not counted in m
  assert np.isnan(adjusted[1]) and adjusted[0] == pytest.approx(0.04)
  assert adjusted[2] == pytest.approx(0.04)
  tests = reporting.welch_tests({'a': [0.90, 0.91, 0.92], 'b': [0.905, 0.91, 0.915],
                                 'c': [0.80, 0.81, 0.82]})
  assert [t['p_holm'] for t in tests] == pytest.approx(
      reporting.holm([t['p_value'] for t in tests]))
  assert all(t['p_holm'] >= t['p_value'] for t in tests)


def test_compare_architectures_writes_tables_and_plots(data_dir, tmp_path):
  out = tmp_path / 'out'
  rows, tests = compare_architectures.main([
      '--configs', 'configs/mlp.py', 'configs/cnn.py', '--num_seeds', '2', '--epochs', '1',
      *TINY, f'--config.data_dir={data_dir}', '--config.test_split=test[:1000]',
      '--workers', '1', '--workdir', str(tmp_path / 'w'), '--output', str(out)])
  assert [r['model'] for r in rows] == ['mlp', 'cnn'] and all(r['seeds'] == 2 for r in rows)
  assert len(tests) == 1 and 0 <= tests[0]['p_value'] <= 1
  md = (out / 'comparison.md').read_text()
  assert 'SHORTENED' in md and '±' in md and "Welch" in md
  assert md.count('SHORTENED') >= 3  # the title and every row
  for png in ('accuracy.png', 'validation_curves.png'):
    assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  per_seed = json.loads((out / 'comparison.json').read_text())['rows'][0]['per_seed_test_accuracy']
  assert rows[0]['test_accuracy_mean'] == pytest.approx(np.mean(per_seed))


def test_compare_against_earlier_rows_trains_nothing_and_tests_them(tmp_path):
  """--against takes committed rows (here two real 5-seed CPU runs) into the table and the tests."""
  results = os.path.join(common.ROOT, 'experiments/results')
  originals = os.path.join(results, 'compare_architectures/comparison.json')
  long_cnn = os.path.join(results, 'compare_cnn_crop_long/comparison.json')
  common_args = ['--configs', 'configs/cnn.py', '--finished_only', '--workdir',
                 str(tmp_path / 'empty'), '--output', str(tmp_path / 'o')]
  rows, (test,) = compare_architectures.main(
      common_args + ['--against', f'{originals}:bn_cnn', f'{long_cnn}:cnn_crop_long'])
  assert [r['name'] for r in rows] == ['bn_cnn (2026-11-23 run)', 'cnn_crop_long (2026-11-24 run)']
  a, b = (r['per_seed_test_accuracy'] for r in rows)
  assert len(a) == 5 and len(b) == 5
  expected = stats.ttest_ind(a, b, equal_var=False)
  assert test['p_value'] == pytest.approx(expected.pvalue) and test['t'] == pytest.approx(
      expected.statistic)
  md = (tmp_path / 'o' / 'comparison.md').read_text()
  assert 'earlier run: ' + originals in md and '(2026-11-24 run)' in md
  with pytest.raises(errors.UserError, match='has no row mlp_crop; its rows: mlp, cnn, bn_cnn'):
    compare_architectures.main(common_args + ['--against', f'{originals}:mlp_crop'])
  with pytest.raises(errors.UserError, match='no such file'):
    compare_architectures.main(common_args + ['--against', str(tmp_path / 'nothing.json')])
  with pytest.raises(errors.UserError, match='nothing to tabulate'):
    compare_architectures.main(common_args)


def test_reproduce_tables_labels_shortened_rows(data_dir, tmp_path):
  config = os.path.join(common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  rows = reproduce_tables.main(['--configs', config, '--num_seeds', '2', '--max_epochs', '1',
                                f'--config.data_dir={data_dir}', '--config.progress_bar=off',
                                '--workers', '1', *_dirs(tmp_path)])
  (row,) = rows
  assert row['reported_test_accuracy'] == 0.85 and row['epochs_run'] == 1
  assert row['report_epochs'] == 10 and row['shortened']
  md = (tmp_path / 'o' / 'reproduction.md').read_text()
  assert 'SHORTENED' in md.splitlines()[0] and '1 / 10 SHORTENED' in md and '85.00%' in md


def test_mobilenetv2_row_without_imagenet_weights_says_not_pretrained(data_dir, tmp_path,
                                                                     monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'empty_keras_home'))
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  config = os.path.join(common.ROOT,
                        'configs/reports/keras_mobilenetv2_90_31_transfer.py')
  common_args = ['--configs', config, '--num_seeds', '1', '--max_epochs', '1',
                 f'--config.data_dir={data_dir}', '--config.progress_bar=off',
                 '--config.train_split=train[:320]', '--config.validation_split=train[59900:]',
                 '--config.test_split=test[:100]',
                 '--workers', '1', *_dirs(tmp_path)]
  with pytest.raises(errors.UserError, match='config.backbone.weights'):
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
    config = common.load_config(path, overrides)
    assert config.report.title and config.report.file.endswith('.md')
  small = common.load_config(
      [p for p in reproduce_tables.REPORT_CONFIGS if 'mobilenetv2_90_31_cnn' in p][0])
  assert small.model == 'small_cnn' and small.report.reported_test_accuracy == 0.9021


def test_sweep_ranks_on_validation_and_reads_test_only_for_the_winner(data_dir, tmp_path,
                                                                     monkeypatch):
  reads = []
  real = input_pipeline.load_split_from_archives  # the default source
  def recording(data_dir, archives_dir, split, **kwargs):
    reads.append(split)
    return real(data_dir, archives_dir, split, **kwargs)
  monkeypatch.setattr(input_pipeline, 'load_split_from_archives', recording)
  rows = sweep.main(['--config', 'configs/mlp.py', '--grid', 'learning_rate=0.001,0.3',
                     *TINY, '--config.num_epochs=1', f'--config.data_dir={data_dir}',
                     '--config.test_split=test[:500]',
                     '--workers', '1', *_dirs(tmp_path)])
  test_reads = [i for i, s in enumerate(reads) if s.startswith('test')]
  assert test_reads == [len(reads) - 1] and reads[-1] == 'test[:500]'  # once, after all trials
  assert rows[0]['validation_accuracy'] >= rows[1]['validation_accuracy']
  assert 'test_accuracy' in rows[0] and 'test_accuracy' not in rows[1]
  assert rows[0]['trial'] == {'learning_rate': 0.001}  # Adam at 0.3 wrecks a 1-epoch MLP.
  assert (tmp_path / 'o' / 'winner_test' / 'classification_report.json').exists()


def _summary(values):
  return reporting.seed_summary(values)


@pytest.mark.parametrize('reported,values,expected', [
    (0.90, [0.899, 0.901, 0.900], 'reproduced'),
    (0.85, [0.880, 0.882, 0.884], 'beaten'),
    (0.93, [0.920, 0.922, 0.921], 'not reproduced'),
    # Outside the confidence interval of the mean, inside the prediction interval for one run: a
    # single reported run this far from our mean is what one of our runs could give.
    (0.8990, [0.8995, 0.9000, 0.9005, 0.9010, 0.9015], 'reproduced'),
    (0.90, [0.95], 'too few seeds to decide'),
    (None, [0.90, 0.91], 'no figure reported'),
])
def test_reproduction_verdict(reported, values, expected):
  s = _summary(values)
  if expected == 'reproduced' and s['n'] == 5:
    assert not s['ci95_low'] <= reported <= s['ci95_high']  # the old rule said "beaten"
  assert reproduce_tables.verdict(reported, s) == expected


def test_reproduction_verdict_at_the_prediction_interval_edge():
  s = _summary([0.90, 0.91, 0.92])
  assert reproduce_tables.verdict(s['pi95_low'] + 1e-9, s) == 'reproduced'
  assert reproduce_tables.verdict(s['pi95_low'] - 1e-9, s) == 'beaten'
  assert reproduce_tables.verdict(s['pi95_high'] + 1e-9, s) == 'not reproduced'
  assert reproduce_tables.verdict(0.9, None) == 'not recorded (older code)'


def _fake_run(run_dir, config, test_accuracy, epochs=None, version=provenance.RESULTS_VERSION,
              final_test_accuracy=None, **extra):
  """A finished run's two files, as train.train_and_evaluate writes them (no training); `extra`:
  more results.json fields (an extra metric's test_<name>, say)."""
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  epochs = epochs or config.num_epochs
  history = [{'epoch': e + 1, 'train_loss': 0.3, 'train_accuracy': 0.9, 'validation_loss': 0.3,
              'validation_accuracy': 0.89} for e in range(epochs)]
  results = {'model': config.model, 'epochs': epochs, 'seed': config.seed, 'best_epoch': epochs,
             'test_accuracy': test_accuracy, 'test_loss': 0.3, 'validation_accuracy': 0.89,
             'validation_loss': 0.3, 'num_params': 235_146, 'train_seconds': 12.0,
             'train_images_per_second': 4000.0, 'backend': 'cpu', 'devices': ['TFRT_CPU_0'],
             'history': history}
  if version > provenance.UNVERSIONED:  # version 1 wrote neither field
    results.update(results_version=version, provenance={'results_version': version, 'code': {
        'commit': 'abcdef1234567', 'uncommitted_changes': False}},
                   final_test_accuracy=final_test_accuracy, final_test_loss=0.3)
  results.update(extra)
  with open(os.path.join(run_dir, 'results.json'), 'w') as f:
    json.dump(results, f)
  return results


def test_records_of_older_code_are_not_reused_and_a_table_labels_them(tmp_path, capsys):
  config = os.path.join(common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  argv = ['--configs', config, '--workers', '1', *_dirs(tmp_path)]
  (row,) = reproduce_tables.plan(reproduce_tables.parse_args(argv))
  planned = common.seed_runs(row['config'], row['workdir'])
  for (label, _, run_config), accuracy in zip(planned, [0.880, 0.882, 0.879, 0.884, 0.881]):
    results = _fake_run(tmp_path / 'old' / label, run_config, accuracy, version=1)
    record = tmp_path / 'o' / 'seeds' / 'pytorch_ann_vs_cnn_90_ann' / f'{label}.json'
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({'config': json.loads(run_config.to_json_best_effort()),
                                  'results': results}))
  reproduce_tables.main(argv + ['--status'])
  assert '0/5 finished' in capsys.readouterr().out  # not runs of today's code
  (old,) = reproduce_tables.main(argv + ['--finished_only'])
  assert old['results_version'] == 1 and old['seeds'] == 5
  assert old['made_by'] == 'results version 1 (no provenance recorded)'
  assert old['final_verdict'] == 'not recorded (older code)'
  md = (tmp_path / 'o' / 'reproduction.md').read_text()
  assert 'SOME ROWS FROM OLDER CODE' in md.splitlines()[0]

  # Today's seeds, once some have finished, replace the older ones (never merged with them).
  for (label, run_dir, run_config), accuracy in zip(planned[:3], [0.870, 0.872, 0.871]):
    _fake_run(run_dir, run_config, accuracy, final_test_accuracy=0.84)
  (new,) = reproduce_tables.main(argv + ['--finished_only'])
  assert new['per_seed_test_accuracy'] == [0.870, 0.872, 0.871]
  assert new['results_version'] == provenance.RESULTS_VERSION
  assert new['made_by'] == f'results version {provenance.RESULTS_VERSION}, commit abcdef1'
  assert new['per_seed_final_test_accuracy'] == [0.84] * 3
  # 0.85 reported: above every final-weights run of ours, below every best-validation one.
  assert new['final_verdict'] == 'not reproduced' and new['verdict'] == 'beaten'
  assert 'final weights after 10 epochs' in new['report_protocol']


def _fake_checkpoint(run_dir, epochs_done, step):
  meta = os.path.join(run_dir, 'checkpoints', str(step), 'meta')
  os.makedirs(meta)
  with open(os.path.join(meta, 'metadata'), 'w') as f:
    json.dump({'history': [{'epoch': e + 1} for e in range(epochs_done)]}, f)


def test_status_view_and_records_on_synthetic_runs(tmp_path, capsys):
  config = os.path.join(common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  argv = ['--configs', config, '--workers', '1', *_dirs(tmp_path)]
  (row,) = reproduce_tables.plan(reproduce_tables.parse_args(argv))
  assert row['config'].num_seeds == 5  # the row's own seed count
  planned = common.seed_runs(row['config'], row['workdir'])
  assert [label for label, _, _ in planned] == [f'seed_{s}' for s in range(5)]
  (_, dir0, config0), (_, dir1, config1), (_, dir2, _), (_, dir3, config3) = planned[:4]
  _fake_run(dir0, config0, 0.881)
  _fake_checkpoint(dir1, 3, 2250)
  _fake_checkpoint(dir1, 4, 3000)  # the newest checkpoint counts
  _fake_run(dir2, config1, 0.5)  # seed 1's config in seed 2's directory: not seed 2's run
  short = config3.copy_and_resolve_references()
  short.num_epochs = 2
  _fake_run(dir3, short, 0.6)  # a run of another schedule is not this row's
  record = tmp_path / 'o' / 'seeds' / 'pytorch_ann_vs_cnn_90_ann' / 'seed_4.json'
  record.parent.mkdir(parents=True)
  config4 = planned[4][2]
  results4 = _fake_run(tmp_path / 'elsewhere', config4, 0.884)
  record.write_text(json.dumps({'config': json.loads(config4.to_json_best_effort()),
                                'results': results4}))

  assert reproduce_tables.main(argv + ['--status']) is None
  out = capsys.readouterr().out
  assert ('pytorch_ann_vs_cnn_90_ann: 2/5 finished: seed 0 0.8810, seed 1 4/10 epochs, '
          'seed 2 0/10 epochs, seed 3 0/10 epochs, seed 4 0.8840') in out
  assert '2 of 5 runs finished.' in out
  assert not (tmp_path / 'o' / 'reproduction.md').exists()  # --status writes nothing

  (table_row,) = reproduce_tables.main(argv + ['--finished_only'])
  assert table_row['seeds'] == 2 and table_row['seeds_asked'] == 5
  assert table_row['per_seed_test_accuracy'] == [0.881, 0.884]
  md = (tmp_path / 'o' / 'reproduction.md').read_text()
  assert 'FEWER SEEDS THAN ASKED' in md.splitlines()[0] and '2 of 5 asked' in md
  # The finished run in the workdir is now kept as a record too; the others are not.
  records = sorted(p.name for p in record.parent.iterdir())
  assert records == ['seed_0.json', 'seed_4.json']


def test_readme_headline_is_the_title_and_the_short_table():
  table = ('# Report rows reproduced (1 OF 2 ROWS NOT RUN YET)\n\nMachine: x.\n\n| a |\n| --- |\n\n'
           '## In short (the README\'s headline)\n\n| verdict |\n| --- |\n| **beaten** |\n\n'
           '## Notes\n\nmore\n')
  block = update_readme_table.headline(table)
  assert block.startswith('*Report rows reproduced (1 OF 2 ROWS NOT RUN YET)* (the runs continue')
  assert block.endswith('| verdict |\n| --- |\n| **beaten** |')
  done = update_readme_table.headline(table.replace(' (1 OF 2 ROWS NOT RUN YET)', ''))
  assert 'runs continue' not in done and '## Notes' not in done


def _record(path, config, per_seed_accuracy, **changes):
  """A multi-seed record as a GPU run with --vmap_seeds writes it (seeds trained together)."""
  config = config.copy_and_resolve_references()
  config.num_seeds = len(per_seed_accuracy)
  for field, value in changes.items():
    config[field] = value
  per = [{'seed': config.seed + k, 'best_epoch': config.num_epochs, 'test_accuracy': a,
          'test_loss': 0.3, 'validation_accuracy': 0.89, 'validation_loss': 0.3}
         for k, a in enumerate(per_seed_accuracy)]
  results = {'results_version': provenance.RESULTS_VERSION,
             'model': config.model, 'epochs': config.num_epochs, 'num_params': 235_146,
             'seed': [p['seed'] for p in per], 'per_seed': per,
             'test_accuracy': sum(per_seed_accuracy) / len(per), 'train_seconds': 30.0,
             'backend': 'gpu', 'devices': ['cuda:0'], 'device_kinds': ['NVIDIA H100 80GB HBM3'],
             'history': []}
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({'config': json.loads(config.to_json_best_effort()),
                              'results': results}))


def test_other_records_complete_a_row_only_with_the_same_recipe(tmp_path, capsys):
  config = os.path.join(common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  other = tmp_path / 'gpu' / 'pytorch_ann_vs_cnn_90_ann'
  argv = ['--configs', config, '--workers', '1', *_dirs(tmp_path),
          '--other_records', str(tmp_path / 'gpu'), '--finished_only']
  (row,) = reproduce_tables.plan(reproduce_tables.parse_args(argv))
  _record(other / 'a_other_rate.json', row['config'], [0.9] * 5, learning_rate=0.5)
  _record(other / 'b_too_few.json', row['config'], [0.9, 0.9], steps_per_dispatch=16)
  assert reproduce_tables.main(argv) == []  # neither is this row's recipe with its 5 seeds
  assert 'no finished seed yet' in capsys.readouterr().out

  _record(other / 'c_same_recipe.json', row['config'], [0.881, 0.883, 0.879, 0.884, 0.880],
          steps_per_dispatch=16)
  (table_row,) = reproduce_tables.main(argv)
  assert table_row['per_seed_test_accuracy'] == [0.881, 0.883, 0.879, 0.884, 0.880]
  assert table_row['trained_on'] == 'GPU (NVIDIA H100 80GB HBM3)'
  assert 'c_same_recipe.json: num_seeds=5, steps_per_dispatch=16' in table_row['note']
  assert 'GPU (NVIDIA H100 80GB HBM3)' in (tmp_path / 'o' / 'reproduction.md').read_text()
  reproduce_tables.main(argv[:-1] + ['--status'])
  assert '5 seeds finished on GPU (NVIDIA H100 80GB HBM3)' in capsys.readouterr().out

  # The row's own seeds, once all finished, come first.
  for label, run_dir, run_config in common.seed_runs(row['config'],
                                                                      row['workdir']):
    _fake_run(run_dir, run_config, 0.87)
  (table_row,) = reproduce_tables.main(argv)
  assert table_row['per_seed_test_accuracy'] == [0.87] * 5
  assert table_row['trained_on'] == 'CPU'


def test_a_damaged_seed_record_is_one_error_naming_it(tmp_path):
  config = os.path.join(common.ROOT, 'configs/reports/pytorch_ann_vs_cnn_90_ann.py')
  argv = ['--configs', config, '--workers', '1', *_dirs(tmp_path),
          '--finished_only']
  record = tmp_path / 'o' / 'seeds' / 'pytorch_ann_vs_cnn_90_ann' / 'seed_0.json'
  record.parent.mkdir(parents=True)
  record.write_text('{"config": {"model": "mlp"}, "resu')  # cut off mid-write
  with pytest.raises(errors.DamagedFileError, match='seed_0.json is damaged') as e:
    reproduce_tables.main(argv)
  assert 'git checkout' in str(e.value) and 'train that seed again' in str(e.value)
  record.write_text('{"config": {"model": "mlp"}}')  # edited: no results
  with pytest.raises(errors.DamagedFileError, match='lacks results'):
    reproduce_tables.main(argv)
  # A damaged results.json of a run in the workdir is not a finished run (running it rebuilds it).
  record.unlink()
  (row,) = reproduce_tables.plan(reproduce_tables.parse_args(argv))
  (_, run_dir, run_config) = common.seed_runs(row['config'], row['workdir'])[0]
  _fake_run(run_dir, run_config, 0.88)
  with open(os.path.join(run_dir, 'results.json'), 'w') as f:
    f.write('{"model": "mlp", "epo')
  assert runs.finished_run(run_dir, run_config) is None


def test_a_run_dir_of_an_older_results_version_is_moved_aside_and_trained_again(tmp_path,
                                                                                monkeypatch):
  config = common.load_config('configs/mlp.py', validate=False)
  old_dir, new_dir = tmp_path / 'old', tmp_path / 'new'
  _fake_run(old_dir, config, 0.88, version=1)
  _fake_run(new_dir, config, 0.89)
  assert runs.older_results_version(str(old_dir)) == 1
  assert runs.older_results_version(str(new_dir)) is None
  assert runs.older_results_version(str(tmp_path / 'absent')) is None
  trained = []
  monkeypatch.setattr(runs.train, 'train_and_evaluate',
                      lambda c, w, **kw: trained.append(w) or {'workdir': w})
  runs.run(config, str(old_dir))
  assert trained == [str(old_dir)] and not old_dir.exists()  # trained afresh by today's code
  assert json.load(open(tmp_path / 'old.results_v1' / 'results.json'))['test_accuracy'] == 0.88


def _seed_record(accuracies, seconds=60.0, test=0.9):
  history = [{'epoch': i + 1, 'validation_accuracy': a, 'train_seconds': seconds}
             for i, a in enumerate(accuracies)]
  return {'config': {}, 'results': {'results_version': provenance.RESULTS_VERSION,
                                    'backend': 'cpu', 'device_kinds': ['cpu'],
                                    'epochs': len(history), 'test_accuracy': test,
                                    'history': history}}


def test_time_to_accuracy_reads_thresholds_on_validation_from_seed_records(tmp_path):
  folder = tmp_path / 'compare_x' / 'seeds' / 'fast'
  folder.mkdir(parents=True)
  for seed, (accuracies, test) in enumerate([([0.89, 0.91, 0.925, 0.93], 0.92),
                                             ([0.90, 0.92, 0.921, 0.94], 0.93)]):
    (folder / f'seed_{seed}.json').write_text(json.dumps(_seed_record(accuracies, test=test)))
  (row,) = time_to_accuracy.main(['--records', str(tmp_path), '--output', str(tmp_path / 'o'),
                                 '--docs', ''])
  assert row['config'] == 'compare_x/fast' and row['seeds'] == 2
  # 0.90: epoch 2 and epoch 1 (1.5 epochs of 1 minute on average); 0.94: one seed of two.
  assert row['reached']['0.90'] == {'seeds': 2, 'minutes': 1.5, 'epochs': 1.5}
  assert row['reached']['0.94'] == {'seeds': 1, 'minutes': 4.0, 'epochs': 4.0}
  assert row['reached']['0.95'] is None
  assert row['test_accuracy']['mean'] == pytest.approx(0.925)
  md = (tmp_path / 'o' / 'time_to_accuracy.md').read_text()
  assert '4.0 min (4 ep), 1/2 seeds' in md and '| — |' in md
  assert (tmp_path / 'o' / 'time_to_accuracy.png').read_bytes()[:4] == b'\x89PNG'


def test_one_at_a_time_trials_are_the_base_and_each_value_alone():
  grid = sweep.parse_grid(['label_smoothing=0.0', 'nesterov=False,True', 'model_args.x=1'])
  trials = sweep.trials(grid, None, 0, one_at_a_time=True)
  assert trials == [{}, {'label_smoothing': 0.0}, {'nesterov': False}, {'nesterov': True},
                    {'model_args.x': 1}]
  assert [sweep.trial_name(t) for t in trials[:2]] == ['base', 'label_smoothing=0.0']
  assert len(sweep.trials(grid, None, 0)) == 2  # the product without it


def test_config_overrides_reach_a_models_own_fields_and_name_the_wrong_ones():
  config = common.load_config(
      'configs/speedrun.py', ['model_args.bn_momentum=0.9'], validate=False)
  assert config.model_args.bn_momentum == 0.9
  with pytest.raises(errors.ConfigError, match='no field .bogus.; its fields: widths'):
    common.load_config('configs/speedrun.py', ['model_args.bogus=1'])


def test_a_scripts_config_overrides_apply_to_every_config_it_names(tmp_path, capsys):
  """--config.<field>=<value> as main takes it, for each config of a comparison, checked before
  anything trains; the old --set is one ERROR line pointing at it."""
  argv = ['--configs', 'configs/mlp.py', 'configs/cnn.py', '--finished_only', '--workdir',
          str(tmp_path / 'w'), '--output', str(tmp_path / 'o')]
  args = compare_architectures.parse_args(argv + ['--config.model_args.hidden=(64,)',
                                                  '--config.augment.flip', '--config.num_epochs',
                                                  '3'])
  assert args.config_overrides == ['model_args.hidden=(64,)', 'augment.flip=true',
                                   'num_epochs=3']
  mlp = common.load_config('configs/mlp.py', args.config_overrides)
  assert mlp.model_args.hidden == (64,) and mlp.augment.flip is True and mlp.num_epochs == 3
  # The mlp has no `features` (the cnn has): the error names its model and fields; nothing
  # trained or written.
  with pytest.raises(errors.ConfigError,
                     match="model 'mlp' has no field 'features'; its fields: hidden"):
    compare_architectures.main(argv + ['--config.model_args.features=(16, 32)'])
  with pytest.raises(errors.ConfigError, match="no field 'batchsize'. Did you mean 'batch_size'"):
    sweep.main(['--config', 'configs/mlp.py', '--grid', 'batchsize=32,64', '--workdir',
                str(tmp_path / 'w'), '--output', str(tmp_path / 'o')])
  with pytest.raises(errors.ConfigError, match="--config.num_epochs=abc"):
    sweep.main(['--config', 'configs/mlp.py', '--grid', 'learning_rate=0.1',
                '--config.num_epochs=abc', '--workdir', str(tmp_path / 'w')])
  assert not (tmp_path / 'o' / 'comparison.json').exists()
  with pytest.raises(SystemExit):
    compare_architectures.parse_args(argv + ['--set', 'num_epochs=1'])
  assert 'give each override as --config.<field>=<value>' in capsys.readouterr().err


def test_a_registered_metric_reaches_the_comparison_table_and_json(tmp_path):
  """config.metrics' test_<name> of each seed (results.json) becomes a column and JSON fields
  beside accuracy; a row whose runs lack it shows a dash."""
  argv = ['--configs', 'configs/mlp.py', 'configs/cnn.py', '--num_seeds', '2', '--sequential',
          '--finished_only', "--config.metrics=('macro_f1',)", '--workdir', str(tmp_path / 'w'),
          '--output', str(tmp_path / 'o')]
  f1 = {'mlp': [0.81, 0.83], 'cnn': [0.90, 0.92]}
  for name in f1:
    config = common.load_config(f'configs/{name}.py', ['num_seeds=2', 'seed=0',
                                                      "metrics=('macro_f1',)"])
    for _, run_dir, run_config in common.seed_runs(config, str(tmp_path / 'w' / name)):
      extra = {'test_macro_f1': f1[name][run_config.seed], 'validation_macro_f1': 0.8,
               'final_test_macro_f1': 0.79} if name == 'mlp' or run_config.seed == 0 else {}
      _fake_run(run_dir, run_config, 0.9 + 0.01 * run_config.seed, **extra)
  rows, _ = compare_architectures.main(argv)
  mlp, cnn = rows
  assert mlp['metrics'] == ['macro_f1'] and mlp['per_seed_test_macro_f1'] == [0.81, 0.83]
  assert mlp['test_macro_f1_mean'] == pytest.approx(0.82)
  assert mlp['test_macro_f1_std'] == pytest.approx(np.std([0.81, 0.83], ddof=1))
  assert cnn['metrics'] == [] and 'test_macro_f1_mean' not in cnn  # seed 1 lacks it
  saved = json.loads((tmp_path / 'o' / 'comparison.json').read_text())['rows'][0]
  assert saved['per_seed_test_macro_f1'] == [0.81, 0.83]
  md = (tmp_path / 'o' / 'comparison.md').read_text()
  header, _, mlp_line, cnn_line = md.split('\n\n')[2].splitlines()[:4]
  column = header.split(' | ').index('test macro_f1 (mean ± std)')
  assert mlp_line.split(' | ')[column] == '0.8200 ± 0.0141'
  assert cnn_line.split(' | ')[column] == '—'
  assert 'per_seed' not in (tmp_path / 'o' / 'comparison.csv').read_text().splitlines()[0]


def test_the_sweep_ranks_by_the_runs_selection_in_its_direction():
  rows = [{'trial': {'lr': 1}, 'validation_loss': 0.40, 'stopped_early': False},
          {'trial': {'lr': 2}, 'validation_loss': 0.20, 'stopped_early': True},
          {'trial': {'lr': 3}, 'validation_loss': 0.30, 'stopped_early': False}]
  by_loss = sweep.rank(rows, metrics.selection('loss'))
  assert [r['trial']['lr'] for r in by_loss] == [3, 1, 2]  # lower first; stopped ones last
  for r, accuracy in zip(rows, (0.8, 0.95, 0.9)):
    r['validation_accuracy'] = accuracy
  assert [r['trial']['lr'] for r in sweep.rank(rows, metrics.selection())] == [3, 1, 2]
  assert [r['trial']['lr'] for r in sweep.rank(rows[:1] + rows[2:], metrics.Selection(
      'accuracy', False))] == [1, 3]


def test_a_grid_over_best_by_is_refused(tmp_path):
  with pytest.raises(errors.UserError, match='choose its best epoch alike'):
    sweep.main(['--config', 'configs/mlp.py', '--grid', 'best_by=accuracy,loss', '--workdir',
                str(tmp_path / 'w'), '--output', str(tmp_path / 'o')])


def test_a_trial_asha_stopped_reports_its_best_epoch_by_the_selection(tmp_path):
  """The stopped trial's row: its best epoch among those it finished, by validation loss here."""
  history = [{'epoch': e, 'validation_accuracy': a, 'validation_loss': l}
             for e, a, l in ((1, 0.80, 0.50), (2, 0.85, 0.45), (3, 0.84, 0.40))]
  meta = tmp_path / 'checkpoints' / '300' / 'meta'
  meta.mkdir(parents=True)
  (meta / 'metadata').write_text(json.dumps({'history': history}))
  (tmp_path / early_stopping.STOPPED).write_text('{}')
  config = common.load_config('configs/mlp.py', validate=False)
  by_loss = early_stopping.outcome(config, str(tmp_path), metrics.selection('loss'))
  assert by_loss['best_epoch'] == 3 and by_loss['validation_loss'] == 0.40
  assert by_loss['stopped_early'] and by_loss['epochs'] == 3
  assert early_stopping.outcome(config, str(tmp_path), metrics.selection())['best_epoch'] == 2
