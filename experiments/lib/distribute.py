"""Independent runs (config × seed × trial) side by side: Ray tasks, locally or on a cluster.

Every experiment script takes `--workers`, `--address` and `--cores_per_run` (`add_flags`) and
hands its runs to `Runner.run`, which returns their results in order:

- `--workers 1` (and no address): one run after another in this process, on all of the machine's
  cores: no Ray, the numbers of `python -m fmnist_jax.main`.
- otherwise a Ray instance (a local one started here, or the cluster at `--address`) runs each run
  as a task of `--cores_per_run` CPU cores (default 1), at most `--workers` at a time (default:
  as many as the cores and memory hold; on a machine of 2 cores or fewer the default is
  `--workers 1`: there XLA's threads speed one run up about as much as running two side by side
  would, and a Ray run pays its process start). A task pins its process to its own cores before JAX
  starts, so XLA's threads stay on them (XLA sizes its thread pool and its loop partitions by
  the cores a process may use, and the numbers of a run depend on that count: a run gives the
  same numbers with any number of workers at the same --cores_per_run). On a GPU node each task
  takes `--gpus_per_run` of a GPU (default 0.25) and that fraction of its memory.

A run is an ordinary workdir (lock, checkpoints, seed record), so a task retried after its worker
died resumes from its last checkpoint, and a rerun of the command continues where it stopped.

The local instance listens on 127.0.0.1 only as far as Ray allows (see docs/experiments.md: its
GCS and raylet bind every interface; token authentication, on by default in Ray 2.60, guards
them), has no dashboard, and is stopped when the script ends.

Nothing here imports JAX (or a module that does) at module level: a Ray worker imports this module
to unpickle `_run_task`, which pins the worker's cores (`prepare_process`) before it imports
`experiments.lib.runs` and with it JAX (tests/test_experiments_layout.py checks this).
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLOTS = os.path.join('/tmp', f'fmnist_jax_core_slots_{os.getuid()}')
MEMORY_PER_RUN = 2 << 30  # bytes a CPU run may take (a run of these models holds about 1 GB)
# On this many cores or fewer the default is one run at a time on all of them, as fast as 1-core
# runs side by side there (docs/experiments.md, "Runs side by side"; experiments/results/parallel/).
SMALL_MACHINE_CORES = 2
MAX_RETRIES = 3  # a task whose worker died (killed, out of memory) runs again, resuming


def add_flags(parser) -> None:
  parser.add_argument('--workers', type=int, default=0,
                      help='Runs at a time: 1 = one after another in this process, no Ray; '
                           '0 (default) = as many as the cores (or GPUs) and memory hold (on '
                           f'{SMALL_MACHINE_CORES} cores or fewer: 1).')
  parser.add_argument('--address', default=None,
                      help='A Ray cluster to run on (ray://host:10001 or host:6379; see '
                           'docs/experiments.md); default: a local instance started here.')
  parser.add_argument('--cores_per_run', type=int, default=0,
                      help='CPU cores of each run (its XLA threads pinned to them); default 1. '
                           'The numbers of a run depend on this count.')
  parser.add_argument('--gpus_per_run', type=float, default=0.25,
                      help='Fraction of a GPU each run takes on a GPU node (and that fraction of '
                           'its memory).')


def check_flags(args) -> None:
  """One ERROR line for a bad value, before anything starts."""
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  if args.workers < 0:
    raise errors.UserError(f'--workers {args.workers}: give 1 or more, or 0 for as many as fit.')
  cores = len(os.sched_getaffinity(0))
  if args.cores_per_run < 0 or (args.cores_per_run > cores and not args.address):
    raise errors.UserError(f'--cores_per_run {args.cores_per_run}: this machine has {cores} '
                           'cores; give 1 to that many.')
  if not 0 < args.gpus_per_run <= 1:
    raise errors.UserError(f'--gpus_per_run {args.gpus_per_run}: give a fraction in (0, 1].')


def uses_ray(args) -> bool:
  return args.workers != 1 or bool(args.address) or args.cores_per_run > 0


class Runner:
  """Runs lists of (config, workdir) jobs; one Ray instance for the whole script."""

  def __init__(self, args, needs_ray: bool = False):
    """`needs_ray`: the caller runs on Ray in any case (a sweep's early stopping), so a small
    machine's default is still as many 1-core runs as it has cores."""
    check_flags(args)
    if (args.workers == 0 and not args.address and not args.cores_per_run and not needs_ray
        and len(os.sched_getaffinity(0)) <= SMALL_MACHINE_CORES):
      args.workers = 1  # side by side gains nothing here (SMALL_MACHINE_CORES)
    self.args = args
    self._ray = None

  def spreads(self) -> bool:
    """Whether runs go to Ray tasks (then each seed is a run of its own)."""
    return uses_ray(self.args)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def run(self, jobs: list[tuple], on_result=None) -> list[dict]:
    """Each job's results.json (a job is (config, workdir)), in the jobs' order. `on_result(i,
    results)` is called as each finishes (a table can be written from what has finished)."""
    if not jobs:
      return []
    if not uses_ray(self.args):
      return one_at_a_time(jobs, on_result)
    ray = self.start()
    task = ray.remote(max_calls=1)(_run_task).options(**self.task_options())
    pending, done, failed, queue = {}, {}, [], list(enumerate(jobs))
    while queue or pending:
      while queue and len(pending) < self.workers and not failed:
        i, (config, workdir) = queue.pop(0)
        pending[task.remote(config, workdir, self.cores, self.gpu_fraction)] = i
      if not pending:
        break
      ready, _ = ray.wait(list(pending), num_returns=1)
      i = pending.pop(ready[0])
      try:
        done[i] = ray.get(ready[0])
      except Exception as e:  # pylint: disable=broad-except
        failed.append(task_error(e, jobs[i][1]))  # the running ones finish; no new one starts
        continue
      if on_result:
        on_result(i, done[i])
    if failed:
      for e in failed[1:]:
        print(f'ERROR: {e}', file=sys.stderr, flush=True)
      raise failed[0]
    return [done[i] for i in range(len(jobs))]

  def start(self):
    """The Ray instance (started once): local on 127.0.0.1, or the cluster at --address."""
    if self._ray is not None:
      return self._ray
    if not self.args.address:  # read when ray is imported: token auth on even where turned off
      os.environ['RAY_AUTH_MODE'] = 'token'
    import ray  # pylint: disable=g-import-not-at-top
    # Ray starts its processes with subprocess (fork, then exec at once), which is safe in a
    # threaded process; Python's warning about fork with JAX's threads does not apply.
    warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called', category=RuntimeWarning)
    env = {'env_vars': {
        # Workers import experiments.lib and configs/ from the repository root.
        'PYTHONPATH': os.pathsep.join([ROOT, *filter(None, [os.environ.get('PYTHONPATH')])]),
        'RAY_CHDIR_TO_TRIAL_DIR': '0',  # Tune trials keep the driver's directory (relative paths)
    }}
    if self.args.address:
      ray.init(address=self.args.address, runtime_env=env, log_to_driver=False)
    else:
      ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
               _node_ip_address='127.0.0.1', runtime_env=env, log_to_driver=False,
               configure_logging=False)
    resources = ray.cluster_resources()
    self.gpu_fraction = self.args.gpus_per_run if resources.get('GPU', 0) > 0 else 0.0
    self.cores = self.args.cores_per_run or 1
    if self.gpu_fraction:
      fit = int(resources['GPU'] / self.gpu_fraction)
    else:
      fit = min(int(resources.get('CPU', 1)) // self.cores,
                max(1, int(resources.get('memory', MEMORY_PER_RUN)) // MEMORY_PER_RUN))
    self.workers = self.args.workers or max(1, fit)
    print(f'Ray: {self.workers} runs at a time, {self.cores} core(s) each'
          + (f', {self.gpu_fraction} GPU each' if self.gpu_fraction else '')
          + f' ({"cluster " + self.args.address if self.args.address else "local, 127.0.0.1"}).',
          flush=True)
    self._ray = ray
    return ray

  def task_options(self) -> dict:
    return {'num_cpus': self.cores, 'num_gpus': self.gpu_fraction,
            'max_retries': MAX_RETRIES, 'retry_exceptions': False}

  def close(self) -> None:
    if self._ray is not None and not self.args.address:
      self._ray.shutdown()
    self._ray = None


def one_at_a_time(jobs: list[tuple], on_result=None) -> list[dict]:
  """Runner.run without Ray: the jobs one after another in this process, on all its cores."""
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top  (imports JAX)
  out = []
  for i, (config, workdir) in enumerate(jobs):
    out.append(runs.run(config, workdir))
    if on_result:
      on_result(i, out[-1])
  return out


def task_error(e: Exception, workdir: str) -> Exception:
  """A failed task's error as the scripts report it: a run's own UserError as it was raised; a
  worker that died more than MAX_RETRIES times as one line; anything else (a bug) unchanged."""
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  import ray.exceptions  # pylint: disable=g-import-not-at-top
  cause = getattr(e, 'cause', None)
  if isinstance(cause, errors.UserError):
    return cause
  if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
                    ray.exceptions.NodeDiedError)):
    return errors.UserError(
        f'the run in {workdir} lost its worker {MAX_RETRIES + 1} times ({type(e).__name__}: out '
        'of memory, or killed); run the same command to continue it from its checkpoint, with '
        'fewer --workers if memory ran out.')
  return e


def _run_task(config, workdir: str, cores: int, gpu_fraction: float) -> dict:
  """One run in a fresh worker process (max_calls=1): its cores first, then JAX."""
  prepare_process(cores, gpu_fraction)
  from experiments.lib import runs  # pylint: disable=g-import-not-at-top  (JAX: after the pinning)
  return runs.run(config, workdir)


def prepare_process(cores: int, gpu_fraction: float) -> None:
  """Before JAX starts in this process: a GPU share's memory, or `cores` CPU cores of its own."""
  if 'jax' in sys.modules:
    raise RuntimeError('prepare_process must run before JAX is imported in the process')
  if gpu_fraction:
    os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{0.9 * gpu_fraction:.3f}'
    return
  os.environ['JAX_PLATFORMS'] = os.environ.get('JAX_PLATFORMS', 'cpu')
  mine = claim_cores(cores)
  for tid in os.listdir('/proc/self/task'):  # every thread (Tune calls this from a thread)
    try:
      os.sched_setaffinity(int(tid), mine)
    except ProcessLookupError:
      pass  # a thread that has ended


_HELD = []  # the slot's open lock file: held until the process exits (the kernel then drops it)


def claim_cores(cores: int) -> list[int]:
  """`cores` of this machine's cores that no other run holds: a file lock per core.

  Ray admits at most (cores // cores_per_run) such tasks at once on a node, so enough are free;
  a process that dies (even by SIGKILL) frees its cores with its locks.
  """
  available = os.sched_getaffinity(0)
  if cores > len(available):
    from fmnist_jax import errors  # pylint: disable=g-import-not-at-top  (no JAX in it)
    raise errors.UserError(f'--cores_per_run {cores}: this node ({os.uname().nodename}) has '
                       f'{len(available)} cores; give at most that many.')
  os.makedirs(SLOTS, exist_ok=True)
  waited = 0.0
  while True:
    held = []
    for core in sorted(available):
      f = open(os.path.join(SLOTS, f'core_{core}.lock'), 'w')  # pylint: disable=consider-using-with
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        f.close()
        continue
      held.append((core, f))
      if len(held) == cores:
        _HELD.extend(f for _, f in held)
        return [c for c, _ in held]
    for _, f in held:
      f.close()  # not enough free: let go and wait for a run to end
    if waited == 30.0:
      print(f'Waiting for {cores} free core(s): other runs hold the locks in {SLOTS} (another '
            'script using this runner on this machine?).', file=sys.stderr, flush=True)
    time.sleep(0.5)
    waited += 0.5
