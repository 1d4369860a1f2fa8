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
          'cpu_cores': len(os.sched_getaffinity(0))}


def code_line(prov: dict[str, Any] | None) -> str:
  """'results version 2, commit 1234567 (uncommitted changes)' or what is known of it."""
  if not prov:
    return f'results version {UNVERSIONED} (no provenance recorded)'
  c = prov.get('code', {})
  where = (f'commit {c["commit"][:7]}' + (' with uncommitted changes'
                                          if c.get('uncommitted_changes') else '')
           if c.get('commit') else f'package version {c.get("package_version")}')
  return f'results version {prov["results_version"]}, {where}'
