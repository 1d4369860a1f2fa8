"""Training, evaluation, prediction and TensorBoard events on a machine without TensorFlow."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from configs import default
from fmnist_jax import cli
from fmnist_jax import input_pipeline
from fmnist_jax import train

pytestmark = pytest.mark.slow  # subprocesses on the real data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, 'tests', 'no_tensorflow.py')
SLICE = {'num_epochs': 2, 'train_split': 'train[:4000]', 'validation_split': 'train[59000:]',
         'test_split': 'test[:2000]', 'progress_bar': 'off'}


def _without_tensorflow(args):
  out = subprocess.run([sys.executable, RUNNER, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'TENSORFLOW_IMPORTED=False' in out.stderr, out.stderr[-3000:]
  return out


def _strip(history):
  return [{k: v for k, v in e.items() if 'seconds' not in k} for e in history]


@pytest.mark.parametrize('name', ['mlp', 'cnn'])
def test_results_without_tensorflow_equal_the_tfds_path(name, data_dir, tmp_path):
  overrides = [f'--config.{k}={v}' for k, v in SLICE.items()]
  _without_tensorflow(['fmnist_jax.main', '--config', f'configs/{name}.py', *overrides,
                       f'--config.data_dir={data_dir}', '--workdir', str(tmp_path / 'free')])
  free = json.load(open(tmp_path / 'free' / 'results.json'))
  config = cli.load_config_file(os.path.join(ROOT, f'configs/{name}.py'))
  config.update(data_dir=data_dir, data_source='tfds', **SLICE)
  with_tf = train.train_and_evaluate(config, str(tmp_path / 'tfds'))
  assert _strip(free['history']) == _strip(with_tf['history'])
  for key in ('test_accuracy', 'test_loss', 'validation_accuracy', 'validation_loss',
              'best_epoch', 'num_params'):
    assert free[key] == with_tf[key], key


def test_evaluate_predict_and_tensorboard_without_tensorflow(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  _without_tensorflow(['fmnist_jax.main', '--config', 'configs/mlp.py', '--workdir', workdir,
                       f'--config.data_dir={data_dir}',
                       *[f'--config.{k}={v}' for k, v in SLICE.items()]])
  evaluated = _without_tensorflow(['fmnist_jax.evaluate', '--workdir', workdir])
  assert 'test accuracy' in evaluated.stdout
  image = input_pipeline.load_split_from_archives(data_dir, default.get_config().archives_dir,
                                                  'test[:1]')['image'][0, :, :, 0]
  Image.fromarray(image).save(tmp_path / 'item.png')
  predicted = _without_tensorflow(['fmnist_jax.predict', '--workdir', workdir, '--json',
                                   str(tmp_path / 'item.png')])
  (entry,) = json.loads(predicted.stdout)
  assert entry['class'] in input_pipeline.CLASS_NAMES
  # TensorBoard reads the events written without TensorFlow: scalars every epoch, the figures.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={'images': 0, 'scalars': 0})
  acc.Reload()
  tags = acc.Tags()
  steps = 4000 // 128  # per epoch
  assert [e.step for e in acc.Scalars('validation_accuracy')] == [steps, 2 * steps]
  assert np.isclose(acc.Scalars('test_accuracy')[-1].value,
                    json.load(open(os.path.join(workdir, 'results.json')))['test_accuracy'])
  assert {'confusion_matrix', 'curves'} <= {t.split('/')[0] for t in tags['images']}, tags
  png = acc.Images(tags['images'][0])[0].encoded_image_string
  assert png[:8] == b'\x89PNG\r\n\x1a\n'
