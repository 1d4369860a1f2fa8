"""A person's mistakes end in one ERROR line; a damaged data set is caught; one run per workdir."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from configs import default
from fmnist_jax import build
from fmnist_jax import errors
from fmnist_jax import input_pipeline

pytestmark = pytest.mark.slow  # subprocesses, real data or Keras models: the full tier only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kwargs):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, **kwargs)


def _broken_config(tmp_path):
  path = tmp_path / 'broken.py'
  path.write_text('from configs import default\n\n\ndef get_config():\n  c = default.get_config()\n'
                  '  c.num_epochs = 10 +\n  return c\n')
  return str(path)


# (command line, text the one ERROR line must contain). {tmp} is a fresh folder, {file} a file.
MISTAKES = [
    (['-m', 'fmnist_jax.main', '--config', 'configs/nope.py', '--workdir', '{tmp}/w'],
     "config file 'configs/nope.py' does not exist"),
    (['-m', 'fmnist_jax.main', '--config', '{broken}', '--workdir', '{tmp}/w'],
     'fails to load: SyntaxError: invalid syntax (broken.py, line 6)'),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', '{tmp}/w',
      '--config.augment.flp=True'], "no field 'augment.flp'. Did you mean 'augment.flip'?"),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', '{tmp}/w',
      '--config.batch_size=abc'], '--config.batch_size=abc'),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--wrkdir', '{tmp}/w'],
     "Unknown command line flag 'wrkdir'"),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', '{file}'],
     "--workdir '{file}' is a file"),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', '{tmp}/w',
      '--config.data_dir={file}'], "config.data_dir='{file}' is invalid; it is a file"),
    (['-m', 'fmnist_jax.main', '--config', 'configs/cnn.py', '--workdir', '{tmp}/w', 'extra'],
     "unexpected arguments ['extra']"),
    (['-m', 'fmnist_jax.evaluate', '--workdir', '{tmp}/never_trained'],
     "--workdir '{tmp}/never_trained' is not a directory"),
    (['-m', 'fmnist_jax.evaluate', '--workdir', '{tmp}'], 'holds no training run'),
    (['-m', 'fmnist_jax.predict', '--workdir', '{tmp}'], 'no image files given'),
    (['-m', 'fmnist_jax.benchmark', '--models=cnn,resnet'], "unknown model(s) ['resnet']"),
    (['-m', 'fmnist_jax.benchmark', '--models=mlp', '--output={tmp}/no/such/dir/b.json'],
     'is not a writable directory'),
    (['-m', 'experiments.compare_architectures', '--config.batchsize=64', '--workdir', '{tmp}/w'],
     "no field 'batchsize'. Did you mean 'batch_size'?"),
    (['-m', 'experiments.sweep', '--grid', 'learning_rate', '--workdir', '{tmp}/w'],
     "--grid item 'learning_rate' is not of the form"),
    (['-m', 'experiments.reproduce_tables', '--configs', 'configs/cnn.py', '--workdir', '{tmp}/w'],
     'no config.report block'),
    (['-m', 'experiments.reproduce_tables', '--seeds', '3'], 'unrecognized arguments: --seeds'),
]


@pytest.mark.parametrize('args,culprit', MISTAKES, ids=[
    'missing-config', 'broken-config', 'misspelt-field', 'wrong-type', 'unknown-flag',
    'workdir-is-file', 'data-dir-is-file', 'stray-argument', 'evaluate-no-dir',
    'evaluate-no-run', 'predict-no-files', 'benchmark-model', 'benchmark-output', 'compare-set',
    'sweep-grid', 'reproduce-not-report', 'reproduce-flag'])
def test_command_line_mistake_is_one_error_line(args, culprit, tmp_path):
  file = tmp_path / 'a_file'
  file.write_text('not a folder')
  fill = lambda s: s.format(tmp=tmp_path, file=file, broken=_broken_config(tmp_path))
  t0 = time.perf_counter()
  out = _run([fill(a) for a in args])
  seconds = time.perf_counter() - t0
  assert out.returncode != 0
  error_lines = [line for line in out.stderr.splitlines() if line.startswith('ERROR:')]
  assert len(error_lines) == 1, out.stderr[-3000:]
  assert fill(culprit) in error_lines[0], error_lines[0]
  assert 'Traceback' not in out.stderr + out.stdout
  assert not os.path.exists(tmp_path / 'w' / 'config.json')  # nothing trained or written
  assert seconds < 60, seconds  # Python imports only: no data loaded, nothing compiled


# A damaged prepared data set.

def _copy_prepared(data_dir, tmp_path):
  """A private copy of the prepared data set (the shared one must stay intact)."""
  src = os.path.join(os.path.expanduser(data_dir), input_pipeline.DATASET)
  dst = tmp_path / 'tfds'
  shutil.copytree(src, dst / input_pipeline.DATASET)
  version = os.listdir(dst / input_pipeline.DATASET)[0]
  return str(dst), dst / input_pipeline.DATASET / version


def _records(data: bytes):
  """Offsets where each TFRecord ends (8-byte length, 4-byte CRC, data, 4-byte CRC)."""
  ends, at = [], 0
  while at < len(data):
    at += 16 + int.from_bytes(data[at:at + 8], 'little')
    ends.append(at)
  return ends


def _damage(path, how):
  data = bytearray(path.read_bytes())
  if how == 'truncated':
    data = data[:len(data) // 2]
  elif how == 'altered':
    data[len(data) // 3] ^= 0x01  # one bit of one image
  elif how == 'records_missing':  # cut cleanly after a record: readable, but short
    data = data[:_records(bytes(data))[-101]]
  path.write_bytes(bytes(data))


@pytest.mark.parametrize('how', ['truncated', 'altered', 'records_missing'])
def test_damaged_prepared_file_is_detected(builder, data_dir, tmp_path, how):
  del builder  # the shared prepared copy must exist before it is copied
  copy, version_dir = _copy_prepared(data_dir, tmp_path)
  _damage(next(version_dir.glob('*-test.tfrecord*')), how)
  damaged = input_pipeline.prepare(copy)
  with pytest.raises(errors.DataDamagedError, match=r"split 'test'") as e:
    input_pipeline.load_split(damaged, 'test')
  if how == 'records_missing':
    assert 'expected to contain 10000 elements but contained only 9900' in str(e.value)
  else:
    assert ('truncated record' if how == 'truncated' else 'corrupted record') in str(e.value)
  # Slices of the undamaged train file still load.
  assert len(input_pipeline.load_split(damaged, 'train[:100]')['label']) == 100


def test_damaged_data_set_is_set_aside_and_prepared_again(builder, data_dir, tmp_path, capsys,
                                                          monkeypatch):
  del builder  # the shared prepared copy must exist before it is copied
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  copy, version_dir = _copy_prepared(data_dir, tmp_path)
  _damage(next(version_dir.glob('*-test.tfrecord*')), 'truncated')
  config = default.get_config()
  config.update(data_dir=copy, test_split='test', data_source='tfds')  # tfds' prepared copy
  data = build.data(config, which=('test',))
  assert len(data['test']['label']) == 10_000  # whole, never a partial split
  out = capsys.readouterr().out
  assert f'WARNING: the prepared Fashion-MNIST in {version_dir} is damaged' in out
  aside = [p for p in version_dir.parent.iterdir() if '.damaged-' in p.name]
  assert len(aside) == 1 and version_dir.is_dir()
  # The fresh copy holds the same images as the shared, intact one.
  intact = input_pipeline.load_split(input_pipeline.prepare(data_dir), 'test', official_order=True)
  assert (data['test']['image'] == intact['image']).all()


# One training process per workdir.

LONG_RUN = ['--config', 'configs/cnn.py', '--config.num_epochs=200', '--config.batch_size=64',
            '--config.train_split=train[:6400]', '--config.validation_split=train[59000:]',
            '--config.test_split=test[:1000]', '--config.progress_bar=off',
            '--config.keep_checkpoints=2']


def test_busy_workdir_refused_with_pid_and_free_again_after_sigkill(data_dir, tmp_path):
  workdir = tmp_path / 'busy'
  cmd = [sys.executable, '-m', 'fmnist_jax.main', *LONG_RUN, f'--config.data_dir={data_dir}',
         '--workdir', str(workdir)]
  first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  try:
    deadline = time.time() + 300
    while not (workdir / 'checkpoints').is_dir() or not any(
        d.isdigit() for d in os.listdir(workdir / 'checkpoints')):
      assert first.poll() is None and time.time() < deadline, 'the first run did not start'
      time.sleep(0.1)
    second = _run(cmd[1:])
    assert second.returncode == 1
    (line,) = [l for l in second.stderr.splitlines() if l.startswith('ERROR:')]
    assert f'in use by another training process (PID {first.pid})' in line and str(workdir) in line
    assert 'Traceback' not in second.stderr
    # Reading a workdir that is training is allowed.
    evaluated = _run(['-m', 'fmnist_jax.evaluate', '--workdir', str(workdir)])
    assert evaluated.returncode == 0 and 'test accuracy' in evaluated.stdout, evaluated.stderr
    assert first.poll() is None, 'the first run ended before it could be killed'
  finally:
    first.kill()
    first.communicate()
  assert first.returncode == -signal.SIGKILL
  done = max(int(d) for d in os.listdir(workdir / 'checkpoints') if d.isdigit())
  # The kernel dropped the lock with the process: a new run starts and resumes from the checkpoint.
  resumed = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  try:
    deadline = time.time() + 300
    while not any(int(d) > done for d in os.listdir(workdir / 'checkpoints') if d.isdigit()):
      assert resumed.poll() is None and time.time() < deadline, resumed.stderr.read()[-3000:]
      time.sleep(0.1)
  finally:
    resumed.send_signal(signal.SIGINT)  # saves and exits
    _, stderr = resumed.communicate(timeout=300)
  log = (workdir / 'log.txt').read_text()  # absl's lines go to the workdir's log
  assert re.search(rf'Resumed from the checkpoint at step {done}\b', log), stderr[-3000:]
  assert resumed.returncode == 128 + signal.SIGINT


def test_damaged_kept_archive_copy_is_made_again(tmp_path):
  """The TensorFlow-free path checks its kept archive copies' sha256 on every load."""
  archives = default.get_config().archives_dir
  first = input_pipeline.load_split_from_archives(str(tmp_path), archives, 'test')
  kept = tmp_path / 'fashion_mnist_archives' / 't10k-images-idx3-ubyte.gz'
  data = bytearray(kept.read_bytes())
  data[len(data) // 2] ^= 0x01
  kept.write_bytes(bytes(data))
  again = input_pipeline.load_split_from_archives(str(tmp_path), archives, 'test')
  assert len(again['label']) == 10_000
  assert (again['image'] == first['image']).all()
