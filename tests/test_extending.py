"""Extending from outside the package: a model, an augmentation, a metric, a batch transform (a
mixup), a loss (a focal loss) and the best-epoch selection, registered in or chosen by a user's own
module and config file, trained through `python -m fmnist_jax.main` (in a process of its own whose
data loader gives synthetic images).

This is docs/extending.md's worked example. Each assertion fails if the run bypasses the registry
it tests: the parameter count is the registered model's at the config's width, the augmentation is
traced into the step (and moves the numbers), the metric lands in results.json.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs import default
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m fmnist_jax.main ARGS`, with tests/test_train.py's synthetic data in place of the
# real data set, and the names the user's module registered printed at exit.
RUNNER = """
import atexit, runpy, sys
sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]  # the repository, the user's folder
from fmnist_jax import input_pipeline
from tests.test_train import _synthetic_data
input_pipeline.load = _synthetic_data
atexit.register(lambda: print('TRACED', sys.modules['my_extension'].TRACED))
sys.argv[0] = 'fmnist_jax.main'
runpy.run_module('fmnist_jax.main', run_name='__main__', alter_sys=True)
"""

EXTENSION = '''
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fmnist_jax import augment, batch_transforms, losses, metrics, models

TRACED = []  # the augmentation's calls while the step is traced


@models.register('tiny_net')
class TinyNet(nn.Module):
  """One hidden layer of `width` units."""
  width: int = 8
  dropout_rate: float = 0.0
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(self.width, dtype=self.dtype)(x.reshape((x.shape[0], -1))))
    return nn.Dense(10, dtype=self.dtype)(x)


@augment.register('invert', fields={'invert': (0.0, 'probability of inverting an image')},
                  check=augment.each_field(lambda field, value: None if 0 <= value <= 1
                                           else 'a probability'))
def invert(images, key, cfg):
  TRACED.append(cfg['invert'])
  on = jax.random.bernoulli(key, cfg['invert'], (images.shape[0], 1, 1, 1))
  return jnp.where(on, 1.0 - images, images)


@metrics.register('error_rate', higher_is_better=False)
def error_rate(labels, probs):
  return float(np.mean(probs.argmax(-1) != labels))


@batch_transforms.register('my_mixup', fields={'my_mixup': (0.0, 'alpha of the mixing weight')})
def my_mixup(images, targets, key, epoch, values):
  """Each example mixed with the batch's reversed order by one Beta(alpha, alpha) weight."""
  lam = jax.random.beta(key, values['my_mixup'], values['my_mixup'])
  return lam * images + (1 - lam) * images[::-1], lam * targets + (1 - lam) * targets[::-1]


@losses.register('focal')
def focal(logits, targets, gamma=2.0):
  """Focal loss (Lin et al. 2017) against hard or soft targets."""
  p = losses.probabilities(targets, logits.shape[-1])
  log_p = jax.nn.log_softmax(logits)
  return -jnp.sum(p * (1 - jnp.exp(log_p)) ** gamma * log_p, axis=-1)
'''

CONFIG = '''
from fmnist_jax import defaults


def get_config():
  config = defaults.get_config()
  config.imports = ('my_extension',)  # registers tiny_net, invert and error_rate
  config.model = 'tiny_net'
  config.model_args.width = 12
  config.augment.invert = {invert}
  config.metrics = ('error_rate',)
  config.num_epochs, config.batch_size, config.progress_bar = 1, 64, 'off'
  config.data_dir = {data_dir!r}
  return config
'''


@pytest.fixture
def user_code(tmp_path):
  (tmp_path / 'my_extension.py').write_text(EXTENSION)
  for invert in (0.0, 1.0):
    (tmp_path / f'config_{invert:g}.py').write_text(textwrap.dedent(
        CONFIG.format(invert=invert, data_dir=str(tmp_path / 'unused'))))
  return tmp_path


def _main(folder, config_path, workdir) -> tuple[dict, str]:
  """results.json and the terminal's output of the command on the user's config."""
  out = subprocess.run([sys.executable, '-c', RUNNER, ROOT, str(folder), '--config',
                        str(config_path), '--workdir', str(workdir)], cwd=folder,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(workdir / 'results.json') as f:
    return json.load(f), out.stdout


@pytest.mark.slow  # a process of its own
def test_a_users_model_augmentation_and_metric_train_through_main(user_code):
  results, stdout = _main(user_code, user_code / 'config_1.py', user_code / 'run_inverted')
  # The model: the registered class at the config's width (784*12+12 + 12*10+10 parameters).
  assert results['model'] == 'tiny_net' and results['num_params'] == 784 * 12 + 12 + 12 * 10 + 10
  # The augmentation: traced into the train step with the config's value.
  assert 'TRACED [1.0' in stdout, stdout
  # The metric: on test (best and final weights), on validation each epoch, in results.json.
  assert results['test_error_rate'] == pytest.approx(1 - results['test_accuracy'], abs=1e-9)
  assert results['final_test_error_rate'] is not None
  assert 'validation_error_rate' in results['history'][0]
  assert results['validation_error_rate'] == pytest.approx(1 - results['validation_accuracy'])
  # Turning the augmentation off changes the training (it is not a no-op).
  plain, stdout = _main(user_code, user_code / 'config_0.py', user_code / 'run_plain')
  assert 'TRACED []' in stdout, stdout  # off: not traced at all
  assert plain['history'][0]['train_loss'] != results['history'][0]['train_loss']


def test_an_import_that_fails_is_named_before_anything_runs(tmp_path):
  config = default.get_config()
  config.imports = ('no_such_extension_module',)
  with pytest.raises(errors.ConfigError, match="config.imports names 'no_such_extension_module'"):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('field, value, message', [
    ('model_args', {'widht': 3}, "config.model_args=['widht'] is invalid; cnn has the fields"),
    ('metrics', ('f2',), "config.metrics=('f2',) is invalid; give a tuple of names from"),
    ('augment', {'blur': 1.0}, "config.augment=['blur'] is invalid; known keys are"),
])
def test_names_and_fields_are_checked_against_the_registries(field, value, message):
  config = default.get_config()
  if field == 'metrics':
    config.metrics = value
  else:
    config[field].update(value)
  with pytest.raises(errors.ConfigError) as e:
    config_check.validate_config(config)
  assert message in str(e.value)


STEP_CONFIG = '''
from fmnist_jax import defaults


def get_config():
  config = defaults.get_config()
  config.imports = {imports}
  config.model, config.model_args.hidden = 'mlp', (16,)
  config.num_epochs, config.batch_size, config.progress_bar = 3, 64, 'off'
  config.learning_rate = 0.01
  config.data_dir = {data_dir!r}
  {setting}
  return config
'''

STEP_RUNS = {
    'builtin_only': ((), ''),  # nothing of the user's imported
    'off': (('my_extension',), ''),  # registered, every one of them off
    'mixup': (('my_extension',), 'config.batch_transforms.my_mixup = 0.4'),
    'focal': (('my_extension',), "config.loss, config.loss_args.gamma = 'focal', 2.0"),
    'by_loss': (('my_extension',), "config.best_by = 'loss'"),
}


@pytest.mark.slow  # five processes of their own
def test_a_users_batch_transform_loss_and_selection_change_the_numbers_only_when_on(tmp_path):
  (tmp_path / 'my_extension.py').write_text(EXTENSION)
  results = {}
  for name, (imports, setting) in STEP_RUNS.items():
    (tmp_path / f'{name}.py').write_text(STEP_CONFIG.format(
        imports=imports, setting=setting, data_dir=str(tmp_path / 'unused')))
    results[name], _ = _main(tmp_path, tmp_path / f'{name}.py', tmp_path / name)
  numbers = lambda r: ([{k: v for k, v in h.items() if 'seconds' not in k} for h in r['history']],
                       r['best_epoch'], r['test_accuracy'], r['test_loss'])
  # Registered but off: exactly the numbers of a run that never imported them.
  assert numbers(results['off']) == numbers(results['builtin_only'])
  # On: the mixup and the focal loss change the training; trained on soft targets the mixup's
  # training accuracy is against each target's most probable class.
  for name in ('mixup', 'focal'):
    assert results[name]['history'][0]['train_loss'] != results['off']['history'][0]['train_loss']
    assert 0 <= results[name]['history'][0]['train_accuracy'] <= 1
  # Selected by validation loss: the best epoch is the lowest validation loss, recorded as such,
  # and the training itself is the same as by accuracy.
  by_loss, by_accuracy = results['by_loss'], results['off']
  assert by_loss['selection'] == {'metric': 'validation_loss', 'mode': 'min'}
  losses_ = [h['validation_loss'] for h in by_loss['history']]
  assert by_loss['best_epoch'] == 1 + losses_.index(min(losses_))
  assert numbers(by_loss)[0] == numbers(by_accuracy)[0]
  accuracies = [h['validation_accuracy'] for h in by_accuracy['history']]
  assert by_accuracy['best_epoch'] == 1 + accuracies.index(max(accuracies))
  assert by_loss['best_epoch'] != by_accuracy['best_epoch'], (losses_, accuracies)
  assert by_loss['test_loss'] != by_accuracy['test_loss']


def test_a_models_data_dependent_initialisation_sees_the_training_split_once(tmp_path, monkeypatch):
  """A model's `init_from_data` gets the training split's images at a fresh start (not on a
  resume) and its variables are where training starts: here the first layer's bias set from the
  images' mean moves the numbers, while the same class without the hook does not."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fmnist_jax import input_pipeline, models  # pylint: disable=g-import-not-at-top
  from tests.test_train import _synthetic_data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  monkeypatch.setattr(models, 'MODELS', dict(models.MODELS))
  monkeypatch.setattr(models, 'CONFIG_FIELDS', dict(models.CONFIG_FIELDS))
  seen = []

  class Plain(nn.Module):
    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
      x = nn.relu(nn.Dense(self.width)(x.reshape((x.shape[0], -1))))
      return nn.Dense(10)(x)

  @models.register('data_init_net')
  class DataInit(Plain):  # pylint: disable=unused-variable
    def init_from_data(self, variables, images):
      seen.append(images.shape)
      params = {**variables['params']}
      params['Dense_0'] = {**params['Dense_0'], 'bias': jnp.full(
          (self.width,), float(input_pipeline.normalize(images).mean()) + 1.0)}
      return {**variables, 'params': params}

  models.register('plain_net')(Plain)
  config = default.get_config()
  config.update(num_epochs=1, batch_size=64, progress_bar='off', data_dir=str(tmp_path / 'no'))
  runs = {}
  for name in ('plain_net', 'data_init_net'):
    config.model = name
    runs[name] = train.train_and_evaluate(config, str(tmp_path / name))
  assert seen == [(512, 28, 28, 1)]  # once, with the training split (synthetic: 512 images)
  assert runs['data_init_net']['history'][0]['train_loss'] != (
      runs['plain_net']['history'][0]['train_loss'])
  config.num_epochs = 2  # resumed from its checkpoint: no second data-dependent initialisation
  train.train_and_evaluate(config, str(tmp_path / 'data_init_net'), allow_config_change=True)
  assert seen == [(512, 28, 28, 1)]
