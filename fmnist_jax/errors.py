"""Mistakes a person can fix. The command-line entry points catch `UserError` alone and print
`ERROR: <message>` with no traceback; every other exception is a bug and keeps its traceback.

Each subclass also derives from the built-in error of its kind (ValueError, OSError, ...), so
`except ValueError` and the like catch it.
"""


class UserError(Exception):
  """A message that names the bad file, field, value or directory and says what to do."""


class ConfigError(UserError, ValueError):
  """A config field (or config file) a person has to change."""


class ConfigMismatchError(UserError, ValueError):
  """The workdir holds a run with another config."""


class WorkdirError(UserError, OSError):
  """A workdir that cannot be used: not a directory, not writable, or holding no trained run."""


class WorkdirBusyError(UserError, RuntimeError):
  """Another live process is training in the workdir."""


class DataUnavailableError(UserError, RuntimeError):
  """Fashion-MNIST is neither prepared, nor downloadable, nor available locally."""


class DataDamagedError(UserError, RuntimeError):
  """The prepared data set cannot be read whole (truncated or altered files, missing examples)."""


class StructureMismatchError(UserError, ValueError):
  """A readable checkpoint that does not fit the config's state."""


class WeightsUnavailableError(UserError, FileNotFoundError):
  """A weight file that is missing and cannot be downloaded."""


class WeightsMismatchError(UserError, ValueError):
  """A weight file of another model."""


class TrainingDivergedError(UserError, FloatingPointError):
  """The training loss became NaN or infinite."""


class DamagedFileError(UserError, ValueError):
  """A file a run wrote and reads back (config.json, results.json, a record) is damaged."""


class DiskFullError(UserError, OSError):
  """The disk filled up while a run wrote to it; what was complete before is intact."""


class MachineError(UserError, OSError):
  """The machine or its files failed: a read-only or vanished folder, permissions, I/O errors."""
