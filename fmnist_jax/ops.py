"""Building blocks the architectures share: two custom-gradient kernels and the classifier head.

The kernels compute what `nn.max_pool` and a grouped `nn.Conv` compute, with the same values and
gradients (tested against them), but much faster on a CPU, where XLA's own lowering of their
gradients dominated the train step (figures in docs/history.md).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_CLASSES = 10


def classifier_head(x, hidden: tuple[int, ...], dropout_rate: float, train: bool, dtype):
  """Flatten -> (Dense + ReLU) per width in `hidden` -> Dropout -> Dense 10, the reports' head.

  Called inside a module's compact method, so its layers are that module's own (Dense_0, ...).
  """
  x = x.reshape((x.shape[0], -1))
  for width in hidden:
    x = nn.relu(nn.Dense(width, dtype=dtype)(x))
  x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  return nn.Dense(NUM_CLASSES, dtype=dtype)(x)


def _quarters(x):
  """The four 2x2-window positions, in XLA's row-major window order; odd edges dropped (VALID)."""
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w]
  return [x[:, i::2, j::2] for i in (0, 1) for j in (0, 1)]


@jax.custom_vjp
def max_pool_2x2(x):
  """`nn.max_pool(x, (2, 2), strides=(2, 2))` with the same values and gradients, much faster on CPU.

  XLA lowers max-pool's gradient to select_and_scatter, which took 36 of the 70 ms of a CNN train
  step at batch 128 on a 2-core CPU (profiled). Here the forward pass keeps which of the four
  window positions held the maximum (ties: the first in window order, as select_and_scatter), and
  the gradient goes there. The backward pass never compares values again: XLA may recompute x for
  it in another fusion, with another rounding, and equality tests against the forward's maxima
  then picked other positions in tied windows (seen after BatchNorm: 2e-3 off flax after one step).
  """
  a, b, c, d = _quarters(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_fwd(x):
  a, b, c, d = _quarters(x)
  ab, cd = a >= b, c >= d
  top, bottom = jnp.where(ab, a, b), jnp.where(cd, c, d)
  upper = top >= bottom
  where = jnp.where(upper, jnp.where(ab, 0, 1), jnp.where(cd, 2, 3)).astype(jnp.int8)
  return jnp.where(upper, top, bottom), (where, x.shape)


def _max_pool_bwd(res, g):
  where, shape = res
  parts = [jnp.where(where == k, g, jnp.zeros_like(g)) for k in range(4)]
  n, h, w, c = g.shape
  gx = jnp.stack(parts).reshape(2, 2, n, h, w, c).transpose(2, 3, 0, 4, 1, 5)
  gx = gx.reshape(n, 2 * h, 2 * w, c)
  return (jnp.pad(gx, ((0, 0), (0, shape[1] - 2 * h), (0, shape[2] - 2 * w), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def _tap(x, i: int, j: int, s: int):
  """x[:, s*a + i, s*b + j] for every output position (a, b) of a 3x3 'VALID' window, stride s."""
  h, w = (x.shape[1] - 3) // s + 1, (x.shape[2] - 3) // s + 1
  return x[:, i:i + s * (h - 1) + 1:s, j:j + s * (w - 1) + 1:s]


def _taps(x, k, s: int):
  """sum_ij x[s*a + i, s*b + j] * k[i, j]: a 3x3 depthwise 'VALID' convolution with stride s."""
  return sum(_tap(x, i, j, s) * k[i, j] for i in range(3) for j in range(3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv3x3(x, k, s: int):
  """3x3 depthwise convolution of an already padded x (N, H, W, C) with k (3, 3, C), stride s.

  Nine multiply-adds instead of XLA's grouped convolution, which is slow for depthwise layers on
  a CPU; the input gradient is the same nine taps over the (stride-dilated, padded) output
  gradient with the kernel flipped, since XLA's own gradient of the strided slices is slower
  still.
  """
  return _taps(x, k, s)


def _depthwise_fwd(x, k, s):
  return _taps(x, k, s), (x, k)


def _depthwise_bwd(s, res, g):
  x, k = res
  (_, hx, wx, _), (_, h, w, _) = x.shape, g.shape
  zero = jnp.zeros((), g.dtype)
  g_dilated = jax.lax.pad(g, zero, [(0, 0, 0), (2, hx - s * (h - 1) - 1, s - 1),
                                    (2, wx - s * (w - 1) - 1, s - 1), (0, 0, 0)])
  gx = _taps(g_dilated, k[::-1, ::-1], 1)
  gk = jnp.stack([jnp.stack([(_tap(x, i, j, s) * g).sum((0, 1, 2)) for j in range(3)])
                  for i in range(3)])
  return gx, gk.astype(k.dtype)


depthwise_conv3x3.defvjp(_depthwise_fwd, _depthwise_bwd)
