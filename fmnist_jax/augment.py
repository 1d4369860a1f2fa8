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

from fmnist_jax import streams

KEYS = ('flip', 'shift', 'rotation', 'zoom', 'shear', 'crop', 'erase')
_WARP = ('shift', 'rotation', 'zoom', 'shear')
# Random erasing (Zhong et al. 2020): the erased area's fraction of the image and aspect ratio.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)


def is_enabled(cfg: Any) -> bool:
  return bool(cfg.flip) or any(float(cfg.get(k, 0)) > 0 for k in KEYS[1:])


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
  keys = streams.augment_keys(key)  # one each: turning one on leaves the others' streams as they were
  if any(float(cfg[k]) > 0 for k in _WARP):
    image_keys = jax.random.split(keys['warp'], images.shape[0])
    images = jax.vmap(lambda im, k: _warp(im, k, cfg))(images, image_keys)
  if cfg.flip:
    flip = jax.random.bernoulli(keys['flip'], 0.5, (images.shape[0], 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1, :], images)
  images = jnp.clip(images, 0.0, 1.0)
  if int(cfg.get('crop', 0)) > 0:
    images = random_crop(images, keys['crop'], int(cfg.crop))
  if float(cfg.get('erase', 0)) > 0:
    images = random_erase(images, keys['erase'], float(cfg.erase))
  return images


def random_crop(images: jax.Array, key: jax.Array, pad: int) -> jax.Array:
  """Pads each image with `pad` zero pixels on every side and crops a random window of its size."""
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  corners = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
  return jax.vmap(lambda im, at: jax.lax.dynamic_slice(im, (at[0], at[1], 0), (h, w, c)))(
      padded, corners)


def random_erase(images: jax.Array, key: jax.Array, probability: float) -> jax.Array:
  """With `probability` per image, fills one random rectangle with uniform noise (Zhong et al.).

  The rectangle covers 2 to 40 % of the image with an aspect ratio from 0.3 to 3.3, sampled
  log-uniformly, and lies inside the image.
  """
  n, h, w, c = images.shape
  k_on, k_area, k_aspect, k_row, k_col, k_noise = jax.random.split(key, 6)
  on = jax.random.bernoulli(k_on, probability, (n,))
  area = jax.random.uniform(k_area, (n,), minval=ERASE_AREA[0], maxval=ERASE_AREA[1]) * h * w
  aspect = jnp.exp(jax.random.uniform(k_aspect, (n,), minval=jnp.log(ERASE_ASPECT[0]),
                                      maxval=jnp.log(ERASE_ASPECT[1])))
  eh = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, h).astype(jnp.int32)
  ew = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, w).astype(jnp.int32)
  top = (jax.random.uniform(k_row, (n,)) * (h - eh + 1)).astype(jnp.int32)
  left = (jax.random.uniform(k_col, (n,)) * (w - ew + 1)).astype(jnp.int32)
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
            & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
  mask = (inside & on[:, None, None])[..., None]
  return jnp.where(mask, jax.random.uniform(k_noise, images.shape, images.dtype), images)
