"""The three architectures of the reports, as flax.linen modules.

Every model maps uint8-free, already normalised images of shape (N, 28, 28, 1) to logits (N, 10).
Parameters and BatchNorm statistics are explicit pytrees (`params`, `batch_stats`); `train=True`
turns on dropout (needs a 'dropout' rng) and BatchNorm statistics updates (mutable 'batch_stats').
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_CLASSES = 10


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
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
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
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


MODELS: dict[str, Callable[..., nn.Module]] = {'mlp': MLP, 'cnn': CNN, 'bn_cnn': BNCNN}


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
