"""Files a later run trusts: written whole or not at all, read with a sentence when they are damaged,
and the faults of the machine (a full disk, a read-only or vanished folder) named in one line.

Every file that a later run, `evaluate`, `predict` or an experiment script reads back (config.json,
results.json, seed records, comparison and sweep tables, the report files) is written through
`atomic` (a temporary file in the same folder, renamed into place), so a kill or a full disk leaves
either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from fmnist_jax import errors

# errno values that are the machine's or the file system's fault, not the program's.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_MACHINE = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
            errno.EROFS: 'the file system is read-only', errno.EACCES: 'permission denied',
            errno.EPERM: 'operation not permitted', errno.EIO: 'input/output error'}


@contextlib.contextmanager
def atomic(path: str, mode: str = 'w') -> Iterator[Any]:
  """Opens a temporary file beside `path` and renames it to `path` when the block ends without an
  error; on an error (a full disk, a kill) it is removed and `path` keeps its old content."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the files are the user's to share
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  with atomic(path) as f:
    json.dump(obj, f, indent=2)


def read_json(path: str, remedy: str, required: tuple[str, ...] = ()) -> Any:
  """The JSON in `path` (None if there is no such file); DamagedFileError naming the file, what is
  wrong and `remedy` when it is not valid JSON or lacks one of the `required` top-level keys."""
  try:
    with open(path, encoding='utf-8') as f:
      obj = json.load(f)
  except FileNotFoundError:
    return None
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
    raise errors.DamagedFileError(_damaged(path, f'not valid JSON: {e}', remedy)) from None
  missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
  if missing:
    raise errors.DamagedFileError(_damaged(path, f'it lacks {", ".join(missing)}', remedy))
  return obj


def _damaged(path: str, why: str, remedy: str) -> str:
  return f'{path} is damaged ({why})' + (f'; {remedy}' if remedy else '.')


def free_mb(path: str) -> float:
  """Free space on the file system holding `path` (or its nearest existing parent), in MB."""
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free / 2**20


def is_disk_full(e: BaseException) -> bool:
  """A full disk, however the library says it: OSError ENOSPC, or TensorStore's (orbax's)
  RESOURCE_EXHAUSTED with the OS's 'No space left on device' inside."""
  if isinstance(e, OSError) and e.errno in _FULL:
    return True
  text = str(e)
  return 'No space left on device' in text or (
      'RESOURCE_EXHAUSTED' in text and f"os_error_code='{errno.ENOSPC}'" in text)


def machine_error(e: BaseException) -> errors.UserError | None:
  """The one-line error for a fault of the machine or of its files, or None (a bug: traceback)."""
  if isinstance(e, errors.UserError):
    return e
  if is_disk_full(e):
    filename = getattr(e, 'filename', None)
    where = f' while writing {filename}' if filename else ''
    return errors.DiskFullError(
        f'No space left on the device{where} ({free_mb(filename or os.getcwd()):.0f} MB free): '
        'free some space and run the same command again; it continues from the last complete '
        'checkpoint.')
  if isinstance(e, OSError) and e.errno in _MACHINE:
    return errors.MachineError(
        f'{e.filename or "a file"}: {_MACHINE[e.errno]} ({e.strerror}); fix the folder (space, '
        'permissions, the mount) and run the same command again: it continues where it stopped.')
  return None
