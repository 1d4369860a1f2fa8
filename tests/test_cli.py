"""The one override syntax, --config.<field>=<value>: main's and the experiment scripts'."""
import json
import os
import subprocess
import sys

import pytest

from fmnist_jax import cli
from fmnist_jax import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'fmnist_jax.main', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, check=False)


def test_values_are_read_as_the_fields_type_and_a_models_own_fields_as_literals():
  config = cli.load_config('configs/mlp.py', [
      'model_args.hidden=(64, 32)', 'train_split=train[:500]', 'augment.flip=true',
      'learning_rate=1', 'test_split=', 'seed=1', 'seed=2'])
  assert config.model_args.hidden == (64, 32)  # not in the file: ast.literal_eval
  assert config.train_split == 'train[:500]' and config.test_split == ''
  assert config.augment.flip is True and config.learning_rate == 1.0 and config.seed == 2
  speedrun = cli.load_config('configs/speedrun.py', ['model_args.bn_momentum=0.9'])
  assert speedrun.model_args.bn_momentum == 0.9  # set in the file: kept its type


@pytest.mark.parametrize('overrides,message', [
    (['model_args.width=64'], "--config.model_args.width: model 'mlp' has no field 'width'; its "
     'fields: hidden.'),
    # The model chosen on the same command line is the one whose fields count.
    (['model=speedrun_cnn', 'model_args.hidden=(3,)'], "model 'speedrun_cnn' has no field "
     "'hidden'; its fields: widths, convs_per_block, bn_momentum, output_scale."),
    (['model=nope', 'model_args.x=1'], "there is no model 'nope' to take it; known models: "),
    (['batchsize=64'], "no field 'batchsize'. Did you mean 'batch_size'?"),
    (['num_epochs=abc'], '--config.num_epochs=abc'),
])
def test_a_wrong_override_is_one_config_error_naming_it(overrides, message):
  with pytest.raises(errors.ConfigError) as e:
    cli.load_config('configs/mlp.py', overrides)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_split_config_overrides_reads_mains_forms():
  overrides, rest = cli.split_config_overrides([
      '--config', 'configs/cnn.py', '--config.num_epochs=5', '--config.augment.flip',
      '--noconfig.progress_bar_x', '--config.batch_size', '64', '--workers', '1',
      '--config.model_args.hidden=(64,)'])
  assert overrides == ['num_epochs=5', 'augment.flip=true', 'progress_bar_x=false',
                       'batch_size=64', 'model_args.hidden=(64,)']
  assert rest == ['--config', 'configs/cnn.py', '--workers', '1']


def test_main_sets_a_models_own_field_from_the_command_line(data_dir, tmp_path):
  out = _main('--config', 'configs/mlp.py', '--workdir', str(tmp_path / 'w'),
              '--config.model_args.hidden=(64,)', '--config.num_epochs=1',
              f'--config.data_dir={data_dir}', '--config.train_split=train[:1000]',
              '--config.validation_split=train[59000:]', '--config.test_split=test[:500]',
              '--config.progress_bar=off')
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / 'w' / 'results.json').read_text())
  assert results['num_params'] == 784 * 64 + 64 + 64 * 10 + 10  # one hidden layer of 64
  assert json.loads((tmp_path / 'w' / 'config.json').read_text())['model_args'] == {
      'hidden': [64]}


def test_main_names_the_models_fields_for_an_unknown_one_before_loading_anything(tmp_path):
  out = _main('--config', 'configs/mlp.py', '--workdir', str(tmp_path / 'w'),
              '--config.model_args.width=64')
  errors_ = [line for line in out.stderr.splitlines() if line.startswith('ERROR:')]
  assert out.returncode == 1 and len(errors_) == 1, out.stderr[-3000:]
  assert "--config.model_args.width: model 'mlp' has no field 'width'; its fields: hidden." \
      in errors_[0]
  assert 'Traceback' not in out.stderr + out.stdout
  assert not (tmp_path / 'w').exists()  # refused before the workdir or the data were touched
