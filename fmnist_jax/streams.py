"""Every random stream of a run, derived from its seed along one tree of keys.

Why a tree: `jax.random.split(k)[i]` equals `jax.random.fold_in(k, i)`, so two derivations that
fold the same integer into the same key coincide. Here every key is either a *parent*, whose
children are `fold_in(parent, i)` with `i` the child's id (its index in one tuple below, or for a
registered augmentation or batch transform an id derived from its name), or a *leaf* that a
sampler consumes; never both. Two streams are then equal only if their paths in the tree are, so
adding a stream is adding a name at the end of one of these tuples, and registering an
augmentation or batch transform anywhere leaves every other's stream as it was.

    key(seed) ─┬ init                      model initialisation (leaf)
               ├ shuffle ─ epoch           the epoch's permutation of the training set (leaf)
               └ step ─ global step ─┬ dropout   (leaf; flax folds in each layer's path)
                                     ├ augment ─┬ warp ─ image (split: one leaf per image)
                                     │          ├ flip   (leaf)
                                     │          ├ crop   (leaf)
                                     │          ├ erase ─ split into its 6 samplers' leaves
                                     │          └ ...    one per registered augmentation (`name_id`)
                                     └ batch ─── one per registered batch transform (`name_id`)
"""
from __future__ import annotations

import hashlib

import jax

SEED_STREAMS = ('init', 'shuffle', 'step')
STEP_STREAMS = ('dropout', 'augment', 'batch')
# The built-in augmentations' ids: their indices in the registry they were first kept in.
BUILTIN_IDS = {'warp': 0, 'flip': 1, 'crop': 2, 'erase': 3}


def child(parent: jax.Array, names: tuple[str, ...], name: str) -> jax.Array:
  """The child `name` of `parent`, one of `names` (the parent's only children)."""
  return jax.random.fold_in(parent, names.index(name))


def seed_key(seed) -> jax.Array:
  return jax.random.key(seed)


def init_key(seed: int) -> jax.Array:
  """What initialises seed `seed`'s model."""
  return child(seed_key(seed), SEED_STREAMS, 'init')


def shuffle_root(key: jax.Array) -> jax.Array:
  """The parent of every epoch's shuffle, from a seed's key."""
  return child(key, SEED_STREAMS, 'shuffle')


def step_root(key: jax.Array) -> jax.Array:
  """The parent of every optimizer step's keys, from a seed's key; the train step gets this."""
  return child(key, SEED_STREAMS, 'step')


def epoch_shuffle_key(shuffle: jax.Array, epoch) -> jax.Array:
  return jax.random.fold_in(shuffle, epoch)


def step_keys(step_parent: jax.Array, step) -> dict[str, jax.Array]:
  """The keys of global optimizer step `step` (counted from 0): {'dropout', 'augment', 'batch'}."""
  parent = jax.random.fold_in(step_parent, step)
  return {name: child(parent, STEP_STREAMS, name) for name in STEP_STREAMS}


def name_id(name: str) -> int:
  """A registered augmentation's or batch transform's stream id: fixed for the built-ins, else
  from the name alone (so neither the order nor other registrations move it); 2**31 and above,
  clear of the built-ins."""
  if name in BUILTIN_IDS:
    return BUILTIN_IDS[name]
  return 2**31 + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], 'big') % 2**31


def named_keys(parent: jax.Array, names) -> dict[str, jax.Array]:
  """One key per name (`name_id`), children of `parent` (the step's augment or batch key)."""
  return {name: jax.random.fold_in(parent, name_id(name)) for name in names}
