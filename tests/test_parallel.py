"""Data parallelism on 4 simulated CPU devices: the batch is split, the metrics match 1 device."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = r'''
import json, sys
sys.path.insert(0, {root!r})
import jax, numpy as np
from configs import default
from fmnist_jax import parallel, train
config = default.get_config()
config.update(model='bn_cnn', data_dir={data_dir!r}, train_split='train[:1280]',
              validation_split='train[59000:]', test_split='test[:1000]', num_epochs=2,
              progress_bar='off', schedule='constant')
config.augment.flip = True
config.augment.shift = 0.1
out = {{'devices': jax.device_count()}}
if jax.device_count() > 1:
  mesh = parallel.create_mesh()
  images, labels = parallel.replicate((np.zeros((512, 28, 28, 1), np.uint8),
                                       np.arange(512, dtype=np.int32)), mesh)
  perm = parallel.replicate(np.arange(512, dtype=np.int32), mesh)
  x, y = jax.jit(lambda a, b, p: train.gather_batch(a, b, p, 1, 128, mesh))(images, labels, perm)
  out['x_shards'] = sorted(tuple(s.data.shape) for s in x.addressable_shards)
  out['y_devices'] = len({{s.device for s in y.addressable_shards}})
  out['y_first'] = [int(s.data[0]) for s in sorted(y.addressable_shards, key=lambda s: s.index[0].start)]
results = train.train_and_evaluate(config, {workdir!r})
out.update({{k: results[k] for k in ('test_accuracy', 'test_loss', 'validation_loss',
                                      'validation_accuracy')}})
out['train_loss'] = [h['train_loss'] for h in results['history']]
print('RESULT' + json.dumps(out))
'''


def _run(devices, data_dir, workdir):
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env['JAX_PLATFORMS'] = 'cpu'
  code = RUN.format(root=ROOT, data_dir=data_dir, workdir=str(workdir))
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith('RESULT')][-1]
  return json.loads(line[len('RESULT'):])


def test_four_devices_split_the_batch_and_match_one(data_dir, tmp_path):
  one = _run(1, data_dir, tmp_path / 'one')
  four = _run(4, data_dir, tmp_path / 'four')
  print(one, four)
  assert one['devices'] == 1 and four['devices'] == 4
  assert four['x_shards'] == [[32, 28, 28, 1]] * 4  # 128 images split 4 ways, not replicated
  assert four['y_devices'] == 4 and four['y_first'] == [128, 160, 192, 224]
  for key in ('test_loss', 'validation_loss'):
    assert four[key] == pytest.approx(one[key], rel=1e-4), key
  assert four['train_loss'] == pytest.approx(one['train_loss'], rel=1e-4)
  for key in ('test_accuracy', 'validation_accuracy'):
    assert four[key] == pytest.approx(one[key], abs=2e-3), key
