"""A/B of the cnn train step's layer order on this machine: images/s of a plain jitted step.

    python experiments/cnn_step_variants.py [batch] [variant,variant,...]

base: conv -> bias -> ReLU -> max-pool (the usual order); poolfirst: conv -> max-pool -> bias ->
ReLU (models.ConvReLUPool: the same values); im2col: the first convolution as nine shifted slices
and a matmul; both: poolfirst and im2col; slicepool: poolfirst with a free stand-in for max-pool
(a strided slice: how much pooling still costs); nodrop: poolfirst without dropout. Adam, batch
128 by default, the best of 3 runs of 100 steps. Figures in docs/speed.md.
"""
import sys
import time

import cnn_kernel_floor  # pylint: disable=g-bad-import-order (imports common: sys.path)

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmnist_jax import input_pipeline
from fmnist_jax import ops

B = int(sys.argv[1]) if len(sys.argv) > 1 else 128
which = sys.argv[2].split(',') if len(sys.argv) > 2 else ['base', 'poolfirst', 'im2col', 'both']


class CNNv(nn.Module):
  poolfirst: bool = False
  im2col: bool = False
  pool: str = 'custom'
  drop: float = 0.5
  @nn.compact
  def __call__(self, x, train=False):
    for li, f in enumerate((32, 64)):
      cin = x.shape[-1]
      k = self.param(f'k{li}', nn.initializers.lecun_normal(), (3, 3, cin, f))
      b = self.param(f'b{li}', nn.initializers.zeros, (f,))
      conv = cnn_kernel_floor.conv_as_matmul if self.im2col and li == 0 else cnn_kernel_floor.conv
      y = conv(x, k)
      pool = ops.max_pool_2x2 if self.pool == 'custom' else (lambda t: t[:, :t.shape[1]//2*2:2, :t.shape[2]//2*2:2])
      if self.poolfirst:
        x = nn.relu(pool(y) + b)
      else:
        x = ops.max_pool_2x2(nn.relu(y + b))
    return ops.classifier_head(x, (128,), self.drop, train, jnp.float32)

def make(v):
  m = CNNv(poolfirst=v in ('poolfirst', 'both', 'slicepool', 'nodrop'), im2col=v in ('im2col', 'both'),
           pool='slice' if v == 'slicepool' else 'custom', drop=0.0 if v == 'nodrop' else 0.5)
  params = m.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  tx = optax.adam(1e-3)
  opt = tx.init(params)
  def step(params, opt, images, labels, perm, i, rng):
    idx = jax.lax.dynamic_slice_in_dim(perm, i * B, B)
    x = (images[idx].astype(jnp.float32) / 255. - input_pipeline.MEAN) / input_pipeline.STD
    y = labels[idx]
    r = jax.random.fold_in(rng, i)
    def loss_fn(p):
      logits = m.apply({'params': p}, x, train=True, rngs={'dropout': r})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    l, g = jax.value_and_grad(loss_fn)(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt, l
  return jax.jit(step, donate_argnums=(0, 1)), params, opt

n = B * 32
rs = np.random.default_rng(0)
images = jnp.asarray(rs.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
labels = jnp.asarray(rs.integers(0, 10, (n,)).astype(np.int32))
perm = jnp.arange(n, dtype=jnp.int32)
key = jax.random.key(0)
for v in which:
  step, p, o = make(v)
  for i in range(10):
    p, o, l = step(p, o, images, labels, perm, np.int32(i % 32), key)
  jax.block_until_ready(p)
  best = 0
  for rep in range(3):
    t0 = time.perf_counter()
    for i in range(100):
      p, o, l = step(p, o, images, labels, perm, np.int32(i % 32), key)
    jax.block_until_ready(p)
    best = max(best, 100 * B / (time.perf_counter() - t0))
  print(f'{v:10s} batch {B}: {best:,.0f} images/s', flush=True)
