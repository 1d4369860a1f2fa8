"""What a person sees: the progress bar, one line per epoch, the summary, and one ERROR line.

Everything else a run prints (absl's INFO lines, the config, XLA and TensorFlow messages, library
warnings, tracebacks that library threads print while a full disk fails a write) goes to
`<workdir>/log.txt`: `to_log` points the process's standard error (file descriptor 2, so C++
libraries' output too) at that file and keeps the terminal for `stream()`. `--verbose` leaves it all
on the terminal.
"""
from __future__ import annotations

import os
import sys
from typing import TextIO

from absl import logging

LOG_FILE = 'log.txt'
_terminal: TextIO | None = None


def stream() -> TextIO:
  """The terminal's standard error, also after `to_log` (progress bars and ERROR lines)."""
  return _terminal or sys.stderr


def to_log(workdir: str) -> str:
  """Sends standard error from here on to <workdir>/log.txt (appended); returns its path."""
  global _terminal
  path = os.path.join(workdir, LOG_FILE)
  if _terminal is not None:
    return path
  sys.stdout.flush()
  sys.stderr.flush()
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  _terminal = os.fdopen(os.dup(2), 'w', buffering=1)
  os.dup2(fd, 2)
  os.close(fd)
  return path


def warn(message: str) -> None:
  """One WARNING line a person sees (stdout), also in the log."""
  logging.warning(message)
  print(f'WARNING: {message}', flush=True)


def progress_bar(mode: str, total: int, desc: str, done: int = 0):
  """A tqdm bar at `done` of `total` on the terminal: mode 'on', or 'auto' when it is one; None
  otherwise."""
  if not (mode == 'on' or (mode == 'auto' and stream().isatty())):
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm.tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=stream())
  bar.update(done)
  return bar


def report_steps(report_progress, bar, first: int, k: int) -> None:
  """Steps first+1 .. first+k are done: clu's periodic actions want each step once; the bar."""
  for done in range(first + 1, first + k + 1):
    report_progress(done)
  if bar is not None:
    bar.update(k)
