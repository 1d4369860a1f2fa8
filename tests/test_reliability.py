"""What happens when a run is killed, interrupted, fed a bad config, a damaged checkpoint or NaNs."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import default
from fmnist_jax import build
from fmnist_jax import metrics
from fmnist_jax import checkpoint
from fmnist_jax import errors
from fmnist_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Bad configs: each exits non-zero within seconds, before data loading or compiling.

@pytest.mark.parametrize('override,field', [
    ('--config.model=resnet', 'config.model'),
    ('--config.optimizer=rmsprop', 'config.optimizer'),
    ('--config.learning_rate=-0.1', 'config.learning_rate'),
    ('--config.validation_split=train[50%:]', 'config.validation_split'),  # overlaps train[:90%]
    ('--config.train_split=test', 'config.train_split'),
    ('--config.train_split=train[:9O%]', 'config.train_split'),
    ('--config.augment.blur=1.0', 'config.augment'),
    ('--config.batch_size=130', 'config.batch_size'),  # 4 devices below
])
@pytest.mark.slow
def test_bad_config_exits_before_loading_or_compiling(override, field, tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  t0 = time.perf_counter()
  # --config.augment.blur needs a new key, which ml_collections only allows through a file.
  if 'blur' in override:
    cfg = tmp_path / 'blur.py'
    cfg.write_text('from configs import default\n\ndef get_config():\n  c = default.get_config()\n'
                   '  c.augment.blur = 1.0\n  return c\n')
    args = ['--config', str(cfg)]
  else:
    args = ['--config', 'configs/default.py', override]
  out = subprocess.run([sys.executable, '-m', 'fmnist_jax.main', *args, '--workdir',
                        str(tmp_path / 'w'), '--config.data_dir=/nonexistent'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  seconds = time.perf_counter() - t0
  assert out.returncode == 1, out.stderr[-2000:]
  assert f'ERROR: {field}' in out.stderr
  assert 'Traceback' not in out.stderr and 'Compiled' not in out.stderr
  assert not os.path.exists(tmp_path / 'w' / 'config.json')  # nothing written
  assert seconds < 30, seconds  # mostly Python imports


def test_workdir_with_another_config_is_refused_then_allowed(small_config, tmp_path):
  small_config.num_epochs = 1
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(small_config, workdir)
  small_config.learning_rate = 0.01
  small_config.num_epochs = 2
  with pytest.raises(errors.ConfigMismatchError) as e:
    train.train_and_evaluate(small_config, workdir)
  assert 'learning_rate: 0.001 -> 0.01' in str(e.value) and 'num_epochs: 1 -> 2' in str(e.value)
  small_config.progress_bar = 'on'  # not compared: it does not change the numbers.
  results = train.train_and_evaluate(small_config, workdir, allow_config_change=True)
  assert results['epochs'] == 2
  assert json.load(open(os.path.join(workdir, 'config.json')))['learning_rate'] == 0.01


def test_best_checkpoint_survives_later_worse_epochs(tmp_path):
  mngr = checkpoint.manager(str(tmp_path), keep=1)
  progress = checkpoint.Progress()
  for step, accuracy in [(10, 0.80), (20, 0.90), (30, 0.85), (40, 0.70), (45, None)]:
    checkpoint.save(mngr, step, {'x': np.float32(accuracy or 0)}, progress,
                    None if accuracy is None else {'validation_accuracy': accuracy})
  assert sorted(mngr.all_steps()) == [20, 45]  # the best and the latest (mid-epoch, unranked)


def test_best_checkpoint_by_validation_loss_keeps_the_lowest(tmp_path):
  mngr = checkpoint.manager(str(tmp_path / 'loss'), keep=1, selection=metrics.selection('loss'))
  for step, loss in [(10, 0.5), (20, 0.3), (30, 0.4), (40, 0.6)]:
    checkpoint.save(mngr, step, {'x': np.float32(loss)}, checkpoint.Progress(),
                    {'validation_loss': loss})
  assert sorted(mngr.all_steps()) == [20, 40]


def _truncate_arrays(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, 'state', '**', '*'), recursive=True)
           if os.path.isfile(f) and os.path.getsize(f) > 100]
  assert files
  for f in files:
    with open(f, 'r+b') as fh:
      fh.truncate(os.path.getsize(f) // 2)


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(small_config, tmp_path, capsys):
  reference = train.train_and_evaluate(small_config, str(tmp_path / 'ref'))
  workdir = tmp_path / 'w'
  train.train_and_evaluate(small_config, str(workdir))
  _truncate_arrays(workdir / 'checkpoints' / '40')  # epoch 2 of 2 (20 steps an epoch)
  os.remove(workdir / 'results.json')
  again = train.train_and_evaluate(small_config, str(workdir))
  assert 'Checkpoint 40' in capsys.readouterr().out
  assert (workdir / 'corrupt_checkpoints' / '40').is_dir()  # kept for inspection
  assert again['test_accuracy'] == reference['test_accuracy']
  assert again['test_loss'] == reference['test_loss']


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(small_config, tmp_path):
  small_config.num_epochs = 1
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(small_config, workdir)
  small_config.update(num_epochs=2, learning_rate=1e30)  # Adam moves every weight by ~1e30.
  with pytest.raises(FloatingPointError, match=r'at step (2\d|3\d|40) \(step \d+ of epoch 2\)'):
    train.train_and_evaluate(small_config, workdir, allow_config_change=True)
  assert checkpoint.manager(workdir, 3).all_steps() == [20]
  # results.json is still the finished 1-epoch run's; nothing of the failed epoch was written.
  assert json.load(open(os.path.join(workdir, 'results.json')))['epochs'] == 1


def test_checkpoint_of_another_shape_is_refused_and_left_alone(small_config, tmp_path):
  small_config.num_epochs = 1
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(small_config, workdir)
  small_config.update(num_epochs=2, optimizer='sgd')  # another optimizer state
  with pytest.raises(errors.StructureMismatchError, match='new --workdir'):
    train.train_and_evaluate(small_config, workdir, allow_config_change=True)
  assert checkpoint.manager(workdir, 3).all_steps() == [20]
  assert not os.path.exists(os.path.join(workdir, 'corrupt_checkpoints'))


# Kill and interrupt: subprocesses running the README's command on a real slice.

ARGS = ['--config', 'configs/cnn.py', '--config.num_epochs=6', '--config.batch_size=64',
        '--config.train_split=train[:3200]', '--config.validation_split=train[59000:]',
        '--config.test_split=test[:1000]', '--config.progress_bar=off',
        '--config.augment.flip=True']
STEPS_PER_EPOCH = 3200 // 64


def _cmd(workdir, data_dir, extra=()):
  return [sys.executable, '-m', 'fmnist_jax.main', *ARGS, *extra, f'--config.data_dir={data_dir}',
          '--workdir', str(workdir)]


def _run(workdir, data_dir, extra=()):
  out = subprocess.run(_cmd(workdir, data_dir, extra), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.load(open(os.path.join(workdir, 'results.json')))


def _start_and_signal(workdir, data_dir, sig, extra=()):
  """Starts a run and sends `sig` once its first epoch checkpoint exists."""
  proc = subprocess.Popen(_cmd(workdir, data_dir, extra), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  first = os.path.join(workdir, 'checkpoints', str(STEPS_PER_EPOCH))
  deadline = time.time() + 300
  while not os.path.isdir(first) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  time.sleep(0.3)  # well into the next epoch
  assert proc.poll() is None, 'the run ended before it could be interrupted'
  proc.send_signal(sig)
  stdout, stderr = proc.communicate(timeout=300)
  return proc.returncode, stdout, stderr


def _final_variables(workdir, num_seeds=1):
  config = default.get_config()
  config.update(model='cnn', num_seeds=num_seeds)
  model = build.model(config)
  mngr = checkpoint.manager(str(workdir), 3)
  item, _ = checkpoint.restore(mngr, mngr.latest_step(), build.checkpoint_item(config, model, 1))
  return jax.tree_util.tree_leaves((item['state'].params, item['state'].opt_state, item['best']))


def _assert_same_run(a, b, workdir_a, workdir_b, num_seeds=1):
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(a['history']) == strip(b['history'])
  for key in ('test_accuracy', 'test_loss', 'validation_accuracy', 'best_epoch'):
    assert a[key] == b[key], key
  for x, y in zip(_final_variables(workdir_a, num_seeds), _final_variables(workdir_b, num_seeds)):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  return workdir, _run(workdir, data_dir)


def test_sigkill_then_rerun_gives_the_uninterrupted_results(uninterrupted, data_dir, tmp_path):
  workdir = tmp_path / 'killed'
  code, _, _ = _start_and_signal(str(workdir), data_dir, signal.SIGKILL)
  assert code == -signal.SIGKILL
  assert not os.path.exists(workdir / 'results.json')
  resumed = _run(workdir, data_dir)
  _assert_same_run(resumed, uninterrupted[1], workdir, uninterrupted[0])


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_the_current_step_and_resumes_identically(uninterrupted, data_dir,
                                                                  tmp_path, sig):
  workdir = tmp_path / 'interrupted'
  code, stdout, _ = _start_and_signal(str(workdir), data_dir, sig)
  assert code == 128 + sig, stdout[-2000:]
  assert 'Stopped by signal' in stdout
  # The message names the step it stopped at, and that step's checkpoint exists.
  step, epoch = map(int, re.search(r'at step (\d+) of epoch (\d+)', stdout).groups())
  saved = (epoch - 1) * STEPS_PER_EPOCH + step
  assert saved in checkpoint.manager(str(workdir), 3).all_steps()
  assert f'saved the checkpoint at step {saved}' in stdout
  resumed = _run(workdir, data_dir)
  _assert_same_run(resumed, uninterrupted[1], workdir, uninterrupted[0])


@pytest.mark.slow
def test_interrupted_two_seed_run_resumes_identically(data_dir, tmp_path):
  """On a CPU each seed's step is its own call; the signal's save joins them back (seed axis)."""
  two = ('--config.num_seeds=2',)
  straight = _run(tmp_path / 'straight', data_dir, two)
  code, stdout, _ = _start_and_signal(str(tmp_path / 'interrupted'), data_dir, signal.SIGINT, two)
  assert code == 128 + signal.SIGINT, stdout[-2000:]
  resumed = _run(tmp_path / 'interrupted', data_dir, two)
  assert len(resumed['per_seed']) == 2
  _assert_same_run(resumed, straight, tmp_path / 'interrupted', tmp_path / 'straight', num_seeds=2)


# Resume safety: a refused resume and a reader never touch a run's checkpoints.

def _digest(folder) -> dict[str, str]:
  """Every file under `folder`, by its path, with its bytes' hash (an exact picture of it)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(os.path.join(folder, '**', '*'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.mark.slow
def test_num_seeds_change_is_refused_and_the_checkpoint_left_byte_identical(data_dir, tmp_path):
  workdir = tmp_path / 'w'
  _run(workdir, data_dir, ['--config.num_epochs=1'])
  checkpoints, config_json = _digest(workdir / 'checkpoints'), (workdir / 'config.json').read_bytes()
  out = subprocess.run(_cmd(workdir, data_dir, ['--config.num_epochs=2', '--config.num_seeds=2',
                                                '--allow_config_change']),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 1, out.stderr[-3000:]
  errors_ = [line for line in out.stderr.splitlines() if line.startswith('ERROR')]
  assert len(errors_) == 1 and 'Traceback' not in out.stderr
  assert 'num_seeds: 1 -> 2' in errors_[0] and 'left untouched' in errors_[0]
  assert _digest(workdir / 'checkpoints') == checkpoints
  assert (workdir / 'config.json').read_bytes() == config_json
  assert not (workdir / 'corrupt_checkpoints').exists()


@pytest.mark.slow
def test_evaluate_racing_a_training_that_deletes_old_checkpoints_moves_nothing(data_dir, tmp_path):
  """keep_checkpoints=1: every epoch the training deletes the one before, while evaluate reads."""
  workdir = tmp_path / 'w'
  cmd = [sys.executable, '-m', 'fmnist_jax.main', '--config', 'configs/mlp.py',
         '--config.num_epochs=60', '--config.keep_checkpoints=1', '--config.batch_size=100',
         '--config.train_split=train[:1000]', '--config.validation_split=train[59000:]',
         '--config.test_split=test[:500]', '--config.progress_bar=off',
         f'--config.data_dir={data_dir}', '--workdir', str(workdir)]
  training = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
  try:
    deadline = time.time() + 300
    while not glob.glob(str(workdir / 'checkpoints' / '[0-9]*')) and time.time() < deadline:
      time.sleep(0.05)
    reads = 0
    while training.poll() is None and reads < 200:  # in-process: evaluate's own reading code
      try:
        build.load_best(str(workdir))
        reads += 1
      except errors.WorkdirError:  # no complete checkpoint at this instant is not damage
        pass
    evaluate = subprocess.run([sys.executable, '-m', 'fmnist_jax.evaluate', '--workdir',
                               str(workdir)], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  finally:
    stdout, stderr = training.communicate(timeout=600)
  assert training.returncode == 0, stderr[-3000:]
  assert reads > 10
  assert 'cannot be read' not in stdout + stderr
  assert not (workdir / 'corrupt_checkpoints').exists()
  assert json.load(open(workdir / 'results.json'))['epochs'] == 60


def test_a_batch_size_change_on_resume_keeps_checkpoints_in_order(tmp_path, monkeypatch):
  """Checkpoints are keyed by optimizer steps taken, which only grow: at batch 64 then 128, epoch
  2 would otherwise be keyed 2 x 4 = 8, epoch 1's own key, and replace it."""
  from fmnist_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from tests.test_train import _synthetic_data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)  # 512 training images
  config = default.get_config()
  config.update(model='mlp', num_epochs=1, batch_size=64, progress_bar='off',
                data_dir=str(tmp_path / 'unused'))
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(config, workdir)
  config.update(num_epochs=3, batch_size=128)
  results = train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert results['epochs'] == 3
  assert checkpoint.manager(workdir, 3).all_steps() == [8, 12, 16]  # 8 steps, then 4 an epoch


# Faults of the machine and of files (issue 27): real processes, real files.

MLP = ['--config', 'configs/mlp.py', '--config.num_epochs=3', '--config.train_split=train[:1000]',
       '--config.validation_split=train[59000:]', '--config.test_split=test[:500]',
       '--config.progress_bar=off']


def _command(args, data_dir=None):
  extra = [f'--config.data_dir={data_dir}'] if data_dir else []
  return subprocess.run([sys.executable, '-m', *args, *extra], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def _one_line_or_none(out, name=None):
  """No traceback; at most one ERROR line, naming `name` when the command failed."""
  text = out.stdout + out.stderr
  assert 'Traceback' not in text, text[-3000:]
  errors_ = [line for line in out.stderr.splitlines() if line.startswith('ERROR')]
  assert len(errors_) == (out.returncode != 0), text[-3000:]
  if errors_ and name:
    assert name in errors_[0], errors_[0]


@pytest.fixture(scope='module')
def mlp_reference(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp('mlp_reference') / 'w'
  out = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, json.load(open(workdir / 'results.json'))


@pytest.fixture
def small_tmpfs(tmp_path):
  """A 6 MB file system: room for one checkpoint of the MLP (about 4 MB), not two."""
  mount = tmp_path / 'fs'
  mount.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=6M', 'tmpfs',
                                          str(mount)], capture_output=True).returncode:
    pytest.skip('mounting a small tmpfs needs root (CI runs as root)')
  yield mount
  subprocess.run(['umount', '-l', str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_then_resume_with_space(small_tmpfs, mlp_reference,
                                                              data_dir):
  workdir = small_tmpfs / 'w'
  full = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
  assert full.returncode == 1
  _one_line_or_none(full, 'No space left on the device of')
  assert 'checkpoint 14' in full.stderr and 'MB' in full.stderr
  steps = checkpoint.manager(str(workdir), 3).all_steps()
  assert steps == [7]  # epoch 1's checkpoint, whole; nothing of the failed one left
  assert not glob.glob(str(workdir / 'checkpoints' / '*tmp*'))
  assert not (workdir / 'results.json').exists()
  subprocess.run(['mount', '-o', 'remount,size=64M', str(small_tmpfs)], check=True)
  resumed = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  results, reference = json.load(open(workdir / 'results.json')), mlp_reference[1]
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(results['history']) == strip(reference['history'])
  for key in ('test_accuracy', 'test_loss', 'final_test_accuracy', 'best_epoch'):
    assert results[key] == reference[key], key


# Each JSON file of a workdir, cut off (truncate) and replaced by other valid JSON (alter).
DAMAGED = ['config.json', 'results.json', 'checkpoints/21/meta/metadata',
           'checkpoints/21/_CHECKPOINT_METADATA', 'checkpoints/21/state/_METADATA']


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['truncate', 'alter'])
@pytest.mark.parametrize('name', DAMAGED)
def test_damaged_workdir_file_is_named_or_repaired_by_main_evaluate_and_predict(
    name, damage, mlp_reference, data_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'w'
  shutil.copytree(mlp_reference[0], workdir)
  path = workdir / name
  if damage == 'truncate':
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  else:
    path.write_text('{"edited": true}')  # valid JSON, not what was written
  image = tmp_path / 'shirt.png'
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
  culprit = 'Checkpoint 21' if name.startswith('checkpoints/') else name
  main = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
  _one_line_or_none(main, culprit)
  if main.returncode == 0:  # repaired or not needed: the finished run's own numbers
    results = json.load(open(workdir / 'results.json'))
    assert results['test_accuracy'] == mlp_reference[1]['test_accuracy']
    if name in ('config.json', 'results.json'):
      assert 'damaged' in main.stdout and json.loads((workdir / name).read_text())
  for command in (['fmnist_jax.evaluate', '--workdir', str(workdir)],
                  ['fmnist_jax.predict', '--workdir', str(workdir), str(image)]):
    out = _command(command)
    _one_line_or_none(out, culprit)
  assert not (workdir / 'corrupt_checkpoints').exists()  # main had no cause to read checkpoint 21
  if name.startswith('checkpoints/'):
    # An unfinished run: main resumes, sets an unreadable checkpoint aside and ends as the
    # uninterrupted run did.
    os.remove(workdir / 'results.json')
    resumed = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
    _one_line_or_none(resumed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.load(open(workdir / 'results.json'))
    for key in ('test_accuracy', 'test_loss', 'final_test_accuracy', 'best_epoch'):
      assert results[key] == mlp_reference[1][key], key


def _kill_when(proc, ready, timeout=300):
  deadline = time.time() + timeout
  while not ready() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.01)
  assert proc.poll() is None, 'the run ended before the moment to kill it'
  proc.kill()
  proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize('source,preparing', [
    ('tfds', '*/*incomplete*'),  # tfds writes the split files into a temporary folder
    ('archives', 'fashion_mnist_archives/*.tmp'),  # each archive copy under a name of its own
])
def test_kill_during_the_first_data_preparation_then_rerun(tmp_path, data_dir, source, preparing):
  """A fresh data_dir: killed while it is being prepared, the rerun prepares it whole."""
  fresh = tmp_path / 'data'
  args = ['fmnist_jax.main', *MLP, '--config.num_epochs=1', '--workdir', str(tmp_path / 'w'),
          f'--config.data_dir={fresh}', f'--config.data_source={source}']
  proc = subprocess.Popen([sys.executable, '-m', *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  _kill_when(proc, lambda: glob.glob(str(fresh / preparing)))
  out = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / 'w' / 'results.json').exists()
  config = default.get_config()
  config.update(data_dir=str(fresh), train_split='train', validation_split='test[:1]',
                test_split='test', data_source=source)
  data = build.data(config, which=('train', 'test'))
  assert len(data['train']['label']) == 60_000 and len(data['test']['label']) == 10_000


REPORT_FILES = ('classification_report.json', 'classification_report.md', 'confusion_matrix.json',
                'confusion_matrix.png', 'curves.png', 'samples.png', 'misclassified.png',
                'test_predictions.csv', 'results.json')


@pytest.mark.slow
def test_kill_while_the_final_report_is_written_then_rerun(mlp_reference, data_dir, tmp_path):
  workdir = tmp_path / 'w'
  proc = subprocess.Popen([sys.executable, '-m', 'fmnist_jax.main', *MLP, '--workdir',
                           str(workdir), f'--config.data_dir={data_dir}'], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  _kill_when(proc, lambda: (workdir / 'test_predictions.csv').exists()
             or (workdir / 'classification_report.json').exists())
  assert not (workdir / 'results.json').exists()
  rerun = _command(['fmnist_jax.main', *MLP, '--workdir', str(workdir)], data_dir)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  for name in REPORT_FILES:
    assert (workdir / name).stat().st_size > 0, name
  results = json.load(open(workdir / 'results.json'))
  for key in ('test_accuracy', 'test_loss', 'final_test_accuracy', 'best_epoch'):
    assert results[key] == mlp_reference[1][key], key


OLD_WORKDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                           'workdir_before_loop_rewrite')


@pytest.mark.slow  # the real data set
def test_a_workdir_stopped_by_the_code_before_the_loop_rewrite_resumes_to_the_same_numbers(
    data_dir, tmp_path):
  """tests/data/workdir_before_loop_rewrite: an mlp run (16 hidden units, flips and shifts, 640
  images, 2 epochs) stopped by a signal one step into its second epoch by the code of commit
  14b2194, before the training loop was rewritten. Today's code resumes it to exactly the numbers
  of an uninterrupted run of today's code: the checkpoint's layout, meta and config still read."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.update(model='mlp', data_dir=data_dir, train_split='train[:640]',
                validation_split='train[59000:59200]', test_split='test[:200]', num_epochs=2,
                batch_size=64, progress_bar='off')
  config.model_args = ml_collections.ConfigDict({'hidden': (16,)})
  config.augment.update(flip=True, shift=0.1)
  shutil.copytree(OLD_WORKDIR, tmp_path / 'old')
  assert len(json.load(open(tmp_path / 'old' / 'checkpoints' / '11' / 'meta' / 'metadata'))[
      'history']) == 1  # stopped after step 11: one step into epoch 2
  resumed = train.train_and_evaluate(config, str(tmp_path / 'old'))
  straight = train.train_and_evaluate(config, str(tmp_path / 'new'))
  strip = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k} for e in h]
  assert strip(resumed['history']) == strip(straight['history'])
  for key in ('test_accuracy', 'test_loss', 'final_test_accuracy', 'final_test_loss', 'best_epoch'):
    assert resumed[key] == straight[key], key
