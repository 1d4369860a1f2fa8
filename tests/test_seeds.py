"""Several seeds trained together against the same seeds trained alone.

On a CPU each seed's step is one seed's compiled program, called for each seed in turn, so each
seed's numbers must equal its standalone run's exactly; vmapped (accelerators), up to float rounding.
"""
import json

import jax
import numpy as np
import pytest

from fmnist_jax import build
from fmnist_jax import config_check
from fmnist_jax import parallel
from fmnist_jax import seeds
from fmnist_jax import train


@pytest.mark.parametrize('model', ['mlp', 'cnn'])
def test_seeds_together_match_standalone_runs(small_config, tmp_path, model):
  small_config.model = model
  small_config.test_split = 'test[:2000]'  # one image is 0.0005 of accuracy.
  small_config.augment.flip = True  # each seed's own augmentation stream too.
  small_config.augment.shift = 0.1
  small_config.seed = 3
  small_config.num_seeds = 2
  together = train.train_and_evaluate(small_config, str(tmp_path / 'together'))
  assert together['seed'] == [3, 4] and len(together['per_seed']) == 2
  accuracies = [r['test_accuracy'] for r in together['per_seed']]
  assert together['test_accuracy'] == pytest.approx(np.mean(accuracies))
  assert together['test_accuracy_std'] == pytest.approx(np.std(accuracies, ddof=1))
  assert len(set(accuracies)) > 1 or len({r['test_loss'] for r in together['per_seed']}) > 1
  for k, seed in enumerate([3, 4]):
    small_config.seed, small_config.num_seeds = seed, 1
    alone = train.train_and_evaluate(small_config, str(tmp_path / f'alone_{seed}'))
    mine = together['per_seed'][k]
    assert mine['seed'] == alone['seed'] == seed
    assert abs(mine['test_accuracy'] - alone['test_accuracy']) <= 0.001
    assert abs(mine['test_loss'] - alone['test_loss']) <= 1e-3
    if jax.default_backend() == 'cpu':
      assert (mine['test_loss'], mine['test_accuracy']) == (alone['test_loss'],
                                                          alone['test_accuracy'])
    assert mine['best_epoch'] == alone['best_epoch']
    for entry, own in zip(together['history'], alone['history']):
      assert entry['per_seed']['train_loss'][k] == pytest.approx(own['train_loss'], abs=1e-3)
    # Each seed's report lands in its own folder, and load_best picks that seed's variables.
    report = json.load(open(tmp_path / 'together' / f'seed_{seed}' / 'classification_report.json'))
    assert report['accuracy'] == mine['test_accuracy']
    *_, history, best = build.load_best(str(tmp_path / 'together'), seed_index=k)
    assert best == mine['best_epoch'] and len(history) == small_config.num_epochs


def test_batchnorm_seeds_together_take_the_standalone_steps(small_config, tmp_path):
  """BatchNorm: each seed's training losses equal its standalone run's.

  (Not its test accuracy: after 40 steps the running statistics are still far from the data's,
  and evaluation with them turns float rounding into percent-level changes.)
  """
  small_config.update(model='bn_cnn', seed=7, num_seeds=2, num_epochs=1)
  together = train.train_and_evaluate(small_config, str(tmp_path / 'together'))
  small_config.update(seed=8, num_seeds=1)
  alone = train.train_and_evaluate(small_config, str(tmp_path / 'alone'))
  seed_8 = together['history'][0]['per_seed']['train_loss'][1]
  assert seed_8 == pytest.approx(alone['history'][0]['train_loss'], abs=1e-4)
  if jax.default_backend() == 'cpu':
    assert seed_8 == alone['history'][0]['train_loss']
    assert together['per_seed'][1]['test_loss'] == alone['test_loss']
  assert together['history'][0]['per_seed']['train_loss'][0] != pytest.approx(seed_8, abs=1e-3)


def test_num_seeds_must_be_a_positive_integer():
  from configs import default
  config = default.get_config()
  config.num_seeds = 0
  with pytest.raises(ValueError, match='config.num_seeds=0'):
    config_check.validate_config(config)


def test_split_seeds_then_join_seeds_gives_the_stacked_tree_back():
  tree = {'w': np.arange(12.0).reshape(3, 4), 'step': np.array([5, 6, 7])}
  groups = [slice(k, k + 1) for k in range(3)]
  parts = seeds.split(tree, groups)
  assert [int(p['step'][0]) for p in parts] == [5, 6, 7]
  assert parts[1]['w'].shape == (1, 4)
  joined = seeds.join(parts)
  np.testing.assert_array_equal(joined['w'], tree['w'])
  np.testing.assert_array_equal(joined['step'], tree['step'])
  assert seeds.split(tree, [slice(0, 3)]) == [tree]  # one group: no copies
  if jax.default_backend() == 'cpu':
    assert seeds.groups(3, parallel.create_mesh(jax.devices()[:1])) == groups
