"""The architectures of the reports, as flax.linen modules.

Every model maps uint8-free, already normalised images of shape (N, 28, 28, 1) to logits (N, 10).
Parameters and BatchNorm statistics are explicit pytrees (`params`, `batch_stats`); `train=True`
turns on dropout (needs a 'dropout' rng) and BatchNorm statistics updates (mutable 'batch_stats').
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_CLASSES = 10


def _quarters(x):
  """The four 2x2-window positions, in XLA's row-major window order; odd edges dropped (VALID)."""
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w]
  return [x[:, i::2, j::2] for i in (0, 1) for j in (0, 1)]


@jax.custom_vjp
def max_pool_2x2(x):
  """`nn.max_pool(x, (2, 2), strides=(2, 2))` with the same values and gradients, much faster on CPU.

  XLA lowers max-pool's gradient to select_and_scatter, which took 36 of the 70 ms of a CNN train
  step at batch 128 on a 2-core CPU (profiled). Here the gradient is four masked selects; ties go
  to the first maximum in window order, exactly as select_and_scatter does (tested).
  """
  a, b, c, d = _quarters(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_fwd(x):
  y = max_pool_2x2(x)
  return y, (x, y)


def _max_pool_bwd(res, g):
  x, y = res
  taken = jnp.zeros(y.shape, bool)
  parts = []
  for q in _quarters(x):
    first = (q == y) & ~taken
    taken = taken | first
    parts.append(jnp.where(first, g, jnp.zeros_like(g)))
  n, h, w, c = y.shape
  gx = jnp.stack(parts).reshape(2, 2, n, h, w, c).transpose(2, 3, 0, 4, 1, 5)
  gx = gx.reshape(n, 2 * h, 2 * w, c)
  return (jnp.pad(gx, ((0, 0), (0, x.shape[1] - 2 * h), (0, x.shape[2] - 2 * w), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class MLP(nn.Module):
  """784 -> 256 -> 128 -> 10 with ReLU and dropout (the PyTorch ANN report)."""
  hidden: tuple[int, ...] = (256, 128)
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.Dense(width, dtype=self.dtype)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


class CNN(nn.Module):
  """Conv32-pool-Conv64-pool-Dense128-Dropout-Dense10, 3x3 'VALID' convs as in Keras' default.

  The basic CNN of the Keras 89.29 % report.
  """
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for features in (32, 64):
      x = nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype)(x)
      x = nn.relu(x)
      x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


class BNCNN(nn.Module):
  """The enhanced BN-CNN of the Keras 89.29 % report (242,442 parameters with statistics).

  Conv32-BN-pool-Conv64-BN-pool-Conv128-BN-Dense128-Dropout-Dense10; Keras puts BatchNorm after
  the ReLU (`Conv2D(activation='relu')` then `BatchNormalization()`), and so do we. Momentum 0.99
  and epsilon 1e-3 are Keras' defaults.
  """
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                                dtype=self.dtype)
    for i, features in enumerate((32, 64, 128)):
      x = nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype)(x)
      x = norm()(nn.relu(x))
      if i < 2:
        x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


class SmallCNN(nn.Module):
  """Conv32-pool-Conv64-pool-Conv64-Dense64-Dense10, 3x3 'VALID' convs, no dropout.

  The CNN of the Keras MobileNetV2-transfer report (90.21 %): 93,322 parameters, as its summary.
  """
  dropout_rate: float = 0.0  # the report has none; kept for a uniform config.dropout_rate.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, features in enumerate((32, 64, 64)):
      x = nn.relu(nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype)(x))
      if i < 2:
        x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(64, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


class VGGCNN(nn.Module):
  """(Conv64-Conv64)-pool-drop-(Conv128-Conv128)-pool-drop-Dense256-Dense256-Dropout-Dense10.

  The baseline (88.5 %) and, with `batch_norm`, the enhanced model (92.74 %) of the Keras
  augmented-BN-CNN report; 3x3 'VALID' convs as its layer table's output shapes show (26, 24, 12,
  10, 8, 4). Its text names two Dense-256 layers, its table one; we follow the text.
  """
  batch_norm: bool = False
  dropout_rate: float = 0.5
  conv_dropout_rate: float = 0.25
  hidden: tuple[int, ...] = (256, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for features in (64, 128):
      for _ in range(2):
        x = nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype)(x)
        x = nn.relu(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                           dtype=self.dtype)(x)
      x = max_pool_2x2(x)
      x = nn.Dropout(self.conv_dropout_rate, deterministic=not train)(x)
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


class TorchCNN(nn.Module):
  """Conv32-Conv64 (3x3, padding 1)-pool-Dense128-Dropout0.25-Dense10: the PyTorch ANN-vs-CNN report.

  The report gives the flattened size as 64x14x14, so one 2x2 pooling after 'SAME' convs
  (1,625,866 parameters); it also mentions two pooling layers, which would give 64x7x7.
  """
  dropout_rate: float = 0.25
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for features in (32, 64):
      x = nn.relu(nn.Conv(features, (3, 3), padding='SAME', dtype=self.dtype)(x))
    x = max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    'mlp': MLP, 'cnn': CNN, 'bn_cnn': BNCNN, 'small_cnn': SmallCNN, 'vgg_cnn': VGGCNN,
    'vgg_bn_cnn': functools.partial(VGGCNN, batch_norm=True), 'torch_cnn': TorchCNN}


def create_model(name: str, **kwargs) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f'config.model={name!r} is unknown; choose one of {sorted(MODELS)}.')
  return MODELS[name](**kwargs)


def init_variables(model: nn.Module, rng: jax.Array) -> dict:
  """Returns {'params': ..., 'batch_stats': ...} ('batch_stats' only for models with BatchNorm)."""
  return dict(model.init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32), train=False))


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


def summary(model: nn.Module) -> str:
  """Layer-by-layer table with output shapes and parameter counts, like Keras' model.summary()."""
  return model.tabulate(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32), train=False,
                        depth=1, compute_flops=False, compute_vjp_flops=False,
                        console_kwargs={'width': 120, 'force_terminal': False})
