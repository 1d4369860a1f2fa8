"""MobileNetV2 transfer: Keras weights in the Flax model, the report's counts, freezing, the CLI."""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from configs.reports import keras_mobilenetv2_90_31_transfer as transfer_config
from fmnist_jax import build
from fmnist_jax import checkpoint
from fmnist_jax import input_pipeline
from fmnist_jax import models
from fmnist_jax import ops
from fmnist_jax import pretrained
from fmnist_jax import seeds
from fmnist_jax import train

pytestmark = pytest.mark.slow  # subprocesses, real data or Keras models: the full tier only


@pytest.mark.parametrize('size,stride', [(26, 1), (9, 1), (49, 2), (50, 2)])
def test_depthwise_conv_matches_xla_grouped_conv_and_its_gradients(size, stride):
  x = jax.random.normal(jax.random.key(0), (3, size, size, 5))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 5))
  ref = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (stride, stride), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=5)
  ours = lambda x, k: ops.depthwise_conv3x3(x, k[:, :, 0], stride)
  y_ref, vjp_ref = jax.vjp(ref, x, kernel)
  y, vjp = jax.vjp(ours, x, kernel)
  g = jax.random.normal(jax.random.key(2), y_ref.shape)
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  for ours_grad, ref_grad in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-5, atol=1e-3)


@pytest.fixture(scope='module')
def keras_model():
  """Keras' MobileNetV2 (no top, 96x96) with random weights and random BatchNorm statistics."""
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    weights = layer.get_weights()
    if len(weights) == 4:  # BatchNorm: gamma, beta, moving mean, moving variance.
      weights = [rng.uniform(0.5, 1.5, weights[0].shape), rng.normal(0, 0.1, weights[1].shape),
                 rng.normal(0, 0.1, weights[2].shape), rng.uniform(0.5, 1.5, weights[3].shape)]
    else:
      weights = [w + rng.normal(0, 0.05, w.shape) for w in weights]
    layer.set_weights([w.astype(np.float32) for w in weights])
  return model


def _save_like_keras_applications(model, path):
  """The layout of Keras' own weight files: a legacy HDF5 of layer names and their weights."""
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(path, 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope='module')
def keras_weight_file(keras_model, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('keras') / pretrained.KERAS_FILE)
  _save_like_keras_applications(keras_model, path)
  return path


def _report_transfer_model(backbone):
  """The report's whole Keras model around `backbone`, as its appendix builds it."""
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((96, 96, 1))
  x = keras.layers.Conv2D(3, (3, 3), padding='same', activation='relu')(inputs)
  backbone.trainable = False
  x = keras.layers.Flatten()(backbone(x))
  x = keras.layers.Dropout(0.5)(keras.layers.Dense(128, activation='relu')(x))
  return keras.Model(inputs, keras.layers.Dense(10, activation='softmax')(x))


@pytest.mark.parametrize('form', ['application_h5', 'report_model_keras'])
def test_keras_weights_give_the_keras_feature_maps(keras_model, keras_weight_file, form,
                                                   tmp_path):
  if form == 'application_h5':
    path = keras_weight_file
  else:  # A saved .keras of the report's transfer model, the backbone nested inside it.
    path = str(tmp_path / 'report_model.keras')
    _report_transfer_model(keras_model).save(path)
  flax_model = models.MobileNetV2()
  variables = flax_model.init(jax.random.key(0), jnp.zeros((1, 96, 96, 3)))
  params, stats = pretrained.to_flax(pretrained.keras_layer_weights(path), variables['params'],
                                     variables['batch_stats'])
  x = np.random.default_rng(1).uniform(0, 1, (4, 96, 96, 3)).astype(np.float32)
  ours = flax_model.apply({'params': params, 'batch_stats': stats}, x)
  theirs = keras_model(x, training=False).numpy()
  assert ours.shape == theirs.shape == (4, 3, 3, 1280)
  assert np.abs(theirs).max() > 0.5  # a feature map that could differ
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_a_weight_file_of_another_model_is_refused(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name='Conv1')])
  path = str(tmp_path / 'other.h5')
  _save_like_keras_applications(other, path)
  with pytest.raises(pretrained.WeightsMismatchError, match='other.h5'):
    pretrained.keras_layer_weights(path)
  variables = models.MobileNetV2().init(jax.random.key(0), jnp.zeros((1, 96, 96, 3)))
  with pytest.raises(pretrained.WeightsMismatchError, match='missing layers'):
    pretrained.to_flax({'Conv1': (np.zeros((3, 3, 3, 2)),)}, variables['params'],
                       variables['batch_stats'])


def test_transfer_config_has_the_reports_parameter_counts():
  config = transfer_config.get_config()
  config.backbone.weights = 'random'
  model = build.model(config)
  variables = models.init_variables(model, jax.random.key(0))
  assert models.count_params(variables) == 3_733_992  # params + BatchNorm statistics, as Keras
  assert models.count_trainable(model, variables['params']) == 1_476_008
  config.backbone.unfreeze_blocks = models.MOBILENETV2_UNITS
  unfrozen = build.model(config)
  assert models.count_trainable(unfrozen, variables['params']) == models.count_params(
      variables['params'])


def _slice(config, data_dir):
  config.data_dir = data_dir
  config.train_split = 'train[:320]'
  config.validation_split = 'train[59500:]'
  config.test_split = 'test[:500]'
  config.num_epochs = 1
  config.progress_bar = 'off'
  return config


def test_training_keeps_the_frozen_backbone_and_records_the_weight_file(
    keras_weight_file, data_dir, tmp_path):
  config = _slice(transfer_config.get_config(), data_dir)
  config.backbone.weights = keras_weight_file
  config.backbone.unfreeze_blocks = 1  # only the last 1x1 conv (Conv_1, Conv_1_bn) trains
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results['backbone'] == {
      'weights': keras_weight_file, 'pretrained': True, 'file': keras_weight_file,
      'sha256': input_pipeline.sha256(keras_weight_file)}
  assert results['num_trainable_params'] == 1_476_008 + 1280 * 320 + 2 * 1280
  model = build.model(config)
  mngr = checkpoint.manager(str(tmp_path), 3)
  item, _ = checkpoint.restore(mngr, mngr.latest_step(), build.checkpoint_item(config, model, 1))
  state = seeds.take(item['state'], 0)
  fresh = models.init_variables(model, jax.random.key(config.seed))
  loaded, loaded_stats = pretrained.to_flax(pretrained.keras_layer_weights(keras_weight_file),
                                            fresh['params']['backbone'],
                                            fresh['batch_stats']['backbone'])
  trained = state.params['backbone']
  for name in loaded:  # every frozen array is the file's, bit for bit; Conv_1 (unit 18) trained
    for key in loaded[name]:
      same = np.array_equal(trained[name][key], loaded[name][key])
      assert same == (models.mobilenetv2_unit(name) < 18), (name, key)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.batch_stats['backbone'],
                         loaded_stats)  # BatchNorm statistics frozen (inference mode)
  for name in ('adapter', 'Dense_0', 'Dense_1'):
    assert not np.array_equal(state.params[name]['kernel'], fresh['params'][name]['kernel'])


@pytest.fixture
def keras_host(keras_weight_file, monkeypatch):
  """A local HTTP server standing in for Keras' download host, serving the test weight file."""
  handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                              directory=os.path.dirname(keras_weight_file))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f'http://127.0.0.1:{server.server_address[1]}/'
  server.shutdown()


def test_missing_imagenet_file_is_downloaded_whole_or_not_at_all(keras_host, keras_weight_file,
                                                                 tmp_path, monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'keras_home'))
  models_dir = tmp_path / 'keras_home' / 'models'
  monkeypatch.setattr(pretrained, 'KERAS_URL', keras_host + 'no_such_file.h5')
  with pytest.raises(pretrained.WeightsUnavailableError, match='Downloading .* failed: HTTP'):
    pretrained.resolve('imagenet')
  assert not models_dir.exists() or not any(models_dir.iterdir())  # no partial file left
  monkeypatch.setattr(pretrained, 'KERAS_URL', keras_host + pretrained.KERAS_FILE)
  path = pretrained.resolve('imagenet')
  assert path == str(models_dir / pretrained.KERAS_FILE)
  assert os.listdir(models_dir) == [pretrained.KERAS_FILE]
  assert input_pipeline.sha256(path) == input_pipeline.sha256(keras_weight_file)


README_COMMAND = ['-m', 'fmnist_jax.main', '--config',
                  'configs/reports/keras_mobilenetv2_90_31_transfer.py']


def test_missing_imagenet_weights_stop_the_run_with_what_to_do(tmp_path):
  if input_pipeline.host_reachable(pretrained.KERAS_URL):
    pytest.skip("Keras' download host answers here, so the file would be downloaded.")
  env = dict(os.environ, KERAS_HOME=str(tmp_path / 'keras_home'))
  out = subprocess.run([sys.executable, *README_COMMAND, '--workdir', str(tmp_path / 'w')],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1, out.stderr[-2000:]
  assert "ERROR: config.backbone.weights='imagenet'" in out.stderr
  assert 'did not answer, so it cannot be downloaded' in out.stderr
  assert pretrained.KERAS_URL in out.stderr and '--config.backbone.weights=' in out.stderr
  assert 'Traceback' not in out.stderr
  assert not os.path.exists(tmp_path / 'w' / 'config.json')


def test_readme_short_run_with_a_random_backbone_is_not_called_pretrained(data_dir, tmp_path):
  overrides = ['--config.backbone.weights=random', '--config.num_epochs=1',
               '--config.train_split=train[:320]', '--config.validation_split=train[59500:]',
               '--config.test_split=test[:500]', '--config.progress_bar=off',
               f'--config.data_dir={data_dir}']
  out = subprocess.run([sys.executable, *README_COMMAND, *overrides, '--workdir',
                        str(tmp_path / 'w')], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert '3,733,992 parameters (1,476,008 trainable)' in out.stdout
  assert 'mobilenetv2_transfer (random backbone, NOT pretrained): test accuracy' in out.stdout
  results = json.load(open(tmp_path / 'w' / 'results.json'))
  assert results['backbone']['pretrained'] is False and results['backbone']['file'] is None
  assert 0.0 <= results['test_accuracy'] <= 1.0
