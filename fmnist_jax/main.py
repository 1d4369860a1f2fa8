"""Command line: `python -m fmnist_jax.main --config configs/cnn.py --workdir W [--config.x=y]`.

Any config field can be overridden, and `--config.model_args.<name>=<value>` sets a field of the
chosen model (e.g. `--config.model_args.hidden='(64,)'` for `mlp`), whether or not the config file
sets it; fmnist_jax/cli.py checks every override before anything is loaded.
"""
import logging as pylogging

from absl import flags
from absl import logging

from fmnist_jax import cli
from fmnist_jax import console
from fmnist_jax import errors
from fmnist_jax import train
from fmnist_jax import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
cli.define_config_flag('config', None, 'Training configuration file.')
flags.DEFINE_bool('allow_config_change', False,
                  'Continue a workdir whose config.json differs from --config (listed otherwise).')
flags.DEFINE_bool('multihost', False,
                  'Call jax.distributed.initialize() first, in one process per host. Without the '
                  'three flags below JAX detects them on SLURM, Open MPI, Kubernetes and TPU pods.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (with --multihost).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --multihost).')
flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes-1 (with --multihost).')
flags.DEFINE_bool('verbose', False,
                  'Show everything on the terminal (the config, absl and library messages) '
                  'instead of writing it to <workdir>/log.txt.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietOrbax:
  """Orbax logs every file it writes at INFO; keep its warnings and errors only."""

  def filter(self, record) -> bool:
    return record.levelno >= pylogging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f'unexpected arguments {argv[1:]}: every option is a flag, e.g. '
                           '--config.num_epochs=5 (see --help).')
  FLAGS.config.lock()  # as given: code may set its fields, not add new ones
  logging.get_absl_handler().addFilter(_QuietOrbax())
  import jax  # pylint: disable=g-import-not-at-top
  if not FLAGS.verbose and not FLAGS.multihost:  # before the backends start (and warn)
    print(f'Log: {console.to_log(workdir_lib.check(FLAGS.workdir))}', flush=True)
  if FLAGS.multihost:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.info('Process %d of %d, %d devices in all.', jax.process_index(), jax.process_count(),
                 jax.device_count())
    if not FLAGS.verbose and jax.process_index() == 0:  # process 0 alone writes to the workdir
      print(f'Log: {console.to_log(workdir_lib.check(FLAGS.workdir))}', flush=True)
  logging.info('Config:\n%s', FLAGS.config)
  # A person's mistakes (errors.UserError) end in one ERROR line through cli.run.
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.allow_config_change)


if __name__ == '__main__':
  cli.run(main)
