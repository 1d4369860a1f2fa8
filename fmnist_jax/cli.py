"""What every command line shares: a person's mistake ends in one `ERROR: ...` line, exit status 1.

Flags are parsed by absl (and `--config` by ml_collections' config_flags), but first the config file
is loaded here and every `--config.<field>` override is checked against it, so a missing or broken
file and a misspelt field are named before anything is imported, loaded or compiled. Inside the
command, `errors.UserError` is caught here and nothing else: a bug keeps its traceback.

`--config.<field>=<value>` is the one override syntax: `python -m fmnist_jax.main` takes it through
`define_config_flag`, the experiment scripts (argparse) through `ArgumentParser(config_overrides=
True)` and `load_config`, which hand it to the same ml_collections parser: a value is read as the
field's type, and a field the config lacks (a model's own field under model_args) with
ast.literal_eval where it parses (a tuple such as '(64,)'), as a string otherwise.
`--config.model_args.<name>` may name any of the chosen model's fields
(`models.settable_fields`), set in the config file or not.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import importlib.util
import os
import sys
import traceback
import warnings
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


# Blocks of fields that belong to what another field names: block -> (that field, its default,
# the registry's module and dict, the function listing an entry's fields, how a message words a
# missing one and the list).
_OWN_FIELDS = {
    'model_args': ('model', 'cnn', 'models', 'MODELS', 'settable_fields', 'has no field',
                   'its fields'),
    'loss_args': ('loss', 'cross_entropy', 'losses', 'LOSSES', 'arguments', 'takes no argument',
                  'its arguments'),
}


def check_override(config, field: str, source: str, chosen: dict[str, Any] | None = None) -> None:
  """ConfigError unless an override may set the dotted `field` of `config`: a field it has, or
  model_args.<name> (loss_args.<name>) where <name> is one of the fields (arguments) of the model
  (loss) the config names, or `chosen` names on the same command line."""
  block = field.split('.', 1)[0]
  if block not in _OWN_FIELDS or '.' not in field:
    check_field(config, field, source)
    return
  kind, default, module, registry, fields_of, missing, listing = _OWN_FIELDS[block]
  # The registries import JAX: only for an override of a model's or a loss's own field.
  from fmnist_jax import defaults  # pylint: disable=g-import-not-at-top
  registered = importlib.import_module(f'fmnist_jax.{module}')
  defaults.import_extensions(config)  # one registered by the user's own module
  entry = (chosen or {}).get(kind) or config.get(kind, default)
  if entry not in getattr(registered, registry):
    raise errors.ConfigError(f'{source}: there is no {kind} {entry!r} to take it; known '
                             f'{module}: {", ".join(sorted(getattr(registered, registry)))}.')
  name, names = field.split('.', 1)[1], getattr(registered, fields_of)(entry)
  if name not in names:
    raise errors.ConfigError(f'{source}: {kind} {entry!r} {missing} {name!r}; {listing}: '
                             f'{", ".join(names) or "none"}.')


def _config_args(argv: Sequence[str], flag: str) -> tuple[str | None, dict[str, str | None]]:
  """The --<flag> file and every --<flag>.<field> override in `argv`: {field: its value's text,
  or the next argument's, None for a boolean's --<flag>.<field>}."""
  path, overrides = None, {}
  for i, arg in enumerate(argv):
    if arg == '--':
      break
    name, sep, value = arg.lstrip('-').partition('=') if arg.startswith('--') else ('', '', '')
    following = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith('-') else None
    if name == flag:
      path = value if sep else following
    for prefix in (f'{flag}.', f'no{flag}.'):
      if name.startswith(prefix):
        overrides[name[len(prefix):]] = value if sep else following
  return path, overrides


def check_config_flags(argv: Sequence[str], flag: str = 'config', default: str | None = None):
  """Loads the --config file and checks every override's field before absl parses them."""
  path, overrides = _config_args(argv, flag)
  path = path or default
  if path is None:
    return
  config = load_config_file(path)
  for field in overrides:
    check_override(config, field, f'--{flag}.{field}', chosen=overrides)


def define_config_flag(name: str = 'config', default: str | None = None,
                       help_string: str = 'Training configuration file.', flag_values=None,
                       sys_argv: Sequence[str] | None = None):
  """The --<name> flag (ml_collections' config file flag) with its --<name>.<field> overrides.

  Fields the config lacks are accepted (check_config_flags has checked them: only a model's own
  fields under model_args get through), so the config comes back unlocked; lock it once read.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  return config_flags.DEFINE_config_file(
      name, default, help_string, flag_values=flags.FLAGS if flag_values is None else flag_values,
      lock_config=False, accept_new_attributes=True,
      sys_argv=None if sys_argv is None else list(sys_argv))


def load_config(path: str, overrides: Sequence[str] = (), flag: str = 'config'):
  """The config file at `path` with `field=value` overrides, read exactly as `python -m
  fmnist_jax.main --config <path> --config.<field>=<value>` reads them (the experiment scripts'
  configs). A missing or broken file, an unknown field or a value of the wrong type is a
  ConfigError naming it."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  argv = ['load_config', f'--{flag}={path}', *(f'--{flag}.{o}' for o in overrides)]
  check_config_flags(argv[1:], flag)
  values = flags.FlagValues()
  define_config_flag(flag, flag_values=values, sys_argv=argv)
  try:
    with warnings.catch_warnings():  # ml_collections loads the file with importlib's old API
      warnings.filterwarnings('ignore', 'the load_module', DeprecationWarning)
      values(argv)
  except flags.Error as e:
    raise errors.ConfigError(str(e)) from None
  return values[flag].value


def split_config_overrides(argv: Sequence[str],
                           flag: str = 'config') -> tuple[list[str], list[str]]:
  """(the `field=value` of every --<flag>.<field>=<value> in `argv`, the other arguments).

  `--<flag>.<field> <value>` (the value as the next argument) and a boolean's `--<flag>.<field>`
  or `--no<flag>.<field>` are read as main reads them.
  """
  overrides, rest, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    name, sep, value = arg.lstrip('-').partition('=') if arg.startswith('--') else ('', '', '')
    if name.startswith(f'{flag}.') and not sep and i + 1 < len(argv) and (
        not argv[i + 1].startswith('-')):
      overrides.append(f'{name[len(flag) + 1:]}={argv[i + 1]}')
      i += 1
    elif name.startswith(f'{flag}.'):
      overrides.append(f'{name[len(flag) + 1:]}={value if sep else "true"}')
    elif name.startswith(f'no{flag}.') and not sep:
      overrides.append(f'{name[len(flag) + 3:]}=false')
    else:
      rest.append(arg)
    i += 1
  return overrides, rest


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
  """argparse for the experiment scripts: a usage mistake is one ERROR line, exit status 2.

  With `config_overrides`, every --config.<field>=<value> (main's syntax) is taken out before
  argparse reads the rest, into `args.config_overrides` as `field=value` (for load_config).
  """

  def __init__(self, *args, config_overrides: bool = False, **kwargs):
    if config_overrides:
      kwargs.setdefault('epilog', '--config.<field>=<value> (any number) overrides a field of '
                        'every config the command trains, as `python -m fmnist_jax.main` takes '
                        'it; --config.model_args.<name> sets a field of the chosen model.')
    super().__init__(*args, **kwargs)
    self.config_overrides = config_overrides

  def parse_args(self, args=None, namespace=None):
    args = sys.argv[1:] if args is None else list(args)
    overrides = []
    if self.config_overrides:
      if '--set' in args:
        self.error('--set is gone: give each override as --config.<field>=<value> (e.g. '
                   '--config.num_epochs=5), as python -m fmnist_jax.main takes it')
      overrides, args = split_config_overrides(args)
    parsed = super().parse_args(args, namespace)
    if self.config_overrides:
      parsed.config_overrides = overrides
    return parsed

  def error(self, message):
    print(f'ERROR: {message} (see {self.prog} --help)', file=sys.stderr, flush=True)
    raise SystemExit(2)


def run_script(main: Callable) -> None:
  """Runs an experiment script's main(); UserError ends in the ERROR line."""
  guarded(main)()
