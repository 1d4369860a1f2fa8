"""Every random stream of a run, derived from its seed along one tree of keys.

Why a tree: in jax >= 0.5 `jax.random.split(k)[i]` equals `jax.random.fold_in(k, i)`, so two
derivations that fold the same integer into the same key coincide (an earlier scheme gave the
affine warp and the crop one key, and step 24,301 = 0x5EED the shuffle's root). Here every key is
either a *parent*, whose children are `fold_in(parent, i)` with `i` the index of the child's name in
one tuple below (so no two children of a parent share an index), or a *leaf* that a sampler
consumes; never both. Two streams are then equal only if their paths in the tree are, so adding a
stream is adding a name to one of these tuples. The augment key's children are the registered
augmentations, in registration order (`augment.AUGMENTATIONS`: warp, flip, crop, erase, then any
a user registers).

    key(seed) ─┬ init                      model initialisation (leaf)
               ├ shuffle ─ epoch           the epoch's permutation of the training set (leaf)
               └ step ─ global step ─┬ dropout   (leaf; flax folds in each layer's path)
                                     └ augment ─┬ warp ─ image (split: one leaf per image)
                                                ├ flip   (leaf)
                                                ├ crop   (leaf)
                                                ├ erase ─ split into its 6 samplers' leaves
                                                └ ...    one per registered augmentation
"""
from __future__ import annotations

import jax

SEED_STREAMS = ('init', 'shuffle', 'step')
STEP_STREAMS = ('dropout', 'augment')


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
  """The keys of global optimizer step `step` (counted from 0): {'dropout', 'augment'}."""
  parent = jax.random.fold_in(step_parent, step)
  return {name: child(parent, STEP_STREAMS, name) for name in STEP_STREAMS}


def augment_keys(augment: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
  """One key per registered augmentation (`names`, in registration order), whichever of them the
  config turns on."""
  return {name: child(augment, names, name) for name in names}
