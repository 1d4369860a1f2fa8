"""Training: a step lowers the loss, optimizers and schedules, config checks, resume, end to end."""
import csv
import glob
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from fmnist_jax import build
from fmnist_jax import checkpoint
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import input_pipeline
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import seeds
from fmnist_jax import losses
from fmnist_jax import state as state_lib
from fmnist_jax import step as step_lib
from fmnist_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('name', ['mlp', 'cnn', 'bn_cnn'])
def test_train_step_lowers_loss(name):
  config = default.get_config()
  config.model = name
  model = build.model(config)
  state = build.train_state(config, model, 10)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (64,), dtype=np.int32))
  config.batch_size = 64
  inputs = step_lib.SeedInputs(jnp.arange(64), jax.random.key(0))
  step = jax.jit(lambda s, i: step_lib.train_step(
      step_lib.Carry(s, metrics.Metrics.empty(), jnp.int32(-1)), inputs, images, labels, i, 1,
      spec=build.step_spec(config)))
  losses = []
  for _ in range(40):
    carry = step(state, 0)
    state = carry.state
    losses.append(float(carry.totals.compute()['loss']))
  assert int(state.step) == 40
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize('optimizer,schedule', [('adam', 'constant'), ('adamw', 'cosine'),
                                                ('sgd', 'step')])
def test_optimizers_and_schedules(optimizer, schedule):
  config = default.get_config()
  config.optimizer, config.schedule, config.num_epochs = optimizer, schedule, 4
  config.learning_rate, config.weight_decay = 0.1, 1e-4
  tx = build.optimizer(config, 10)
  params = {'w': jnp.ones(3)}
  opt_state = tx.init(params)
  sizes = []
  for _ in range(40):
    updates, opt_state = tx.update({'w': jnp.ones(3)}, opt_state, params)
    sizes.append(float(jnp.abs(updates['w'][0])))
  if schedule == 'constant':
    assert sizes[0] == pytest.approx(sizes[-1], rel=1e-3)
  elif schedule == 'cosine':
    assert sizes[-1] < 0.01 * sizes[0]
  else:  # step: x0.1 at 50 % and again at 75 % of the 40 steps (sgd momentum 0.9 smooths it).
    assert sizes[19] > 5 * sizes[25] and sizes[25] > 5 * sizes[-1]


def test_linear_schedule_falls_to_zero_after_the_warmup():
  config = default.get_config()
  config.update(optimizer='sgd', momentum=0.0, schedule='linear', warmup_epochs=1.0,
                num_epochs=4, learning_rate=0.1)
  tx = build.optimizer(config, 10)
  params = {'w': jnp.ones(())}
  opt_state, sizes = tx.init(params), []
  for _ in range(40):
    updates, opt_state = tx.update({'w': jnp.ones(())}, opt_state, params)
    sizes.append(-float(updates['w']))
  np.testing.assert_allclose(sizes[:11], np.arange(11) / 10 * 0.1, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(sizes[10:], 0.1 * (1 - np.arange(30) / 30), rtol=1e-5, atol=1e-7)


def test_nesterov_off_is_plain_momentum_and_on_differs():
  config = default.get_config()
  config.update(optimizer='sgd', schedule='constant', learning_rate=0.1, momentum=0.9)
  grads = [{'w': jnp.array(g)} for g in (1.0, -0.5, 2.0)]
  def updates(nesterov):
    config.nesterov = nesterov
    tx = build.optimizer(config, 10)
    state, out = tx.init({'w': jnp.zeros(())}), []
    for g in grads:
      u, state = tx.update(g, state)
      out.append(float(u['w']))
    return out
  velocity, plain = 0.0, []
  for g in (1.0, -0.5, 2.0):  # v = 0.9 v + g; update = -lr v
    velocity = 0.9 * velocity + g
    plain.append(-0.1 * velocity)
  np.testing.assert_allclose(updates(False), plain, rtol=1e-6)
  assert not np.allclose(updates(True), plain)


@pytest.mark.parametrize('field,value', [
    ('model', 'resnet'), ('optimizer', 'rmsprop'), ('schedule', 'triangle'), ('tta', 'rotate'),
    ('learning_rate', 0.0), ('batch_size', -1), ('validation_split', 'test[:1000]'),
    ('dtype', 'float16'), ('num_epochs', 0), ('keep_checkpoints', 0), ('progress_bar', 'yes'),
    ('train_split', 'test')])
def test_bad_config_names_the_field(field, value):
  config = default.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=f'config.*{field.split("_")[0]}'):
    config_check.validate_config(config)


def test_unknown_augmentation_key():
  config = default.get_config()
  config.augment.blur = 1.0
  with pytest.raises(ValueError, match="config.augment=\\['blur'\\]"):
    config_check.validate_config(config)


def _final_params(workdir, config):
  model = build.model(config)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints)
  ckpt, _ = checkpoint.restore(mngr, mngr.latest_step(),
                               build.checkpoint_item(config, model, 1))
  return seeds.take(ckpt['state'], 0)


def test_resume_continues_identically(small_config, tmp_path):
  small_config.model = 'bn_cnn'  # BatchNorm statistics and optimizer state must survive too,
  small_config.ema_decay = 0.99  # and the weights' moving average inside the optimizer state.
  small_config.augment.flip = True
  small_config.augment.shift = 0.1
  full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
  reference = train.train_and_evaluate(small_config, full)
  # Interrupted after epoch 1: the same run with only epoch 1's checkpoint left behind.
  train.train_and_evaluate(small_config, resumed)
  mngr = checkpoint.manager(resumed, small_config.keep_checkpoints)
  mngr.delete(40)  # checkpoints are keyed by the global step: 20 steps an epoch.
  os.remove(os.path.join(resumed, 'results.json'))
  assert checkpoint.manager(resumed, small_config.keep_checkpoints).latest_step() == 20
  again = train.train_and_evaluate(small_config, resumed)
  for key in ('test_accuracy', 'test_loss', 'validation_accuracy', 'validation_loss'):
    assert again[key] == reference[key]
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(again['history']) == strip(reference['history'])
  a, b = _final_params(full, small_config), _final_params(resumed, small_config)
  assert int(a.step) == int(b.step) == 2 * (2000 // 100)
  for x, y in zip(jax.tree_util.tree_leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree_util.tree_leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_array_equal(x, y)


def test_same_seed_same_numbers_other_seed_differs(small_config, tmp_path):
  small_config.num_epochs = 1
  a = train.train_and_evaluate(small_config, str(tmp_path / 'a'))
  b = train.train_and_evaluate(small_config, str(tmp_path / 'b'))
  small_config.seed = 1
  c = train.train_and_evaluate(small_config, str(tmp_path / 'c'))
  assert a['test_loss'] == b['test_loss'] and a['history'][0]['train_loss'] == b['history'][0][
      'train_loss']
  assert c['test_loss'] != a['test_loss']


def test_cli_end_to_end_on_a_real_slice(data_dir, tmp_path):
  """The README's command on a real slice: outputs, an accuracy floor, and resume on a rerun."""
  workdir = str(tmp_path / 'w')
  cmd = [sys.executable, '-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', workdir,
         '--config.num_epochs=3', '--config.train_split=train[:6000]',
         '--config.validation_split=train[58000:]', f'--config.data_dir={data_dir}']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  # The quiet console: the log's path, the model line, one line per epoch and the summary; the
  # config, absl's INFO and the libraries' warnings (TPU probing, TensorFlow) only in log.txt.
  terminal = (out.stdout + out.stderr).splitlines()
  assert len(terminal) <= 3 + 3 and terminal[0].startswith('Log: '), terminal
  assert sum(line.startswith('epoch ') for line in terminal) == 3, terminal
  results = json.load(open(os.path.join(workdir, 'results.json')))
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['model'] == 'cnn' and config['num_epochs'] == 3
  assert results['model'] == 'cnn' and results['num_params'] == 225_034
  assert len(results['history']) == 3 and results['epochs'] == 3
  for key in ('test_accuracy', 'test_loss', 'validation_accuracy', 'validation_loss',
              'train_seconds', 'train_images_per_second', 'compile_seconds'):
    assert results[key] > 0, key
  assert results['test_accuracy'] >= 0.75  # 6,000 images, 3 epochs, the full 10,000 test images.
  events = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert events
  # Read back as TensorBoard reads them.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  accumulator = event_accumulator.EventAccumulator(workdir)
  accumulator.Reload()
  tags = accumulator.Tags()
  for tag in ('train_loss', 'train_accuracy', 'validation_loss', 'validation_accuracy',
              'test_accuracy', 'test_loss', 'steps_per_sec'):
    assert tag in tags['scalars'], tag
  assert [e.step for e in accumulator.Scalars('validation_accuracy')] == [
      e * (6000 // 128) for e in (1, 2, 3)]
  for tag in ('confusion_matrix', 'curves', 'samples', 'misclassified'):
    assert tag in tags['images'], tag
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(3 * (6000 // 128)), 'state'))
  report = json.load(open(os.path.join(workdir, 'classification_report.json')))
  with open(os.path.join(workdir, 'test_predictions.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [int(r['index']) for r in rows] == list(range(10000))
  assert report['accuracy'] == results['test_accuracy'] == np.mean(
      [r['label'] == r['predicted'] for r in rows])
  for name in ('confusion_matrix', 'curves', 'samples', 'misclassified'):
    with open(os.path.join(workdir, f'{name}.png'), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0
  log = open(os.path.join(workdir, 'log.txt')).read()  # absl's lines go to the workdir's log
  assert 'nothing to train' in log and 'epoch   1/' not in again.stdout
  assert 'Config:' in log and 'Config:' not in again.stdout + again.stderr  # the quiet console
  assert json.load(open(os.path.join(workdir, 'results.json'))) == results


def _synthetic_data(source, splits):
  """Random images in place of Fashion-MNIST: the fast tier's stand-in for input_pipeline.load."""
  rng = np.random.default_rng(0)
  sizes = {'train': 512, 'validation': 200, 'test': 300}
  return {name: {'image': rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                 'label': rng.integers(0, 10, (n,)).astype(np.int32),
                 'index': np.arange(n)} for name, n in sizes.items() if name in splits}


def test_train_and_evaluate_end_to_end_on_synthetic_data(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  config = default.get_config()
  config.update(model='mlp', num_epochs=2, batch_size=64, progress_bar='off',
                data_dir=str(tmp_path / 'unused'))
  first = train.train_and_evaluate(config, str(tmp_path / 'a'))
  assert first['epochs'] == 2 and len(first['history']) == 2
  assert first['best_epoch'] in (1, 2) and 0 <= first['test_accuracy'] <= 1
  for name in ('results.json', 'config.json', 'classification_report.md', 'curves.png'):
    assert (tmp_path / 'a' / name).exists(), name
  assert list((tmp_path / 'a').glob('events.out.tfevents.*'))
  # A finished workdir only reports; the same seed elsewhere gives the same numbers.
  assert train.train_and_evaluate(config, str(tmp_path / 'a'))['history'] == first['history']
  again = train.train_and_evaluate(config, str(tmp_path / 'b'))
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(again['history']) == strip(first['history'])
  assert again['test_accuracy'] == first['test_accuracy']


@pytest.mark.slow  # compiling the scan takes about half a minute on 2 cores
@pytest.mark.parametrize('num_seeds', [1, 2])
def test_k_steps_per_dispatch_equal_k_single_steps(num_seeds):
  """config.steps_per_dispatch=k (a lax.scan over k steps) gives the parameters of k steps."""
  config = default.get_config()
  config.update(model='mlp', batch_size=32, num_seeds=num_seeds, steps_per_dispatch=4)
  config.augment.update(flip=True, shift=0.1)  # the step's rngs must line up too
  model = build.model(config)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (256, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (256,), dtype=np.int32))
  mesh = parallel.create_mesh()

  def run(k, starts):
    stepper = _stepper(config, model, images, labels, num_seeds, mesh)
    assert sorted(stepper.compiled) == [1, 4] and stepper.steps_per_epoch == 8
    stepper.start_epoch(1)
    for i in starts:
      stepper.dispatch(i, k)
    return stepper.carry

  one, four = run(1, range(8)), run(4, (0, 4))
  assert int(four.state.step[0]) == int(one.state.step[0]) == 8
  for a, b in zip(jax.tree_util.tree_leaves(one.state.params),
                  jax.tree_util.tree_leaves(four.state.params)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  np.testing.assert_allclose(one.totals.loss.total, four.totals.loss.total, rtol=1e-6)


def _stepper(config, model, images, labels, num_seeds, mesh, vmap=None):
  """The run's own Stepper over fresh states of seeds 0 .. num_seeds-1."""
  state = build.train_states(config, model, 10, run_seeds=list(range(num_seeds)))
  return step_lib.Stepper(build.step_spec(config), model, state, state_lib.empty_totals(num_seeds),
                          {'image': images, 'label': labels}, list(range(num_seeds)), mesh,
                          vmap=vmap)


@pytest.mark.parametrize('num_seeds', [1, 2])
def test_the_vmapped_seed_path_equals_the_looped_one_on_the_cpu(num_seeds):
  """Off the CPU the Stepper vmaps one program over the seeds; forced here, it gives the looped
  path's numbers (to rounding: the vmapped program is another program)."""
  config = default.get_config()
  config.update(model='mlp', batch_size=32, num_seeds=num_seeds)
  config.augment.update(flip=True, shift=0.1)
  model = build.model(config)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (128, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (128,), dtype=np.int32))
  carries = []
  for vmap in (False, True):
    stepper = _stepper(config, model, images, labels, num_seeds, parallel.create_mesh(), vmap)
    assert len(stepper.groups) == (1 if vmap else num_seeds)
    stepper.start_epoch(1)
    for i in range(4):
      stepper.dispatch(i, 1)
    carries.append(stepper.carry)
  looped, vmapped = carries
  assert int(vmapped.state.step[0]) == 4
  for a, b in zip(jax.tree_util.tree_leaves(looped.state.params),
                  jax.tree_util.tree_leaves(vmapped.state.params)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(looped.totals.loss.total, vmapped.totals.loss.total, rtol=1e-5)


def test_label_smoothing_loss_equals_optax_and_zero_is_the_plain_loss():
  logits = jax.random.normal(jax.random.key(0), (8, 10))
  labels = jnp.arange(8) % 10
  plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_array_equal(losses.cross_entropy(logits, labels), plain)
  smoothed = optax.softmax_cross_entropy(
      logits, optax.smooth_labels(jax.nn.one_hot(labels, 10), 0.1))
  soft = optax.smooth_labels(losses.probabilities(labels, 10), 0.1)  # as the step smooths
  np.testing.assert_allclose(losses.cross_entropy(logits, soft), smoothed, rtol=1e-6)
  assert not np.allclose(smoothed, plain)


def test_new_recipe_fields_absent_from_an_old_config_mean_their_defaults():
  old = json.loads(default.get_config().to_json_best_effort())
  for field in ('label_smoothing', 'steps_per_dispatch'):
    del old[field]
  del old['augment']['crop'], old['augment']['erase']
  new = json.loads(default.get_config().to_json_best_effort())
  assert config_check.config_differences(old, new) == []
  new['label_smoothing'] = 0.1
  assert config_check.config_differences(old, new) == ['label_smoothing: 0.0 -> 0.1']


def test_ema_follows_its_update_rule_over_params_and_batch_stats_and_zero_decay_is_off():
  """ema_t = d_t * ema_{t-1} + (1 - d_t) * variables_t, d_t = min(decay, (1 + t) / (10 + t)), for
  the params and the BatchNorm statistics alike."""
  config = default.get_config()
  config.update(optimizer='sgd', momentum=0.0, schedule='constant', learning_rate=0.1)
  tx = build.optimizer(config, 10)
  variables = {'params': {'w': jnp.array([1.0, -2.0])}, 'batch_stats': {'mean': jnp.array([0.])}}
  state = state_lib.TrainState.create(apply_fn=None, tx=tx, params=variables['params'],
                                      batch_stats=variables['batch_stats'], ema=variables,
                                      ema_decay=0.9)
  expected = variables
  for t in range(1, 31):
    state = state.apply_gradients(grads={'w': jnp.array([0.5, 1.0]) * t},
                                  batch_stats={'mean': jnp.array([float(t)])})
    d = min(0.9, (1 + t) / (10 + t))
    expected = jax.tree_util.tree_map(lambda e, v, d=d: d * e + (1 - d) * v, expected,
                                      state.variables)
  for got, want in zip(jax.tree_util.tree_leaves(state.eval_variables),
                       jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert not np.allclose(state.eval_variables['batch_stats']['mean'], state.batch_stats['mean'])
  # Off (0): no average kept, evaluation on the variables themselves.
  model = build.model(config)
  plain = build.train_state(config, model, 10)
  assert plain.ema == {}
  assert jax.tree_util.tree_all(
      jax.tree_util.tree_map(lambda a, b: a is b, plain.eval_variables, plain.variables))


def test_weight_decay_reaches_kernels_only_unless_all():
  """Kernels decay, biases and BatchNorm scales do not (weight_decay_on='kernels', the default);
  'all' decays every parameter."""
  config = default.get_config()
  config.update(optimizer='sgd', momentum=0.0, schedule='constant', learning_rate=1.0,
                weight_decay=0.1)
  params = {'Dense_0': {'kernel': jnp.ones(2), 'bias': jnp.ones(2)},
            'BatchNorm_0': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}}
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  for on, decayed in (('kernels', {'kernel'}), ('all', {'kernel', 'bias', 'scale'})):
    config.weight_decay_on = on
    tx = build.optimizer(config, 10)
    updates, _ = tx.update(zero, tx.init(params), params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
      want = -0.1 if path[-1].key in decayed else 0.0
      np.testing.assert_allclose(u, want, err_msg=f'{on}: {jax.tree_util.keystr(path)}')


def test_ema_run_keeps_the_average_as_its_best_variables(tmp_path, monkeypatch):
  """With ema_decay the checkpointed best variables are the average, not the live params."""
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  config = default.get_config()
  # One epoch: it is the best one, so the best copy must be that epoch's average.
  config.update(model='mlp', num_epochs=1, batch_size=64, progress_bar='off', ema_decay=0.99,
                data_dir=str(tmp_path / 'unused'))
  results = train.train_and_evaluate(config, str(tmp_path / 'a'))
  assert results['epochs'] == 1 and 0 <= results['test_accuracy'] <= 1
  model = build.model(config)
  mngr = checkpoint.manager(str(tmp_path / 'a'), config.keep_checkpoints)
  ckpt, _ = checkpoint.restore(mngr, mngr.latest_step(),
                               build.checkpoint_item(config, model, 8))
  state = seeds.take(ckpt['state'], 0)
  live, average = (jax.tree_util.tree_leaves(state.params),
                   jax.tree_util.tree_leaves(state.ema['params']))
  assert any(not np.allclose(a, b) for a, b in zip(live, average))
  for a, b in zip(jax.tree_util.tree_leaves(seeds.take(ckpt['best'], 0)['params']),
                  average):
    np.testing.assert_array_equal(a, b)


def test_bn_cnn_step_with_our_max_pool_equals_the_step_with_flax_max_pool(monkeypatch):
  """In the compiled step too: after BatchNorm many windows tie, and the gradient must go where
  nn.max_pool's does (an equality test in the backward pass once sent it elsewhere: 2e-3 off)."""
  config = default.get_config()
  config.update(model='bn_cnn', optimizer='sgd', learning_rate=0.05, dropout_rate=0.0)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (256, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 256).astype(np.int32))

  def one_step():
    model = build.model(config)
    stepper = _stepper(config, model, images, labels, 1, parallel.create_mesh(jax.devices()[:1]))
    stepper.start_epoch(1)
    stepper.dispatch(0, 1)
    return jax.tree_util.tree_leaves(stepper.carry.state.variables)

  ours = one_step()
  monkeypatch.setattr(models.ops, 'max_pool_2x2',
                      lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)))
  for a, b in zip(ours, one_step()):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_sgd_weight_decay_is_l2_added_to_the_gradient_and_zero_is_plain_sgd():
  config = default.get_config()
  config.update(optimizer='sgd', momentum=0.0, schedule='constant', learning_rate=0.1,
                weight_decay=0.01)
  params, grads = {'kernel': jnp.array([2.0, -4.0])}, {'kernel': jnp.array([0.5, 0.5])}
  tx = build.optimizer(config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], -0.1 * (grads['kernel'] + 0.01 * params['kernel']), rtol=1e-6)
  config.weight_decay = 0.0
  tx = build.optimizer(config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], -0.1 * grads['kernel'], rtol=1e-6)


def _learning_rates(config, steps):
  """The learning rate of each of `steps` updates, read off plain SGD on a gradient of ones."""
  config.update(optimizer='sgd', momentum=0.0, weight_decay=0.0)
  tx = build.optimizer(config, 10)
  params = {'kernel': jnp.zeros(1)}
  opt_state, rates = tx.init(params), []
  for _ in range(steps):
    updates, opt_state = tx.update({'kernel': jnp.ones(1)}, opt_state, params)
    rates.append(-float(updates['kernel'][0]))
  return np.array(rates)


def test_warmup_rises_linearly_then_decays_by_cosine_and_zero_is_off():
  config = default.get_config()
  config.update(schedule='cosine', learning_rate=0.1, num_epochs=4, warmup_epochs=1.0)
  rates = _learning_rates(config, 40)  # 10 warm-up updates, then a 30-update cosine
  np.testing.assert_allclose(rates[:11], 0.1 * np.arange(11) / 10, rtol=1e-5, atol=1e-8)
  cosine = 0.1 * 0.5 * (1 + np.cos(np.pi * np.arange(30) / 30))
  np.testing.assert_allclose(rates[10:], cosine, rtol=1e-5, atol=1e-8)
  config.warmup_epochs = 0.0
  plain = _learning_rates(config, 40)
  np.testing.assert_allclose(plain, 0.1 * 0.5 * (1 + np.cos(np.pi * np.arange(40) / 40)),
                             rtol=1e-5, atol=1e-8)


def test_adamw_decays_weights_apart_from_the_gradient_and_zero_is_adam():
  config = default.get_config()
  config.update(optimizer='adamw', schedule='constant', learning_rate=0.1, weight_decay=0.01)
  params, grads = {'kernel': jnp.array([2.0, -4.0])}, {'kernel': jnp.array([0.5, -3.0])}
  adam = optax.adam(0.1)
  adam_updates, _ = adam.update(grads, adam.init(params), params)
  tx = build.optimizer(config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Decoupled (Loshchilov and Hutter): -lr * wd * w beside Adam's step, not through its moments.
  np.testing.assert_allclose(updates['kernel'], adam_updates['kernel'] - 0.1 * 0.01 * params['kernel'],
                             rtol=1e-6)
  config.weight_decay = 0.0
  tx = build.optimizer(config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], adam_updates['kernel'], rtol=1e-6)


def test_best_config_is_valid_and_builds_its_resnet():
  from configs import best  # pylint: disable=g-import-not-at-top
  config = best.get_config()
  config_check.validate_config(config)
  model = build.model(config)
  state = build.train_state(config, model, 10)
  assert models.count_params(state.params) == 1_083_626


def test_a_whole_run_with_several_steps_per_dispatch(small_config, tmp_path):
  """Through the real loop: clu's periodic actions want every step, and k=4 jumps by 4 (a GPU run
  with steps_per_dispatch=16 used to stop at its second dispatch)."""
  small_config.report_every_steps = 5
  one = train.train_and_evaluate(small_config, str(tmp_path / 'k1'))
  small_config.steps_per_dispatch = 4
  four = train.train_and_evaluate(small_config, str(tmp_path / 'k4'))
  assert four['epochs'] == one['epochs'] == 2
  for a, b in zip(one['history'], four['history']):
    np.testing.assert_allclose(b['validation_loss'], a['validation_loss'], rtol=1e-4)
  np.testing.assert_allclose(four['test_loss'], one['test_loss'], rtol=1e-4)


def test_the_config_check_accepts_exactly_the_defined_optimizers_and_schedules():
  """One list each: a name is valid if and only if state defines it."""
  config = default.get_config()
  for name in state_lib.OPTIMIZERS:
    config.optimizer = name
    config_check.validate_config(config)
    assert build.optimizer(config, 10) is not None
  for name in state_lib.SCHEDULES:
    config.schedule = name
    config_check.validate_config(config)
  config.optimizer = 'lamb'  # an optax optimizer this project does not define
  with pytest.raises(errors.ConfigError, match='config.optimizer'):
    config_check.validate_config(config)


def test_weight_decay_on_is_compared_only_where_a_config_decays():
  """A config.json from before the field (every parameter decayed) is the same recipe where
  nothing decays, and another where something does."""
  old = json.loads(default.get_config().to_json_best_effort())
  del old['weight_decay_on']
  new = json.loads(default.get_config().to_json_best_effort())
  assert config_check.config_differences(old, new) == []
  old['weight_decay'] = new['weight_decay'] = 5e-4
  assert config_check.config_differences(old, new) == ["weight_decay_on: 'all' -> 'kernels'"]


@pytest.mark.slow
def test_stops_mid_epoch_and_at_an_epochs_end_resume_to_the_uninterrupted_run(tmp_path,
                                                                               monkeypatch):
  """One loop over the global step, 8 steps an epoch, 3 a dispatch (steps 3, 6, then the tail's
  single steps 7 and 8): a signal after step 3 (mid-epoch, after a 3-step dispatch), then, resumed,
  after step 8 (exactly an epoch's end, so the next run ends that epoch first), then resumed to
  the end: the uninterrupted run's numbers exactly."""
  import signal  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  config = default.get_config()
  config.update(model='mlp', num_epochs=2, batch_size=64, progress_bar='off',
                steps_per_dispatch=3, data_dir=str(tmp_path / 'unused'))
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  real_dispatch = step_lib.Stepper.dispatch
  for stop_after in (3, 8):
    def dispatch_then_signal(self, i, k, stop_after=stop_after):
      real_dispatch(self, i, k)
      if (self.epoch - 1) * 8 + i + k == stop_after:
        os.kill(os.getpid(), signal.SIGINT)  # the loop's handler notes it; the loop saves, exits
    monkeypatch.setattr(step_lib.Stepper, 'dispatch', dispatch_then_signal)
    with pytest.raises(SystemExit) as e:
      train.train_and_evaluate(config, str(tmp_path / 'stopped'))
    assert e.value.code == 128 + signal.SIGINT
    assert checkpoint.manager(str(tmp_path / 'stopped'), 3).latest_step() == stop_after
  assert not (tmp_path / 'stopped' / 'results.json').exists()
  monkeypatch.setattr(step_lib.Stepper, 'dispatch', real_dispatch)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'stopped'))
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(resumed['history']) == strip(straight['history'])
  for key in ('test_accuracy', 'test_loss', 'final_test_accuracy', 'best_epoch'):
    assert resumed[key] == straight[key], key
