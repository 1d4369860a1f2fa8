"""On-device augmentation, traced into the jitted train step.

One random affine warp per image (rotation, shear, zoom and shift composed into a single matrix,
sampled with bilinear interpolation by `jax.scipy.ndimage.map_coordinates`, zeros outside, like
Keras' ImageDataGenerator with fill_mode='constant') and an optional horizontal flip. Whatever is
disabled in the config is not traced at all, so a disabled augmentation costs nothing and returns
the images unchanged.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

KEYS = ('flip', 'shift', 'rotation', 'zoom', 'shear')


def is_enabled(cfg: Any) -> bool:
  return bool(cfg.flip) or any(float(cfg[k]) > 0 for k in KEYS[1:])


def _affine_matrix(key: jax.Array, cfg: Any, size: int) -> tuple[jax.Array, jax.Array]:
  """(matrix, shift) mapping an output pixel's offset from the centre to the input it samples."""
  k_rot, k_shear, k_zoom, k_shift = jax.random.split(key, 4)
  uniform = lambda k, bound, shape=(): jax.random.uniform(k, shape, minval=-bound, maxval=bound)
  theta = jnp.deg2rad(uniform(k_rot, float(cfg.rotation)))
  shear = jnp.deg2rad(uniform(k_shear, float(cfg.shear)))
  zoom = 1.0 + uniform(k_zoom, float(cfg.zoom), (2,))  # Keras: independent row and column zoom.
  shift = uniform(k_shift, float(cfg.shift) * size, (2,))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  rotation = jnp.array([[cos, -sin], [sin, cos]])
  shearing = jnp.array([[1.0, -jnp.sin(shear)], [0.0, jnp.cos(shear)]])
  matrix = rotation @ shearing @ jnp.diag(zoom)
  return matrix, shift


def _warp(image: jax.Array, key: jax.Array, cfg: Any) -> jax.Array:
  size = image.shape[0]
  matrix, shift = _affine_matrix(key, cfg, size)
  centre = (size - 1) / 2.0
  rows, cols = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32),
                            jnp.arange(size, dtype=jnp.float32), indexing='ij')
  offsets = jnp.stack([rows.ravel() - centre, cols.ravel() - centre])
  coords = matrix @ offsets + centre + shift[:, None]
  out = ndimage.map_coordinates(image[..., 0], [coords[0], coords[1]], order=1, mode='constant',
                                cval=0.0)
  return out.reshape(size, size, 1)


def augment(images: jax.Array, key: jax.Array, cfg: Any) -> jax.Array:
  """Augments a float batch (N, H, W, 1) with values in [0, 1]; returns the same shape and range."""
  if not is_enabled(cfg):
    return images
  k_flip, k_warp = jax.random.split(key)
  if any(float(cfg[k]) > 0 for k in KEYS[1:]):
    keys = jax.random.split(k_warp, images.shape[0])
    images = jax.vmap(lambda im, k: _warp(im, k, cfg))(images, keys)
  if cfg.flip:
    flip = jax.random.bernoulli(k_flip, 0.5, (images.shape[0], 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1, :], images)
  return jnp.clip(images, 0.0, 1.0)
