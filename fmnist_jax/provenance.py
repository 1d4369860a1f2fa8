"""What produced a result: the results version, the code, the libraries and the machine.

`RESULTS_VERSION` changes whenever the numbers of a fixed config and seed change (a new random
stream, another default, a changed step); tests/test_provenance.py fails when a small fixed run's
numbers move without it. The experiment scripts reuse a finished run or record only when its
results version is today's, so a number from older code is never taken for one of today's.

History (what changed the numbers):
  1  (no `results_version` field) every run up to 2026-11-29.
  2  independent random streams (`streams`), weight decay on kernels only by default, the moving
     average also over the BatchNorm statistics.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from typing import Any

RESULTS_VERSION = 2
UNVERSIONED = 1  # what a result without a results_version field was made by
LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint')
# The paths whose uncommitted changes can change a result.
CODE_PATHS = ('fmnist_jax', 'configs', 'setup.py')
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results_version(results: dict[str, Any]) -> int:
  """The results version a results.json, record or row was made by."""
  return results.get('results_version', UNVERSIONED)


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(['git', '-C', _ROOT, *args], capture_output=True, text=True, timeout=10,
                         check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


@functools.lru_cache(maxsize=None)
def code() -> dict[str, Any]:
  """The code of this process, read once (so a run reports the code it started with).

  In a git checkout: the commit and whether fmnist_jax/, configs/ or setup.py had uncommitted
  changes; otherwise the installed package's version.
  """
  # .git is a folder in a clone, a file in a worktree; a package installed elsewhere has neither.
  commit = _git('rev-parse', 'HEAD') if os.path.exists(os.path.join(_ROOT, '.git')) else None
  if commit:
    changes = _git('status', '--porcelain', '--untracked-files=no', '--', *CODE_PATHS)
    return {'commit': commit, 'uncommitted_changes': bool(changes) if changes is not None else None}
  try:
    return {'package_version': importlib.metadata.version('fmnist_jax')}
  except importlib.metadata.PackageNotFoundError:
    return {'package_version': None}


# The instruction-set features XLA:CPU's code generation can use (LLVM's names, as /proc/cpuinfo
# spells them): they tell hosts of one vendor apart where the model name does not (Zen 4 and Zen 5
# both report "AMD EPYC" here).
ISA_FEATURES = ('sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512dq', 'avx512cd',
                'avx512bw', 'avx512vl', 'avx512ifma', 'avx512vbmi', 'avx512_vbmi2', 'avx512_vnni',
                'avx512_bf16', 'avx512_bitalg', 'avx512_vpopcntdq', 'avx512_fp16', 'avx_vnni',
                'amx_tile', 'amx_bf16', 'amx_int8')


@functools.lru_cache(maxsize=None)
def fingerprint() -> dict[str, Any]:
  """The machine as far as it can move a number: the cores this process may use (XLA partitions
  its CPU loops by that count), the CPU's vendor, family, model and stepping and the
  instruction-set features XLA can use (its code differs by them), the XLA flags, the backend and
  the device kinds. Two runs of one config and seed with equal fingerprints and code give equal
  numbers; records made before it existed say "not recorded"."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = {}
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key in ('vendor_id', 'cpu family', 'model', 'stepping', 'model name', 'flags'):
          cpu.setdefault(key, value.strip())
        if not line.strip() and cpu:
          break  # the first processor is enough: they are alike
  except OSError:
    pass
  flags = set(cpu.get('flags', '').split())
  return {'cpu_cores': len(os.sched_getaffinity(0)), 'cpu_vendor': cpu.get('vendor_id'),
          'cpu_family': cpu.get('cpu family'), 'cpu_model': cpu.get('model'),
          'cpu_stepping': cpu.get('stepping'), 'cpu_model_name': cpu.get('model name'),
          'isa_features': [f for f in ISA_FEATURES if f in flags] if cpu else None,
          'xla_flags': os.environ.get('XLA_FLAGS', ''), 'backend': jax.default_backend(),
          'device_kinds': sorted({d.device_kind for d in jax.devices()})}


def fingerprint_line(prov: dict[str, Any] | None) -> str:
  """'2 cores, AuthenticAMD family 25 model 17 stepping 1, AVX-512' or 'machine not recorded'."""
  m = (prov or {}).get('machine')
  if not m:
    return 'machine not recorded'
  isa = m.get('isa_features') or []
  widest = 'AVX-512' if 'avx512f' in isa else 'AVX2' if 'avx2' in isa else 'no AVX2'
  kinds = ', '.join(m.get('device_kinds') or [])
  if m.get('backend') != 'cpu':
    return f'{m.get("backend")} ({kinds})'
  return (f'{m["cpu_cores"]} cores, {m.get("cpu_vendor")} family {m.get("cpu_family")} model '
          f'{m.get("cpu_model")} stepping {m.get("cpu_stepping")}, {widest}')


def describe() -> dict[str, Any]:
  """The provenance block of a results.json, a record or a table."""
  import jax  # pylint: disable=g-import-not-at-top
  versions = {}
  for name in LIBRARIES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {'results_version': RESULTS_VERSION, 'code': code(), 'libraries': versions,
          'backend': jax.default_backend(),
          'device_kinds': sorted({d.device_kind for d in jax.devices()}),
          # The cores this process may use: XLA partitions its CPU loops by that count, which
          # moves the last bits of a run's numbers (docs/experiments.md, "Numbers").
          'cpu_cores': len(os.sched_getaffinity(0)),
          'machine': fingerprint()}


def code_line(prov: dict[str, Any] | None) -> str:
  """'results version 2, commit 1234567 (uncommitted changes)' or what is known of it."""
  if not prov:
    return f'results version {UNVERSIONED} (no provenance recorded)'
  c = prov.get('code', {})
  where = (f'commit {c["commit"][:7]}' + (' with uncommitted changes'
                                          if c.get('uncommitted_changes') else '')
           if c.get('commit') else f'package version {c.get("package_version")}')
  return f'results version {prov["results_version"]}, {where}'
