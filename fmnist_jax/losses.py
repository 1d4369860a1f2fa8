"""Training losses by name (`config.loss`): fn(logits, targets, **config.loss_args) -> (N,) losses.

`targets` are class indices (N,) int32 when no batch transform mixes labels, else class
probabilities (N, 10) when a batch transform mixes labels or label smoothing
(`config.label_smoothing`, optax.smooth_labels) softens them; `probabilities` turns either into the
latter. The built-in `cross_entropy` keeps optax's integer-label form for hard targets, so its
numbers are those of every earlier run. The losses a run reports (history, results.json) are the
cross-entropy against the hard labels whatever loss trains; the best epoch is chosen by a
validation metric (`config.best_by`), never by this loss.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

LOSSES: dict[str, Callable[..., jax.Array]] = {}


def register(name: str):
  """Decorator: fn(logits, targets, **kwargs) -> per-example losses becomes loss `name`."""
  def decorate(fn):
    if name in LOSSES:
      raise ValueError(f'loss {name!r} is registered already')
    LOSSES[name] = fn
    return fn
  return decorate


def arguments(name: str) -> list[str]:
  """The keyword arguments loss `name` takes (config.loss_args may set these)."""
  import inspect  # pylint: disable=g-import-not-at-top
  params = list(inspect.signature(LOSSES[name]).parameters.values())[2:]
  return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def probabilities(targets: jax.Array, num_classes: int) -> jax.Array:
  """(N, C) class probabilities from class indices (N,) or from probabilities."""
  return targets if targets.ndim == 2 else jax.nn.one_hot(targets, num_classes)


@register('cross_entropy')
def cross_entropy(logits, targets):
  """Per-example cross-entropy against class indices or probabilities."""
  if targets.ndim == 1:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return optax.softmax_cross_entropy(logits, targets)


def hard_labels(targets: jax.Array) -> jax.Array:
  """Class indices: the targets themselves, or soft targets' most probable class."""
  return targets if targets.ndim == 1 else jnp.argmax(targets, -1)
