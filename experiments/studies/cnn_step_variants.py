"""A/B of the cnn train step's layer order on this machine: images/s of a plain jitted step.

    python -m experiments.studies.cnn_step_variants [batch] [variant,variant,...]

base: conv -> bias -> ReLU -> max-pool (the usual order); poolfirst: conv -> max-pool -> bias ->
ReLU (models.ConvReLUPool: the same values); im2col: the first convolution as nine shifted slices
and a matmul; both: poolfirst and im2col; slicepool: poolfirst with a free stand-in for max-pool
(a strided slice: how much pooling still costs); nodrop: poolfirst without dropout. Adam, batch
128 by default, the best of 3 runs of 100 steps on synthetic images. Figures in docs/speed.md.
"""
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.studies import cnn_kernel_floor
from fmnist_jax import input_pipeline
from fmnist_jax import ops

VARIANTS = ('base', 'poolfirst', 'im2col', 'both', 'slicepool', 'nodrop')


def _slice_pool(t):
  """A free stand-in for a 2x2 max-pool: every other row and column."""
  return t[:, :t.shape[1] // 2 * 2:2, :t.shape[2] // 2 * 2:2]


class CNNVariant(nn.Module):
  """configs/cnn.py's model with its layer order and first convolution as chosen."""
  poolfirst: bool = False
  im2col: bool = False
  pool: str = 'custom'
  drop: float = 0.5

  @nn.compact
  def __call__(self, x, train=False):
    for i, features in enumerate((32, 64)):
      k = self.param(f'k{i}', nn.initializers.lecun_normal(), (3, 3, x.shape[-1], features))
      b = self.param(f'b{i}', nn.initializers.zeros, (features,))
      conv = cnn_kernel_floor.conv_as_matmul if self.im2col and i == 0 else cnn_kernel_floor.conv
      y = conv(x, k)
      pool = ops.max_pool_2x2 if self.pool == 'custom' else _slice_pool
      if self.poolfirst:
        x = nn.relu(pool(y) + b)
      else:
        x = ops.max_pool_2x2(nn.relu(y + b))
    return ops.classifier_head(x, (128,), self.drop, train, jnp.float32)


def make(variant: str, batch: int):
  """The jitted train step of `variant`, its parameters and Adam's state."""
  model = CNNVariant(poolfirst=variant in ('poolfirst', 'both', 'slicepool', 'nodrop'),
                     im2col=variant in ('im2col', 'both'),
                     pool='slice' if variant == 'slicepool' else 'custom',
                     drop=0.0 if variant == 'nodrop' else 0.5)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  tx = optax.adam(1e-3)

  def step(params, opt, images, labels, perm, i, rng):
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
    x = (images[idx].astype(jnp.float32) / 255. - input_pipeline.MEAN) / input_pipeline.STD

    def loss_fn(p):
      logits = model.apply({'params': p}, x, train=True,
                           rngs={'dropout': jax.random.fold_in(rng, i)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  return jax.jit(step, donate_argnums=(0, 1)), params, tx.init(params)


def images_per_second(variant: str, batch: int) -> float:
  """The best of 3 timings of 100 steps, after 10 steps of warm-up (compilation included)."""
  n = batch * 32
  rs = np.random.default_rng(0)
  images = jnp.asarray(rs.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rs.integers(0, 10, (n,)).astype(np.int32))
  perm = jnp.arange(n, dtype=jnp.int32)
  key = jax.random.key(0)
  step, params, opt = make(variant, batch)
  for i in range(10):
    params, opt, _ = step(params, opt, images, labels, perm, np.int32(i % 32), key)
  jax.block_until_ready(params)
  best = 0.0
  for _ in range(3):
    t0 = time.perf_counter()
    for i in range(100):
      params, opt, _ = step(params, opt, images, labels, perm, np.int32(i % 32), key)
    jax.block_until_ready(params)
    best = max(best, 100 * batch / (time.perf_counter() - t0))
  return best


def main(argv):
  batch = int(argv[1]) if len(argv) > 1 else 128
  which = argv[2].split(',') if len(argv) > 2 else ['base', 'poolfirst', 'im2col', 'both']
  if unknown := [v for v in which if v not in VARIANTS]:
    raise SystemExit(f'ERROR: unknown variant(s) {unknown}; choose from {", ".join(VARIANTS)}.')
  for variant in which:
    print(f'{variant:10s} batch {batch}: {images_per_second(variant, batch):,.0f} images/s',
          flush=True)


if __name__ == '__main__':
  main(sys.argv)
