"""`python -m fmnist_jax.evaluate --workdir W`: the best checkpoint of a run on its test split, and
its report files written again."""

from fmnist_jax import build
from fmnist_jax import errors
from fmnist_jax import evaluator


def evaluate_workdir(workdir: str) -> dict[str, float]:
  """Re-evaluates the best checkpoint of a run on its test split and rewrites the report files."""
  # The newest checkpoint only: the report files must be the run's best, as results.json says.
  config, model, variables, history, best = build.load_best(workdir, newest_only=True)
  test = build.data(config, which=('test',))['test']
  tester = build.evaluator_for(config, model, test)
  result = evaluator.report_on_test(tester, variables, test, workdir, history)
  print(f'{config.model} (best checkpoint, epoch {best}): test accuracy {result["accuracy"]:.4f}, '
        f'test loss {result["loss"]:.4f}; report files written to {workdir}')
  return result


if __name__ == '__main__':
  from absl import flags  # pylint: disable=g-import-not-at-top
  from fmnist_jax import cli  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'A training workdir (holds config.json and checkpoints).')
  flags.mark_flag_as_required('workdir')

  def _main(argv):
    if len(argv) > 1:
      raise errors.UserError(f'unexpected arguments {argv[1:]}; evaluate takes only --workdir.')
    evaluate_workdir(flags.FLAGS.workdir)

  cli.run(_main, config_flag=None)
