"""What every command line shares: a person's mistake ends in one `ERROR: ...` line, exit status 1.

Flags are parsed by absl (and `--config` by ml_collections' config_flags), but first the config file
is loaded here and every `--config.<field>` override is checked against it, so a missing or broken
file and a misspelt field are named before anything is imported, loaded or compiled. Inside the
command, `errors.UserError` is caught here and nothing else: a bug keeps its traceback.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import importlib.util
import os
import sys
import traceback
from typing import Any, Callable, Sequence

from fmnist_jax import errors


def fail(message: Any) -> None:
  """Prints the one line and exits with status 1."""
  from fmnist_jax import console  # pylint: disable=g-import-not-at-top
  print(f'ERROR: {" ".join(str(message).split())}', file=console.stream(), flush=True)
  raise SystemExit(1)


def load_config_file(path: str):
  """get_config() of a config file (`path` or `path:argument`); ConfigError naming what is wrong."""
  argument = None
  if not os.path.exists(path) and ':' in path:
    path, argument = path.split(':', 1)
  if not os.path.isfile(path):
    raise errors.ConfigError(
        f'config file {path!r} does not exist' + (' (it is a directory)' if os.path.isdir(path)
                                                  else '') +
        '; give a file such as configs/cnn.py (paths are relative to the current directory).')
  try:
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
      raise errors.ConfigError(f'config file {path!r} defines no get_config(); see '
                               'configs/cnn.py for the shape of one.')
    return module.get_config(argument) if argument is not None else module.get_config()
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (the config file is the user's code)
    line = [f.lineno for f in traceback.extract_tb(e.__traceback__)
            if os.path.abspath(f.filename) == os.path.abspath(path)]
    where = f' at line {line[-1]}' if line else ''
    raise errors.ConfigError(f'config file {path!r} fails to load{where}: '
                             f'{type(e).__name__}: {e}. Fix the file or pick another.') from None


def check_field(config, field: str, source: str) -> None:
  """ConfigError unless the dotted `field` exists in `config` (misspellings get a suggestion)."""
  node, parts = config, field.split('.')
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, 'keys') else []
    if part not in keys:
      prefix = '.'.join(parts[:i])
      known = [f'{prefix}.{k}' if prefix else k for k in keys]
      close = difflib.get_close_matches('.'.join(parts[:i + 1]), known, n=1)
      hint = f' Did you mean {close[0]!r}?' if close else (
          f' Known fields{" of " + prefix if prefix else ""}: {", ".join(sorted(known))}.'
          if known else '')
      raise errors.ConfigError(f'{source}: the config has no field {field!r}.{hint}')
    node = node[part]


def _config_args(argv: Sequence[str], flag: str) -> tuple[str | None, list[str]]:
  """The --<flag> file and the dotted fields of every --<flag>.<field> override in `argv`."""
  path, fields = None, []
  for i, arg in enumerate(argv):
    if arg == '--':
      break
    name = arg.lstrip('-').split('=', 1)[0] if arg.startswith('--') else ''
    if name == flag:
      path = arg.split('=', 1)[1] if '=' in arg else (argv[i + 1] if i + 1 < len(argv) else None)
    for prefix in (f'{flag}.', f'no{flag}.'):
      if name.startswith(prefix):
        fields.append(name[len(prefix):])
  return path, fields


def check_config_flags(argv: Sequence[str], flag: str = 'config', default: str | None = None):
  """Loads the --config file and checks every override's field before absl parses them."""
  path, fields = _config_args(argv, flag)
  path = path or default
  if path is None:
    return
  config = load_config_file(path)
  for field in fields:
    check_field(config, field, f'--{flag}.{field}')


def parse_flags(argv: list[str], config_flag: str | None = 'config',
                config_default: str | None = None) -> list[str]:
  """absl's parse, with every flag mistake (unknown, missing, wrong type) as one ERROR line."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    if config_flag:
      check_config_flags(argv[1:], config_flag, config_default)
    return flags.FLAGS(argv)
  except (flags.Error, errors.UserError) as e:
    fail(e)


def guarded(main: Callable) -> Callable:
  """`main` with a person's mistake (UserError) or a fault of the machine or its files (a full
  disk, a read-only folder: `files.machine_error`) turned into the ERROR line, no traceback. Any
  other exception is a bug and keeps its traceback."""
  from fmnist_jax import files  # pylint: disable=g-import-not-at-top
  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      error = files.machine_error(e)
      if error is None:  # a bug: its traceback on the terminal (and in the log)
        from fmnist_jax import console  # pylint: disable=g-import-not-at-top
        if console.stream() is not sys.stderr:
          traceback.print_exc(file=console.stream())
        raise
      fail(error)
  return wrapped


def run(main: Callable, config_flag: str | None = 'config', config_default: str | None = None):
  """absl's app.run with the checks above."""
  from absl import app  # pylint: disable=g-import-not-at-top
  app.run(guarded(main), flags_parser=functools.partial(
      parse_flags, config_flag=config_flag, config_default=config_default))


def check_output_file(path: str, flag: str) -> None:
  """UserError unless `path` can be written (its folder exists and is writable) before any work."""
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
    raise errors.UserError(f'{flag} {path!r} cannot be written (' + (
        'it is a directory' if os.path.isdir(path) else f'{folder} is not a writable directory')
        + '); give a file path in an existing, writable directory.')


class ArgumentParser(argparse.ArgumentParser):
  """argparse for the experiment scripts: a usage mistake is one ERROR line, exit status 2."""

  def error(self, message):
    print(f'ERROR: {message} (see {self.prog} --help)', file=sys.stderr, flush=True)
    raise SystemExit(2)


def run_script(main: Callable) -> None:
  """Runs an experiment script's main(); UserError ends in the ERROR line."""
  guarded(main)()
