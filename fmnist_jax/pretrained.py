"""Keras' ImageNet MobileNetV2 weights, read into `models.MobileNetV2` by layer name.

Keras reads the file (its legacy `.h5` application weights, a Keras 3 `.weights.h5`, or a saved
`.keras` model that contains a MobileNetV2), so every format Keras writes is read the way Keras
reads it; TensorFlow/Keras is imported only here, and only when a file is given.

'imagenet' means Keras' own file in Keras' cache. When it is missing and Keras' download host
answers within seconds, it is downloaded there (whole or not at all); otherwise (no internet, as on
our machines) the run stops with an error saying where to put the file, never falling back to
random weights. A run records which file it loaded (path and SHA-256) and whether the weights look
trained, and only then calls itself pretrained.
"""
from __future__ import annotations

import functools
import os
from typing import Any
import urllib.parse
import urllib.request

from absl import logging
import numpy as np

from fmnist_jax import errors
from fmnist_jax import input_pipeline

KERAS_FILE = 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5'
KERAS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/' + KERAS_FILE


WeightsUnavailableError = errors.WeightsUnavailableError
WeightsMismatchError = errors.WeightsMismatchError


def keras_cache_path() -> str:
  """Where `keras.applications.MobileNetV2(weights='imagenet')` keeps the file it downloads."""
  home = os.environ.get('KERAS_HOME', os.path.join('~', '.keras'))
  return os.path.expanduser(os.path.join(home, 'models', KERAS_FILE))


def resolve(weights: str) -> str | None:
  """The file for config.backbone.weights ('imagenet', 'random' or a path); None for 'random'."""
  if weights == 'random':
    return None
  path = keras_cache_path() if weights == 'imagenet' else os.path.expanduser(weights)
  why = ''
  if weights == 'imagenet' and not os.path.isfile(path):
    if input_pipeline.host_reachable(KERAS_URL):
      try:
        _download(KERAS_URL, path)
      except OSError as e:  # urllib's errors are OSErrors
        why = f' Downloading {KERAS_URL} failed: {e}.'
    else:
      host = urllib.parse.urlparse(KERAS_URL).hostname
      why = f' {host} did not answer, so it cannot be downloaded.'
  if not os.path.isfile(path):
    where = (f"Keras' cache {path}" if weights == 'imagenet' else path)
    raise WeightsUnavailableError(
        f'config.backbone.weights={weights!r}: no weight file at {where}.{why} On a machine with '
        f'internet fetch {KERAS_URL} (or run '
        "`keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False)` there and "
        f'copy ~/.keras/models/{KERAS_FILE}), then put it at {keras_cache_path()} or pass '
        '--config.backbone.weights=/path/to/the/file.h5. To train with a randomly initialised '
        '(not pretrained) backbone instead, pass --config.backbone.weights=random.')
  return path


def _download(url: str, path: str) -> None:
  """Into a temporary file renamed at the end, so a broken download never looks like the file."""
  logging.info('Downloading %s to %s.', url, path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.part-{os.getpid()}'
  try:
    urllib.request.urlretrieve(url, tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _find_backbone(model):
  """The (possibly nested) Keras model that holds MobileNetV2's 'Conv1' layer."""
  names = [layer.name for layer in model.layers]
  if 'Conv1' in names:
    return model
  for layer in model.layers:
    if hasattr(layer, 'layers'):
      found = _find_backbone(layer)
      if found is not None:
        return found
  return None


@functools.lru_cache(maxsize=2)
def keras_layer_weights(path: str) -> dict[str, tuple[np.ndarray, ...]]:
  """{Keras layer name: its weights in Keras' order} of the MobileNetV2 in `path`."""
  if not input_pipeline.have_tensorflow():
    os.environ.setdefault('KERAS_BACKEND', 'jax')  # Keras 3 reads the files without TensorFlow.
  import keras  # pylint: disable=g-import-not-at-top
  if path.endswith('.keras'):
    backbone = _find_backbone(keras.saving.load_model(path, compile=False))
    if backbone is None:
      raise WeightsMismatchError(f'{path} holds no MobileNetV2 (no layer named "Conv1").')
  else:
    backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                              weights=None)
    try:
      backbone.load_weights(path)
    except (ValueError, KeyError, OSError) as e:
      raise WeightsMismatchError(
          f'{path} is not a weight file of Keras\' MobileNetV2 (alpha 1.0): {e}') from e
  return {layer.name: tuple(np.asarray(w) for w in layer.get_weights())
          for layer in backbone.layers if layer.get_weights()}


def to_flax(layer_weights: dict[str, tuple[np.ndarray, ...]], params: dict[str, Any],
            batch_stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """`models.MobileNetV2`'s (params, batch_stats) filled from Keras' layer weights.

  Every Flax layer must find its Keras layer with the same shapes, and every Keras layer must be
  used; anything else is an error naming the layers.
  """
  params, batch_stats = dict(params), dict(batch_stats)
  missing = sorted(set(params) - set(layer_weights))
  unused = sorted(set(layer_weights) - set(params))
  if missing or unused:
    raise WeightsMismatchError(f'Keras MobileNetV2 weights do not match the Flax model: missing layers '
                     f'{missing[:5]}, unused Keras layers {unused[:5]}.')
  for name in params:
    w = layer_weights[name]
    if name in batch_stats:  # BatchNormalization: gamma, beta, moving mean, moving variance.
      new = {'scale': w[0], 'bias': w[1]}
      batch_stats[name] = {'mean': w[2], 'var': w[3]}
    elif name.endswith('_depthwise'):
      new = {'kernel': w[0].transpose(0, 1, 3, 2)}  # Keras (h, w, C, 1) -> Flax (h, w, 1, C)
    else:
      new = {'kernel': w[0]}
    for key, value in new.items():
      if value.shape != params[name][key].shape:
        raise WeightsMismatchError(f'Keras layer {name!r} {key} has shape {value.shape}, the Flax model '
                         f'expects {params[name][key].shape}.')
    params[name] = new
  return params, batch_stats


def looks_trained(layer_weights: dict[str, tuple[np.ndarray, ...]]) -> bool:
  """False when every BatchNorm still holds Keras' initial statistics (mean 0, variance 1)."""
  stats = [w for w in layer_weights.values() if len(w) == 4]
  return any(np.any(w[2] != 0) or np.any(w[3] != 1) for w in stats)


def describe(weights: str, path: str | None) -> dict[str, Any]:
  """What results.json says of the backbone: the file, its hash, and whether it is pretrained.

  `path`: resolve(weights), done once per run.
  """
  if path is None:
    return {'weights': weights, 'pretrained': False, 'file': None, 'sha256': None}
  return {'weights': weights, 'pretrained': looks_trained(keras_layer_weights(path)),
          'file': path, 'sha256': input_pipeline.sha256(path)}
