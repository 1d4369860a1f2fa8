"""The benchmark command runs and reports every figure (speed targets live in its output, not here)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path):
  out = tmp_path / 'bench.json'
  cmd = [sys.executable, '-m', 'fmnist_jax.benchmark', '--models=mlp', '--steps=3',
         '--warmup=1', '--eval_images=500', f'--output={out}']
  run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result['machine']['backend'] == 'cpu' and result['machine']['jax']
  assert [r['model'] for r in result['rows']] == ['mlp']
  for row in result['rows']:
    for key in ('compile_seconds', 'train_images_per_second', 'train_images_per_second_no_augment',
                'train_images_per_second_full_augment', 'eval_images_per_second',
                'peak_process_memory_mb'):
      assert row[key] > 0, key
    assert -1 < row['augment_cost_fraction'] < 1
  assert '| mlp |' in run.stdout  # the printed table


@pytest.mark.slow  # XLA compiles bfloat16 slowly on a CPU (about 20 s)
def test_bfloat16_model_trains_with_float32_loss():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from configs import default
  from fmnist_jax import build, metrics, step as step_lib
  config = default.get_config()
  config.update(model='bn_cnn', dtype='bfloat16', batch_size=64)
  model = build.model(config)
  state = build.train_state(config, model, 10)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(state.params))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (64,), dtype=np.int32))
  carry = jax.jit(lambda s: step_lib.train_step(
      step_lib.Carry(s, metrics.Metrics.empty(), jnp.int32(-1)),
      step_lib.SeedInputs(jnp.arange(64), jax.random.key(0)), images, labels, 0, 1,
      spec=build.step_spec(config)))(state)
  assert np.isfinite(float(carry.totals.compute()['loss']))
  assert int(carry.state.step) == 1


def _our_count(name):
  import jax
  from configs import default
  from fmnist_jax import build, models
  config = default.get_config()
  config.model = name
  return models.count_params(models.init_variables(build.model(config),
                                                   jax.random.key(0)))


BASELINES = ['mlp', 'cnn', 'bn_cnn', 'vgg_cnn', 'vgg_bn_cnn', 'torch_cnn']


@pytest.mark.slow  # imports Keras
@pytest.mark.parametrize('name', BASELINES)
def test_keras_baselines_have_our_parameter_counts(name):
  """benchmark --compare times the same architectures (Keras counts BatchNorm statistics too)."""
  from fmnist_jax import baselines
  assert name in baselines.MODELS
  assert baselines.keras_model(name).count_params() == _our_count(name)


@pytest.mark.slow
@pytest.mark.parametrize('name', BASELINES)
def test_pytorch_baselines_have_our_parameter_counts(name):
  pytest.importorskip('torch')  # only with `pip install -e .[compare]`
  from fmnist_jax import baselines
  model = baselines.torch_model(name)
  statistics = sum(b.numel() for n, b in model.named_buffers() if 'running' in n)
  assert sum(p.numel() for p in model.parameters()) + statistics == _our_count(name)
