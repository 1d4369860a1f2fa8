"""The same architectures in PyTorch and Keras, used only to compare training speed.

`mlp`, `cnn`, `bn_cnn` and the three costliest report rows (`vgg_cnn`, `vgg_bn_cnn`, `torch_cnn`);
the tests check that each has our model's parameter count.

`pip install -e .[compare]` installs PyTorch (Keras 3 comes with TensorFlow). Each function trains
`steps` Adam steps at `batch_size` on in-memory data the way the framework is usually used (PyTorch:
eager loop; Keras: `model.fit`), after `warmup` untimed steps, and returns images per second.
"""
from __future__ import annotations

import time

import numpy as np

from fmnist_jax import input_pipeline


def _data(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = input_pipeline.normalize(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
  return x, rng.integers(0, 10, (n,)).astype(np.int64)


def torch_model(model_name: str):
  """The architecture as a torch.nn.Sequential (NCHW inputs)."""
  from torch import nn  # pylint: disable=g-import-not-at-top
  conv = lambda i, o, pad=0: [nn.Conv2d(i, o, 3, padding=pad), nn.ReLU()]
  bn = lambda c: [nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)]
  pool = [nn.MaxPool2d(2)]

  def vgg(batch_norm):
    norm = bn if batch_norm else (lambda c: [])
    return (conv(1, 64) + norm(64) + conv(64, 64) + norm(64) + pool + [nn.Dropout(0.25)]
            + conv(64, 128) + norm(128) + conv(128, 128) + norm(128) + pool + [nn.Dropout(0.25)]
            + [nn.Flatten(), nn.Linear(2048, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
               nn.Dropout(0.5), nn.Linear(256, 10)])

  layers = {
      'mlp': [nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128),
              nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)],
      'cnn': conv(1, 32) + pool + conv(32, 64) + pool + [
          nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)],
      'bn_cnn': conv(1, 32) + bn(32) + pool + conv(32, 64) + bn(64) + pool + conv(64, 128) + bn(
          128) + [nn.Flatten(), nn.Linear(1152, 128), nn.ReLU(), nn.Dropout(0.5),
                  nn.Linear(128, 10)],
      'vgg_cnn': vgg(False),
      'vgg_bn_cnn': vgg(True),
      'torch_cnn': conv(1, 32, 1) + conv(32, 64, 1) + pool + [
          nn.Flatten(), nn.Linear(64 * 14 * 14, 128), nn.ReLU(), nn.Dropout(0.25),
          nn.Linear(128, 10)],
  }[model_name]
  return nn.Sequential(*layers)


def best_rate(run, items: int, repeats: int) -> float:
  """items/s of the fastest of `repeats` timed calls of `run` (as timeit: the others were slowed
  by something else; on shared machines single runs moved by 20 %)."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return items / min(times)


def torch_images_per_second(model_name: str, batch_size: int, steps: int, warmup: int,
                            repeats: int = 1) -> float:
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_model(model_name).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x, y = _data(batch_size * 8)
  x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW, PyTorch's native layout.
  y = torch.from_numpy(y)
  loss_fn = nn.CrossEntropyLoss()

  def run(n):
    for i in range(n):
      idx = torch.randint(0, len(y), (batch_size,))
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(x[idx]), y[idx])
      loss.backward()
      opt.step()
    return float(loss)

  run(warmup)
  return best_rate(lambda: run(steps), steps * batch_size, repeats)


def keras_model(model_name: str):
  """The architecture as a keras.Sequential (NHWC inputs)."""
  import keras  # pylint: disable=g-import-not-at-top
  from keras import layers  # pylint: disable=g-import-not-at-top
  conv = lambda c, pad='valid': [layers.Conv2D(c, 3, padding=pad, activation='relu')]
  bn = lambda: [layers.BatchNormalization()]  # Keras defaults: momentum 0.99, epsilon 1e-3.
  pool = lambda: [layers.MaxPooling2D(2)]
  head = lambda drop: [layers.Flatten(), layers.Dense(128, activation='relu'),
                       layers.Dropout(drop), layers.Dense(10)]
  body = {
      'mlp': [layers.Flatten(), layers.Dense(256, activation='relu'), layers.Dropout(0.2),
              layers.Dense(128, activation='relu'), layers.Dropout(0.2), layers.Dense(10)],
      'cnn': conv(32) + pool() + conv(64) + pool() + head(0.5),
      'bn_cnn': conv(32) + bn() + pool() + conv(64) + bn() + pool() + conv(128) + bn() + head(0.5),
      'vgg_cnn': _keras_vgg(conv, bn, pool, layers, batch_norm=False),
      'vgg_bn_cnn': _keras_vgg(conv, bn, pool, layers, batch_norm=True),
      'torch_cnn': conv(32, 'same') + conv(64, 'same') + pool() + head(0.25),
  }[model_name]
  return keras.Sequential([keras.Input((28, 28, 1))] + body)


def _keras_vgg(conv, bn, pool, layers, batch_norm: bool):
  norm = bn if batch_norm else (lambda: [])
  block = lambda c: conv(c) + norm() + conv(c) + norm() + pool() + [layers.Dropout(0.25)]
  return block(64) + block(128) + [
      layers.Flatten(), layers.Dense(256, activation='relu'), layers.Dense(256, activation='relu'),
      layers.Dropout(0.5), layers.Dense(10)]


def keras_images_per_second(model_name: str, batch_size: int, steps: int, warmup: int,
                            repeats: int = 1) -> float:
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = keras_model(model_name)
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = _data(batch_size * max(steps, warmup))
  model.fit(x[:batch_size * warmup], y[:batch_size * warmup], batch_size=batch_size, epochs=1,
            verbose=0)
  return best_rate(lambda: model.fit(x[:batch_size * steps], y[:batch_size * steps],
                                     batch_size=batch_size, epochs=1, verbose=0),
                   steps * batch_size, repeats)


FRAMEWORKS = {'pytorch': torch_images_per_second, 'keras': keras_images_per_second}
# The architectures both frameworks build.
MODELS = ('mlp', 'cnn', 'bn_cnn', 'vgg_cnn', 'vgg_bn_cnn', 'torch_cnn')
