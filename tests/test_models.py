"""Model output shapes, parameter counts and train/eval behaviour."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fmnist_jax import build
from fmnist_jax import models
from fmnist_jax import ops

# Counts derived by hand from the architectures (and, for bn_cnn, the Keras summary of the report).
EXPECTED = {
    'mlp': {'params': 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10},  # 235,146
    'cnn': {'params': 320 + 18_496 + 5 * 5 * 64 * 128 + 128 + 1_290},  # 225,034
    'bn_cnn': {'params': 241_994, 'batch_stats': 448},
    'small_cnn': {'params': 93_322},  # the Keras summary of the MobileNetV2 report's CNN.
    'vgg_cnn': {'params': 640 + 36_928 + 73_856 + 147_584 + 2048 * 256 + 256 + 65_792 + 2_570},
    'vgg_bn_cnn': {'params': 640 + 36_928 + 73_856 + 147_584 + 2048 * 256 + 256 + 65_792 + 2_570
                             + 2 * (64 + 64 + 128 + 128), 'batch_stats': 2 * (64 + 64 + 128 + 128)},
    'torch_cnn': {'params': 320 + 18_496 + 64 * 14 * 14 * 128 + 128 + 1_290},  # 1,625,866
    # stem; stage 1 (3 x two BN(32) and two 3x3 convs); stage 2 (its first block with BN(32), a
    # 1x1 projection and a stride-2 conv); stage 3 likewise; the last BN and the Dense.
    'preact_resnet': {
        'params': 288 + 3 * (64 + 9216 + 64 + 9216)
                  + (64 + 2048 + 18_432 + 128 + 36_864) + 2 * (128 + 36_864 + 128 + 36_864)
                  + (128 + 8192 + 73_728 + 256 + 147_456) + 2 * (256 + 147_456 + 256 + 147_456)
                  + 256 + 1290,  # 1,083,626
        'batch_stats': 2 * (6 * 32 + (32 + 64) + 4 * 64 + (64 + 128) + 4 * 128 + 128)},
    # Bias-free convs 1->32, 32->32, 32->64, 64->64, 64->128, 128->128, each with a BN; Dense 128->10.
    'speedrun_cnn': {'params': 9 * (32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
                               + 2 * 2 * (32 + 64 + 128) + 1280,
                     'batch_stats': 2 * 2 * (32 + 64 + 128)},
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_parameter_counts(name):
  variables = models.init_variables(models.create_model(name), jax.random.key(0))
  counts = {k: models.count_params(v) for k, v in variables.items()}
  print(name, counts, 'total', sum(counts.values()))
  assert counts == EXPECTED[name]


def test_bn_cnn_total_matches_keras_summary():
  variables = models.init_variables(models.create_model('bn_cnn'), jax.random.key(0))
  assert models.count_params(variables) == 242_442


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_output_shape_and_modes(name):
  model = models.create_model(name)
  variables = models.init_variables(model, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (8, 10) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, model.apply(variables, x, train=False))  # deterministic
  train_out = [model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(s)},
                           mutable=['batch_stats']) for s in (0, 1)]
  if getattr(model, 'dropout_rate', 0) > 0:  # (small_cnn has no dropout, as in its report)
    assert not np.allclose(train_out[0][0], train_out[1][0])  # dropout is active in training
  if 'batch_stats' in variables:
    new_stats = train_out[0][1]['batch_stats']
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                     variables['batch_stats'], new_stats)
    assert all(jax.tree_util.tree_leaves(changed))  # statistics move in training


def test_unknown_model_is_named():
  with pytest.raises(ValueError, match="config.model='resnet'"):
    models.create_model('resnet')


@pytest.mark.parametrize('shape', [(3, 26, 26, 5), (3, 11, 11, 4)])
def test_max_pool_matches_flax_values_and_gradients_with_ties(shape):
  rng = np.random.default_rng(0)
  # Rounded ReLU outputs: many windows hold several equal maxima (zeros, and after BatchNorm,
  # equal shifted values), where the gradient must go to the first one only.
  x = jnp.asarray(np.round(np.maximum(rng.normal(size=shape), 0)), jnp.float32)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  y, vjp = jax.vjp(ops.max_pool_2x2, x)
  y_ref, vjp_ref = jax.vjp(reference, x)
  g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  assert y.shape == y_ref.shape
  np.testing.assert_array_equal(y, y_ref)
  np.testing.assert_array_equal(vjp(g)[0], vjp_ref(g)[0])


@pytest.mark.parametrize('padding', ['VALID', 'SAME'])
def test_conv_relu_pool_matches_conv_relu_max_pool(padding):
  """Pooling before bias and ReLU: the values and gradients of nn.Conv -> ReLU -> nn.max_pool."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, 13, 13, 3)), jnp.float32)
  x = x.at[:, :4].set(0.25)  # a flat region: equal conv outputs, ties in every window there
  fast = models.ConvReLUPool(8, padding=padding)
  variables = fast.init(jax.random.key(0), x)
  variables = jax.tree_util.tree_map(  # a bias that puts some windows wholly below zero
      lambda p: p + 0.3 if p.ndim == 1 else p, variables)
  plain = nn.Conv(8, (3, 3), padding=padding)
  assert (jax.tree_util.tree_structure(plain.init(jax.random.key(0), x))
          == jax.tree_util.tree_structure(variables))

  def reference(v, x):
    return nn.max_pool(nn.relu(plain.apply(v, x)), (2, 2), strides=(2, 2))

  y, vjp = jax.vjp(fast.apply, variables, x)
  y_ref, vjp_ref = jax.vjp(reference, variables, x)
  np.testing.assert_array_equal(y, y_ref)
  assert 0 < float((y == 0).mean()) < 1
  g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  for a, b in zip(jax.tree_util.tree_leaves(vjp(g)), jax.tree_util.tree_leaves(vjp_ref(g))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('recipe,base', [('mlp_crop', 'mlp'), ('cnn_tuned', 'cnn'),
                                         ('cnn_crop', 'cnn'), ('cnn_crop_long', 'cnn'),
                                         ('bn_cnn_crop', 'bn_cnn'), ('bn_cnn_erase', 'bn_cnn')])
def test_tuned_recipes_keep_their_base_architecture_and_parameter_count(recipe, base):
  """Issue 17 asks for new recipes with the same architectures and parameter counts."""
  import importlib
  from fmnist_jax import config_check
  tuned, plain = (importlib.import_module(f'configs.{n}').get_config() for n in (recipe, base))
  config_check.validate_config(tuned)
  assert tuned.model == plain.model
  count = lambda c: models.count_params(
      models.init_variables(build.model(c), jax.random.key(0))['params'])
  assert count(tuned) == count(plain)
