"""Runs as Ray tasks (experiments/lib/distribute.py) on a real local Ray instance, no mocks.

Every test that starts Ray runs its driver in a network namespace of its own with only the
loopback interface up (`unshare -n`, root), so no Ray traffic can reach any address but
127.0.0.1. Where namespaces cannot be made (not root), the tests are skipped, never run outside.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from experiments.lib import distribute

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _namespace_works() -> bool:
  try:
    return subprocess.run(['unshare', '-n', 'sh', '-c', 'ip link set lo up'],
                          capture_output=True, timeout=30, check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


# CI runs as root: there a missing namespace is a failure, not a silently skipped Ray test.
if os.environ.get('CI') and not _namespace_works():
  raise RuntimeError('CI: `unshare -n` and `ip link set lo up` must work (root, iproute2) for '
                     'the Ray tests')
needs_namespace = pytest.mark.skipif(not _namespace_works(),
                                     reason='needs `unshare -n` (root) for a loopback-only Ray')


def in_loopback_namespace(script: str, timeout: int = 900) -> dict:
  """Runs a Python driver script in a fresh loopback-only network namespace; its JSON output.

  The script runs as `python -c` from the repository root, so `experiments` and `configs` import
  as they do for `python -m experiments.<script>` there."""
  proc = subprocess.run(
      ['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', sys.executable,
       '-c', textwrap.dedent(script)], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
      check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


DRIVER_HEAD = '''
import json, os, signal, sys, threading, time, argparse
from experiments.lib import distribute, runs
from configs import default
config = default.get_config()
config.update(model='cnn', data_dir={data_dir!r}, train_split='train[:2000]',
              validation_split='train[59000:]', test_split='test[:1000]', num_epochs=3,
              batch_size=100, progress_bar='off')
args = argparse.Namespace(workers=1, address=None, cores_per_run=1, gpus_per_run=0.25)
TIMING = ('train_seconds', 'seconds', 'train_images_per_second', 'compile_seconds', 'provenance',
          'devices', 'device_kinds', 'epoch_seconds')
def strip(tree):
  if isinstance(tree, dict):
    return {{k: strip(v) for k, v in tree.items() if k not in TIMING}}
  if isinstance(tree, list):
    return [strip(v) for v in tree]
  return tree
'''


@needs_namespace
def test_a_worker_killed_mid_run_is_retried_and_resumes_to_the_same_numbers(data_dir, tmp_path):
  """SIGKILL the worker after its first epoch's checkpoint: Ray runs the task again, the run
  resumes from that checkpoint, and its results equal an uninterrupted run's."""
  out = in_loopback_namespace(DRIVER_HEAD.format(data_dir=data_dir) + f'''
killed = []
def killer(workdir):
  ckpt = os.path.join(workdir, 'checkpoints')
  while not (os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):
    time.sleep(0.2)
  time.sleep(1.0)  # into the second epoch
  pid = int(open(os.path.join(workdir, '.lock')).read())
  os.kill(pid, signal.SIGKILL)
  killed.append(pid)
  killed.append(runs.checkpoint_history(workdir)[0])  # epoch 1 as saved, with its timings
with distribute.Runner(args) as runner:
  whole = runner.run([(config, {str(tmp_path / 'whole')!r})])[0]
  threading.Thread(target=killer, args=({str(tmp_path / 'killed')!r},), daemon=True).start()
  resumed = runner.run([(config, {str(tmp_path / 'killed')!r})])[0]
print(json.dumps({{'killed': killed, 'whole': strip(whole), 'resumed': strip(resumed),
                  'first_epoch': resumed['history'][0],
                  'cores': [r['provenance']['cpu_cores'] for r in (whole, resumed)]}}))
''')
  assert out['killed'], 'the worker was not killed'
  assert out['cores'] == [1, 1]  # each run pinned to its one core
  assert out['resumed']['epochs'] == 3
  assert out['resumed'] == out['whole']
  # The retry resumed: epoch 1 is the one the killed worker saved, down to its wall time.
  assert out['first_epoch'] == out['killed'][1]


@needs_namespace
def test_two_workers_give_the_numbers_of_one_at_the_same_cores_per_run(data_dir, tmp_path):
  """Two seeds on two workers at once, and the same two one after another: identical results."""
  out = in_loopback_namespace(DRIVER_HEAD.format(data_dir=data_dir) + f'''
config.update(model='mlp', num_epochs=2)
jobs = []
for seed in (0, 1):
  c = config.copy_and_resolve_references(); c.seed = seed
  jobs.append(c)
with distribute.Runner(args) as runner:
  one = runner.run([(c, {str(tmp_path)!r} + f'/one_{{i}}') for i, c in enumerate(jobs)])
args.workers = 2
with distribute.Runner(args) as runner:
  two = runner.run([(c, {str(tmp_path)!r} + f'/two_{{i}}') for i, c in enumerate(jobs)])
print(json.dumps({{'one': strip(one), 'two': strip(two),
                  'cores': [r['provenance']['cpu_cores'] for r in one + two]}}))
''')
  assert [r['seed'] for r in out['two']] == [0, 1]
  assert out['one'] == out['two']
  assert out['cores'] == [1, 1, 1, 1]
  assert out['one'][0]['test_accuracy'] != out['one'][1]['test_accuracy']


def test_flags_are_checked_before_anything_starts():
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  import argparse  # pylint: disable=g-import-not-at-top
  for bad in ({'workers': -1}, {'cores_per_run': 10_000}, {'gpus_per_run': 0.0}):
    args = argparse.Namespace(**{'workers': 0, 'address': None, 'cores_per_run': 0,
                                 'gpus_per_run': 0.25, **bad})
    with pytest.raises(errors.UserError, match=next(iter(bad))):
      distribute.Runner(args)


def test_one_worker_runs_here_without_ray():
  import argparse  # pylint: disable=g-import-not-at-top
  args = argparse.Namespace(workers=1, address=None, cores_per_run=0, gpus_per_run=0.25)
  assert not distribute.Runner(args).spreads()
  assert distribute.Runner(argparse.Namespace(**{**vars(args), 'workers': 2})).spreads()
  assert distribute.Runner(argparse.Namespace(**{**vars(args), 'cores_per_run': 1})).spreads()
  if len(os.sched_getaffinity(0)) <= distribute.SMALL_MACHINE_CORES:  # this CPU, and CI's
    default = argparse.Namespace(**{**vars(args), 'workers': 0})
    assert not distribute.Runner(default).spreads()  # one at a time: measured as fast here
    default = argparse.Namespace(**{**vars(args), 'workers': 0})
    assert distribute.Runner(default, needs_ray=True).spreads()  # early stopping: 1-core trials


def test_claim_cores_gives_each_process_its_own(tmp_path, monkeypatch):
  """Two claims in two processes get different cores (a lock per core), freed at exit."""
  monkeypatch.setattr(distribute, 'SLOTS', str(tmp_path))
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip('needs 2 cores')
  code = ('from experiments.lib import distribute; import time; '
          f'distribute.SLOTS = {str(tmp_path)!r}; print(distribute.claim_cores(1), flush=True); '
          'time.sleep(3)')
  a = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
  first = a.stdout.readline()
  b = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                     check=True)
  a.wait()
  assert first.strip() != b.stdout.strip()
  c = subprocess.run([sys.executable, '-c', code.replace('time.sleep(3)', 'pass')],
                     capture_output=True, text=True, cwd=ROOT, check=True)
  assert c.stdout.strip() in (first.strip(), b.stdout.strip())


@needs_namespace
def test_sweep_with_early_stopping_stops_poor_trials_and_reads_test_once(data_dir, tmp_path):
  """ASHA under Ray Tune: a poor trial stops after the grace epoch, the winner finishes its
  schedule, and only the winner's test split is read."""
  out = tmp_path / 'o'
  in_loopback_namespace(f'''
import json
from experiments import sweep
rows = sweep.main(['--config', 'configs/mlp.py', '--grid', 'learning_rate=0.001,0.3',
                   '--config.num_epochs=3', '--config.train_split=train[:2000]',
                   '--config.validation_split=train[59000:]', '--config.test_split=test[:500]',
                   '--config.data_dir={data_dir}', '--config.progress_bar=off',
                   '--early_stopping', '--grace_epochs', '1', '--reduction_factor', '3',
                   '--workers', '1', '--workdir', '{tmp_path / "w"}', '--output', '{out}'])
print(json.dumps(rows))
''')
  ranked = json.loads((out / 'sweep.json').read_text())['ranked']
  by_rate = {r['trial']['learning_rate']: r for r in ranked}
  # One trial at a time, in order: the first sets the rung, the poor second stops there. With 3
  # epochs and a reduction factor of 3 the rungs are epochs 1 and 3: the last epoch is a rung,
  # and the first trial must still finish (write results.json) rather than be cut there.
  assert by_rate[0.3]['stopped_early'] and by_rate[0.3]['epochs'] == 1
  assert (tmp_path / 'w' / 'learning_rate=0.3' / 'stopped_early.json').exists()
  assert (tmp_path / 'w' / 'learning_rate=0.001' / 'results.json').exists()
  winner = ranked[0]
  assert not winner['stopped_early'] and winner['epochs'] == 3 and 'test_accuracy' in winner
  assert all('test_accuracy' not in r for r in ranked[1:])
  assert (out / 'winner_test').is_dir()


class _SpreadingRunner:
  """A runner that spreads (as Ray would) but trains nothing: it answers each job at once."""

  def __init__(self):
    self.calls = []

  def spreads(self):
    return True

  def run(self, jobs, on_result=None):
    self.calls.append([(c.seed, w) for c, w in jobs])
    out = []
    for i, (config, workdir) in enumerate(jobs):
      from fmnist_jax import provenance  # pylint: disable=g-import-not-at-top
      accuracy = 0.8 + 0.01 * config.seed + (0.1 if config.model == 'cnn' else 0.0)
      out.append({'seed': config.seed, 'best_epoch': 1, 'test_accuracy': accuracy,
                  'test_loss': 0.5, 'validation_accuracy': accuracy, 'validation_loss': 0.5,
                  'results_version': provenance.RESULTS_VERSION, 'train_seconds': 1.0,
                  'train_images_per_second': 100.0, 'epochs': 1,
                  'history': [{'epoch': 1, 'train_loss': 1.0, 'train_accuracy': 0.5,
                               'validation_loss': 0.5, 'validation_accuracy': accuracy}]})
      if on_result:
        on_result(i, out[-1])
    return out


def test_run_rows_hands_every_seed_of_every_row_to_the_runner_at_once(tmp_path):
  """One call with a run per seed (spread), and each row merged from its own seeds, in order."""
  from experiments.lib import common  # pylint: disable=g-import-not-at-top
  rows = []
  for model in ('mlp', 'cnn'):
    config = common.load_config('configs/default.py', [f'model={model}', 'num_seeds=3'],
                                validate=False)
    rows.append((config, str(tmp_path / model), False, None))
  runner = _SpreadingRunner()
  mlp, cnn = common.run_rows(rows, runner=runner)
  (call,) = runner.calls
  assert call == [(s, str(tmp_path / m / f'seed_{s}')) for m in ('mlp', 'cnn') for s in (0, 1, 2)]
  assert common.per_seed(mlp, 'test_accuracy') == pytest.approx([0.80, 0.81, 0.82])
  assert common.per_seed(cnn, 'test_accuracy') == pytest.approx([0.90, 0.91, 0.92])
  # Without a spreading runner, a row's seeds stay one run (together in one program).
  assert [label for label, _, _ in common.seed_runs(rows[0][0], str(tmp_path / 'mlp'), False)] \
      == ['seeds_0-2']
