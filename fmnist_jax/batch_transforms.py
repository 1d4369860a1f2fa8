"""Batch transforms: traced into the train step after augmentation, they see a batch's images *and*
its targets (class probabilities, (N, 10)) and the epoch, so label-mixing augmentations (mixup,
CutMix) and per-epoch schedules (an alternating flip) can be written without touching the step.

Each is registered with its `config.batch_transforms` fields and their defaults (off), a check that
sees all its fields, and fn(images, targets, key, epoch, values) -> (images, targets). The enabled
ones run in registration order, each with its own random stream keyed by its name (the step's
'batch' stream, `streams.named_keys`), so turning one on leaves augmentation, dropout and every other
stream as they were. With none enabled nothing is traced: the step trains on the hard labels as
before.

Training accuracy under soft targets counts a prediction right when it is the target's most
probable class (`argmax`); the training loss in the history is then the cross-entropy against that
class, while the optimised loss is the configured one against the soft targets.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from fmnist_jax import streams


@dataclasses.dataclass(frozen=True)
class BatchTransform:
  name: str
  fields: dict[str, tuple[Any, str]]
  apply: Callable[..., tuple[jax.Array, jax.Array]]
  check: Callable[[dict[str, Any]], tuple[str, str] | None]

  def values(self, cfg: Any) -> dict[str, Any]:
    return {f: cfg.get(f, default) for f, (default, _) in self.fields.items()}

  def enabled(self, cfg: Any) -> bool:
    return any(isinstance(v, (int, float)) and v > 0 for v in self.values(cfg).values())


TRANSFORMS: dict[str, BatchTransform] = {}  # in registration order: the order they are applied


def register(name: str, fields: dict[str, tuple[Any, str]],
             check: Callable[[dict[str, Any]], tuple[str, str] | None] = lambda values: None):
  """Decorator: fn(images, targets, key, epoch, values) -> (images, targets) becomes batch
  transform `name`. `images`: floats in [0, 1], (N, H, W, 1); `targets`: (N, 10) probabilities;
  `epoch`: the 1-based epoch (a traced int32); `values`: each of `fields` from the config."""
  def decorate(fn):
    if name in TRANSFORMS or any(f in fields_of_all() for f in fields):
      raise ValueError(f'batch transform {name!r} or one of its fields {list(fields)} is taken')
    TRANSFORMS[name] = BatchTransform(name, dict(fields), fn, check)
    return fn
  return decorate


def fields_of_all() -> dict[str, tuple[Any, str]]:
  return {f: spec for t in TRANSFORMS.values() for f, spec in t.fields.items()}


def is_enabled(cfg: Any) -> bool:
  return any(t.enabled(cfg) for t in TRANSFORMS.values())


def apply(images, targets, key, epoch, cfg: Any):
  """The enabled transforms, in registration order."""
  keys = streams.named_keys(key, TRANSFORMS)
  for name, t in TRANSFORMS.items():
    if t.enabled(cfg):
      images, targets = t.apply(images, targets, keys[name], epoch, t.values(cfg))
  return images, targets


def _alpha(values):
  for field, value in values.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
      return field, 'it is the alpha of Beta(alpha, alpha): 0 (off) or more, e.g. 0.2'
  return None


def _pairs(key, n):
  """A mixing weight per batch from Beta(alpha, alpha), and a permutation pairing the examples."""
  k_lam, k_perm = jax.random.split(key)
  return k_lam, jax.random.permutation(k_perm, n)


@register('mixup', fields={'mixup': (0.0, 'mixup (Zhang et al. 2018): alpha of the Beta mixing '
                                   'weight; 0 off')}, check=_alpha)
def mixup(images, targets, key, epoch, values):
  """Each example mixed with a partner from the same batch by one weight drawn per batch."""
  del epoch
  k_lam, perm = _pairs(key, images.shape[0])
  lam = jax.random.beta(k_lam, values['mixup'], values['mixup'])
  return (lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm])


@register('cutmix', fields={'cutmix': (0.0, 'CutMix (Yun et al. 2019): alpha of the Beta area '
                                     'weight; 0 off')}, check=_alpha)
def cutmix(images, targets, key, epoch, values):
  """A rectangle of each image replaced by its partner's; the targets mixed by the area kept."""
  del epoch
  n, h, w, _ = images.shape
  k_lam, perm = _pairs(key, n)
  k_lam, k_row, k_col = jax.random.split(k_lam, 3)
  lam = jax.random.beta(k_lam, values['cutmix'], values['cutmix'])
  cut_h = jnp.round(h * jnp.sqrt(1 - lam)).astype(jnp.int32)
  cut_w = jnp.round(w * jnp.sqrt(1 - lam)).astype(jnp.int32)
  cy, cx = jax.random.randint(k_row, (), 0, h), jax.random.randint(k_col, (), 0, w)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = ((rows >= top) & (rows < bottom) & (cols >= left) & (cols < right))[None, :, :, None]
  kept = 1 - (bottom - top) * (right - left) / (h * w)
  return jnp.where(box, images[perm], images), kept * targets + (1 - kept) * targets[perm]
