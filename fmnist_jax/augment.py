"""On-device augmentation, traced into the jitted train step, found by name in one registry.

Each augmentation is registered with the `config.augment` fields it reads and their defaults (off),
a check of their values (which sees all of them together), and a function of (images, key,
fields). `augment` applies the enabled ones in registration order, each with its own random stream
keyed by its name (`streams.named_keys`), so turning one on, or registering one anywhere, leaves
the others' streams as they were. Whatever is disabled is not traced at all: a disabled augmentation
costs nothing and returns the images unchanged. Adding one is one `register` call (see
docs/extending.md); `defaults.get_config()` and `config_check.validate_config` read this registry.

Built in: one random affine warp per image (rotation, shear, zoom and shift composed into a single
matrix, sampled with bilinear interpolation by `jax.scipy.ndimage.map_coordinates`, zeros outside,
like Keras' ImageDataGenerator with fill_mode='constant'), a horizontal flip, a padded random crop
and random erasing.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from fmnist_jax import streams

# Random erasing (Zhong et al. 2020): the erased area's fraction of the image and aspect ratio.
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """A registered augmentation: its stream name, its config.augment fields -> (default, help),
  the function, and a check of all its fields' values that returns (field, what is wrong) or
  None."""
  name: str
  fields: dict[str, tuple[Any, str]]
  apply: Callable[[jax.Array, jax.Array, dict[str, Any]], jax.Array]
  check: Callable[[dict[str, Any]], tuple[str, str] | None]

  def values(self, cfg: Any) -> dict[str, Any]:
    return {f: cfg.get(f, default) for f, (default, _) in self.fields.items()}

  def enabled(self, cfg: Any) -> bool:
    return any(bool(v) and float(v) > 0 for v in self.values(cfg).values())


AUGMENTATIONS: dict[str, Augmentation] = {}  # in registration order: the order they are applied


def each_field(check: Callable[[str, Any], str | None]):
  """A check of all fields from a check of one field's value."""
  def check_all(values: dict[str, Any]) -> tuple[str, str] | None:
    for field, value in values.items():
      problem = check(field, value)
      if problem:
        return field, problem
    return None
  return check_all


def register(name: str, fields: dict[str, tuple[Any, str]],
             check: Callable[[dict[str, Any]], tuple[str, str] | None] = lambda values: None):
  """Decorator: registers fn(images, key, values) -> images as augmentation `name`.

  `images` are floats in [0, 1], (N, H, W, 1); `values` maps each of `fields` to the config's
  value; the result must keep the shape (values outside [0, 1] are clipped after the last one).
  `check(values)` sees all of the augmentation's fields together and returns (field, what is
  wrong) or None; a check of two arguments, check(field, value) -> what is wrong or None, is
  applied to each field (`each_field`).
  """
  def decorate(fn):
    if name in AUGMENTATIONS or any(f in fields_of_all() for f in fields):
      raise ValueError(f'augmentation {name!r} or one of its fields {list(fields)} is taken')
    checks_one = len(inspect.signature(check).parameters) == 2  # check(field, value), as before
    AUGMENTATIONS[name] = Augmentation(name, dict(fields), fn,
                                       each_field(check) if checks_one else check)
    return fn
  return decorate


def fields_of_all() -> dict[str, tuple[Any, str]]:
  """Every config.augment field -> (default, help), over all registered augmentations."""
  return {f: spec for a in AUGMENTATIONS.values() for f, spec in a.fields.items()}


def is_enabled(cfg: Any) -> bool:
  return any(a.enabled(cfg) for a in AUGMENTATIONS.values())


def augment(images: jax.Array, key: jax.Array, cfg: Any) -> jax.Array:
  """Augments a float batch (N, H, W, 1) with values in [0, 1]; returns the same shape and range."""
  if not is_enabled(cfg):
    return images
  keys = streams.named_keys(key, AUGMENTATIONS)
  for name, a in AUGMENTATIONS.items():
    if a.enabled(cfg):
      images = a.apply(images, keys[name], a.values(cfg))
  # Bilinear warps may leave [0, 1] by a rounding; crop and erase stay inside it, so clipping
  # once at the end equals clipping after the warp and flip.
  return jnp.clip(images, 0.0, 1.0)


def _non_negative(field, value):
  return None if float(value) >= 0 else 'it must be 0 (off) or more'


def _affine_matrix(key: jax.Array, cfg: dict[str, Any], size: int) -> tuple[jax.Array, jax.Array]:
  """(matrix, shift) mapping an output pixel's offset from the centre to the input it samples."""
  k_rot, k_shear, k_zoom, k_shift = jax.random.split(key, 4)
  uniform = lambda k, bound, shape=(): jax.random.uniform(k, shape, minval=-bound, maxval=bound)
  theta = jnp.deg2rad(uniform(k_rot, float(cfg['rotation'])))
  shear = jnp.deg2rad(uniform(k_shear, float(cfg['shear'])))
  zoom = 1.0 + uniform(k_zoom, float(cfg['zoom']), (2,))  # Keras: independent row and column zoom.
  shift = uniform(k_shift, float(cfg['shift']) * size, (2,))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  rotation = jnp.array([[cos, -sin], [sin, cos]])
  shearing = jnp.array([[1.0, -jnp.sin(shear)], [0.0, jnp.cos(shear)]])
  matrix = rotation @ shearing @ jnp.diag(zoom)
  return matrix, shift


def _warp_one(image: jax.Array, key: jax.Array, cfg: dict[str, Any]) -> jax.Array:
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


@register('warp', fields={
    'shift': (0.0, 'max shift as a fraction of the side (Keras width/height_shift_range)'),
    'rotation': (0.0, 'max rotation in degrees'),
    'zoom': (0.0, 'zoom in [1 - zoom, 1 + zoom], rows and columns independently'),
    'shear': (0.0, 'max shear in degrees')}, check=each_field(_non_negative))
def warp(images: jax.Array, key: jax.Array, cfg: dict[str, Any]) -> jax.Array:
  """One random affine warp per image."""
  image_keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda im, k: _warp_one(im, k, cfg))(images, image_keys)


@register('flip', fields={'flip': (False, 'random horizontal flip')},
          check=each_field(lambda field, value: None if isinstance(value, bool)
                           else 'it is True or False'))
def flip(images: jax.Array, key: jax.Array, cfg: dict[str, Any]) -> jax.Array:
  del cfg
  flipped = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flipped, images[:, :, ::-1, :], images)


@register('crop', fields={'crop': (0, 'pad by this many pixels and crop back at a random offset')},
          check=each_field(lambda field, value: None if isinstance(value, int) and value >= 0
                           else 'it is a padding in pixels: an integer, 0 or more'))
def crop(images: jax.Array, key: jax.Array, cfg: dict[str, Any]) -> jax.Array:
  return random_crop(images, key, int(cfg['crop']))


@register('erase', fields={'erase': (0.0, 'random erasing: the probability per image')},
          check=each_field(lambda field, value: None if 0 <= value <= 1
                           else 'it is a probability, in [0, 1]'))
def erase(images: jax.Array, key: jax.Array, cfg: dict[str, Any]) -> jax.Array:
  return random_erase(images, key, float(cfg['erase']))


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


# Test-time augmentation (config.tta): the views whose class probabilities are averaged
# (evaluator.Evaluator); deterministic, and no view at all when off.
TTA = {
    '': ((False, 0),),
    'flip': ((False, 0), (True, 0)),
    # Both of those, and each shifted one pixel down-right and up-left (zeros fill in), as
    # airbench's mirror-and-translate test-time augmentation.
    'flip_translate': tuple((f, s) for f in (False, True) for s in (0, 1, -1)),
}


def tta_views(images, tta: str):
  """The views of a batch (N, H, W, C) that test-time augmentation `tta` averages over."""
  views = []
  for flip, shift in TTA[tta]:
    x = images[:, :, ::-1, :] if flip else images
    if shift:
      pad = ((0, 0), (1, 1), (1, 1), (0, 0))
      x = jnp.pad(x, pad)[:, 1 - shift:x.shape[1] + 1 - shift, 1 - shift:x.shape[2] + 1 - shift, :]
    views.append(x)
  return views
