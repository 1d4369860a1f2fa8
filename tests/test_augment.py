"""On-device augmentation: shape and range kept, deterministic per key, identity when off."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fmnist_jax import evaluator
from fmnist_jax import augment


def cfg(**kw):
  c = ml_collections.ConfigDict(dict(flip=False, shift=0.0, rotation=0.0, zoom=0.0, shear=0.0))
  c.update(kw)
  return c


@pytest.fixture(scope='module')
def images():
  return jax.random.uniform(jax.random.key(0), (16, 28, 28, 1))


ALL_ON = dict(flip=True, shift=0.1, rotation=15.0, zoom=0.1, shear=10.0)


def test_off_is_identity(images):
  out = augment.augment(images, jax.random.key(1), cfg())
  np.testing.assert_array_equal(out, images)
  assert not augment.is_enabled(cfg())


@pytest.mark.parametrize('kw', [dict(flip=True), dict(shift=0.1), dict(rotation=15.0),
                                dict(zoom=0.1), dict(shear=10.0), ALL_ON])
def test_shape_range_determinism(images, kw):
  c = cfg(**kw)
  f = jax.jit(lambda x, k: augment.augment(x, k, c))
  a = f(images, jax.random.key(1))
  assert a.shape == images.shape and a.dtype == images.dtype
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(a, f(images, jax.random.key(1)))
  assert not np.array_equal(a, f(images, jax.random.key(2)))
  assert not np.array_equal(a, images)


def test_flip_gives_image_or_its_mirror(images):
  out = np.asarray(augment.augment(images, jax.random.key(3), cfg(flip=True)))
  x = np.asarray(images)
  flipped = [np.array_equal(o, m[:, ::-1]) for o, m in zip(out, x)]
  same = [np.array_equal(o, m) for o, m in zip(out, x)]
  assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_zero_strength_warp_is_exact():
  # A warp whose ranges are all tiny must sample the pixel grid itself.
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
  out = augment.augment(x, jax.random.key(1), cfg(rotation=1e-6))
  np.testing.assert_allclose(out, x, atol=1e-4)


def test_shift_moves_content():
  x = jnp.zeros((1, 28, 28, 1)).at[0, 10:18, 10:18, 0].set(1.0)
  out = augment.augment(x, jax.random.key(5), cfg(shift=0.2))
  rows, cols = np.nonzero(np.asarray(out[0, :, :, 0]) > 0.5)
  assert abs(rows.mean() - 13.5) + abs(cols.mean() - 13.5) > 0.5
  assert abs(float(out.sum()) - 64.0) < 8.0  # mass is moved, not lost (square stays inside)


def test_crop_and_erase_off_leave_the_other_streams_unchanged(images):
  """crop=0 and erase=0 (the defaults) give exactly what the config without them gives."""
  base = augment.augment(images, jax.random.key(3), cfg(**ALL_ON))
  with_keys = augment.augment(images, jax.random.key(3), cfg(**ALL_ON, crop=0, erase=0.0))
  np.testing.assert_array_equal(base, with_keys)


def test_random_crop_is_a_shifted_window_and_deterministic(images):
  out = augment.augment(images, jax.random.key(4), cfg(crop=3))
  np.testing.assert_array_equal(out, augment.augment(images, jax.random.key(4), cfg(crop=3)))
  assert out.shape == images.shape
  padded = np.pad(np.asarray(images), ((0, 0), (3, 3), (3, 3), (0, 0)))
  for im, o in zip(padded, np.asarray(out)):  # each output is one 28x28 window of the padded image
    assert any(np.array_equal(o, im[r:r + 28, c:c + 28]) for r in range(7) for c in range(7))
  assert not np.array_equal(out, images)


def test_random_erase_fills_one_rectangle_with_noise(images):
  out = np.asarray(augment.augment(images, jax.random.key(5), cfg(erase=1.0)))
  np.testing.assert_array_equal(
      out, augment.augment(images, jax.random.key(5), cfg(erase=1.0)))
  assert out.min() >= 0 and out.max() <= 1
  for im, o in zip(np.asarray(images), out):
    changed = np.argwhere((o != im)[..., 0])
    (r0, c0), (r1, c1) = changed.min(0), changed.max(0)
    area = (r1 - r0 + 1) * (c1 - c0 + 1)
    assert len(changed) == area  # a full rectangle (noise equal to the pixel: negligible odds)
    assert 0.02 * 784 * 0.5 <= area <= 0.4 * 784 * 1.5  # rounding of the side lengths
  untouched = augment.augment(images, jax.random.key(5), cfg(erase=0.5))
  per_image = [(np.asarray(u) != np.asarray(i)).any() for u, i in zip(untouched, images)]
  assert 0 < sum(per_image) < len(per_image)  # about half the images are erased


# Test-time augmentation (config.tta): the views evaluate.Evaluator averages over.

def test_tta_off_is_the_image_itself(images):
  views = augment.tta_views(images, '')
  assert len(views) == 1 and views[0] is images


def test_tta_views_are_the_mirror_and_one_pixel_shifts():
  x = jnp.arange(2 * 5 * 5).reshape(2, 5, 5, 1).astype(jnp.float32)
  views = augment.tta_views(x, 'flip_translate')
  assert len(views) == 6
  np.testing.assert_array_equal(views[3], x[:, :, ::-1])
  down_right = np.zeros_like(x)
  down_right[:, 1:, 1:] = x[:, :-1, :-1]
  np.testing.assert_array_equal(views[1], down_right)
  up_left = np.zeros_like(x)
  up_left[:, :-1, :-1] = x[:, 1:, 1:]
  np.testing.assert_array_equal(views[2], up_left)


@pytest.mark.parametrize('tta', ['flip', 'flip_translate'])
def test_evaluator_averages_the_views_probabilities_deterministically(tta):
  from fmnist_jax import input_pipeline, models  # pylint: disable=g-import-not-at-top
  model = models.create_model('mlp', hidden=(16,))
  variables = models.init_variables(model, jax.random.key(0))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, (40,)).astype(np.int32)
  plain = evaluator.Evaluator(model, images, labels, 16)
  averaged = evaluator.Evaluator(model, images, labels, 16, tta=tta)
  metrics_, probs = averaged.run(variables)
  expected = np.mean([jax.nn.softmax(model.apply(variables, input_pipeline.normalize(v)))
                      for v in augment.tta_views(jnp.asarray(images), tta)], axis=0)
  np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
  assert metrics_['accuracy'] == pytest.approx(np.mean(expected.argmax(1) == labels))
  assert metrics_['loss'] == pytest.approx(-np.mean(np.log(expected[np.arange(40), labels])),
                                           rel=1e-5)
  np.testing.assert_array_equal(probs, averaged.run(variables)[1])  # deterministic
  assert not np.allclose(probs, plain.run(variables)[1])  # and not the plain prediction


def test_an_augmentation_registered_anywhere_leaves_the_builtins_images_as_they_were(monkeypatch):
  """Streams are keyed by name, not by registration position: a new augmentation placed before
  every built-in, while off, changes none of their images; the built-ins keep their ids."""
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((8, 28, 28, 1), dtype=np.float32))
  key = jax.random.key(3)
  cfg = ml_collections.ConfigDict({field: default for field, (default, _) in
                                   augment.fields_of_all().items()})
  cfg.update(flip=True, shift=0.1, rotation=10.0, zoom=0.1, shear=5.0, crop=2, erase=0.5)
  before = np.asarray(augment.augment(images, key, cfg))
  monkeypatch.setattr(augment, 'AUGMENTATIONS', dict(augment.AUGMENTATIONS))
  augment.register('aaa_first', fields={'aaa_first': (0.0, 'a stand-in')})(
      lambda x, k, values: 1.0 - x)
  first = augment.AUGMENTATIONS.pop('aaa_first')
  monkeypatch.setattr(augment, 'AUGMENTATIONS', {'aaa_first': first, **augment.AUGMENTATIONS})
  assert list(augment.AUGMENTATIONS)[0] == 'aaa_first'
  np.testing.assert_array_equal(np.asarray(augment.augment(images, key, cfg)), before)
  from fmnist_jax import streams  # pylint: disable=g-import-not-at-top
  assert [streams.name_id(n) for n in ('warp', 'flip', 'crop', 'erase')] == [0, 1, 2, 3]
  assert streams.name_id('aaa_first') >= 2**31 and streams.name_id('aaa_first') < 2**32
  cfg.aaa_first = 1.0  # on: it is applied first, then the built-ins with their own streams
  assert not np.array_equal(np.asarray(augment.augment(images, key, cfg)), before)
