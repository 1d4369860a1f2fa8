"""Every random stream of a run is distinct from every other, by construction (fmnist_jax/streams.py).

The check runs over the keys the training and the augmentation actually take: the tree of
`streams` for whole 100-epoch schedules (step 24,301 = 0x5EED included), and the keys
`augment.augment` hands to jax's samplers with every augmentation on. A negative control applies
the same check to the earlier scheme, which it must reject.
"""
import jax
import numpy as np
import pytest

from configs import default
from fmnist_jax import augment
from fmnist_jax import streams


def _data(key) -> tuple:
  return tuple(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _duplicates(named: dict[str, jax.Array]) -> list[tuple[str, str]]:
  seen, clashes = {}, []
  for name, key in named.items():
    data = _data(key)
    if data in seen:
      clashes.append((seen[data], name))
    seen.setdefault(data, name)
  return clashes


def _tree(seed: int, epochs, steps) -> dict[str, jax.Array]:
  """Every node of a seed's key tree, parents and leaves, as the training derives them."""
  root = streams.seed_key(seed)
  out = {'seed': root, 'init': streams.init_key(seed)}
  shuffle, step = streams.shuffle_root(root), streams.step_root(root)
  out.update(shuffle=shuffle, step=step)
  for epoch in epochs:
    out[f'shuffle/{epoch}'] = streams.epoch_shuffle_key(shuffle, epoch)
  for s in steps:
    out[f'step/{s}'] = jax.random.fold_in(step, s)
    keys = streams.step_keys(step, s)
    out[f'step/{s}/dropout'] = keys['dropout']
    out[f'step/{s}/augment'] = keys['augment']
    for name, key in streams.named_keys(keys['augment'], augment.AUGMENTATIONS).items():
      out[f'step/{s}/augment/{name}'] = key
  return out


# A 100-epoch run at batch 128 on 54,000 images takes 42,100 steps; these cover its epochs, the
# first steps, and the step that once equalled the shuffle's root.
EPOCHS = range(0, 201)
STEPS = [*range(0, 300), 0x5EED - 1, 0x5EED, 0x5EED + 1, 42_099]


def test_no_two_streams_of_a_run_coincide():
  for seed in (0, 1):
    assert _duplicates(_tree(seed, EPOCHS, STEPS)) == []
  # Nor across seeds: seed 1's init is none of seed 0's keys.
  both = {f'0/{k}': v for k, v in _tree(0, EPOCHS, STEPS[:50]).items()}
  both.update({f'1/{k}': v for k, v in _tree(1, EPOCHS, STEPS[:50]).items()})
  assert _duplicates(both) == []


def _consumed_by_augment(monkeypatch, images, key, cfg) -> dict[str, jax.Array]:
  """The keys `augment.augment` passes to jax's samplers (eagerly, outside the vmap)."""
  consumed = {}

  def spy(name):
    real = getattr(jax.random, name)
    def wrapped(k, *args, **kwargs):
      if not isinstance(k, jax.core.Tracer):  # the per-image keys inside the vmap are split's
        consumed[f'{name}#{len(consumed)}'] = k
      return real(k, *args, **kwargs)
    return wrapped

  for name in ('split', 'bernoulli', 'randint', 'uniform'):
    monkeypatch.setattr(jax.random, name, spy(name))
  augment.augment(images, key, cfg)
  monkeypatch.undo()
  return consumed


def test_augment_gives_each_augmentation_its_own_key(monkeypatch):
  cfg = default.get_config().augment
  cfg.update(flip=True, shift=0.1, rotation=10.0, crop=2, erase=0.5)
  images = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  key = streams.step_keys(streams.step_root(streams.seed_key(0)), 7)['augment']
  consumed = _consumed_by_augment(monkeypatch, images, key, cfg)
  # warp's split, flip's bernoulli, crop's randint, erase's split: four samplers, four keys.
  assert len(consumed) >= 4
  assert _duplicates(consumed) == []


def _old_scheme(seed: int, steps) -> dict[str, jax.Array]:
  """The keys of the scheme before results version 2, for the negative control."""
  root = jax.random.key(seed)
  out = {'init': root, 'shuffle': jax.random.fold_in(root, 0x5EED)}
  for s in steps:
    dropout, aug = jax.random.split(jax.random.fold_in(root, s))
    k_flip, k_warp = jax.random.split(aug)
    out.update({f'step/{s}': jax.random.fold_in(root, s), f'step/{s}/dropout': dropout,
                f'step/{s}/warp': k_warp, f'step/{s}/flip': k_flip,
                f'step/{s}/crop': jax.random.fold_in(aug, 1),
                f'step/{s}/erase': jax.random.fold_in(aug, 2)})
  return out


def test_the_check_rejects_the_old_scheme():
  clashes = _duplicates(_old_scheme(0, [3, 0x5EED]))
  assert ('step/3/warp', 'step/3/crop') in clashes
  assert ('shuffle', 'step/24301') in clashes


@pytest.mark.parametrize('name', ['init', 'shuffle', 'step'])
def test_a_stream_is_a_function_of_the_seed_alone(name):
  """Deterministic: the same seed gives the same key; another seed another."""
  derive = {'init': streams.init_key,
            'shuffle': lambda s: streams.shuffle_root(streams.seed_key(s)),
            'step': lambda s: streams.step_root(streams.seed_key(s))}[name]
  assert _data(derive(5)) == _data(derive(5))
  assert _data(derive(5)) != _data(derive(6))
