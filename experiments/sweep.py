"""Grid or random search over a small spec, ranked on validation; test only at the end.

    python -m experiments.sweep --config configs/cnn.py \\
        --grid batch_size=32,64,128 learning_rate=1e-3,5e-4 optimizer=adam,sgd [--random 4]
    python -m experiments.sweep --config configs/speedrun.py --one_at_a_time \\
        --grid label_smoothing=0.0 nesterov=False model_args.bn_momentum=0.9 --config.num_epochs=5

--one_at_a_time measures each option against the config itself (an ablation): the base config is
a trial, and every other trial changes one field of it. --config.<field>=<value> overrides apply
to every trial; the grid's fields are checked like them (model_args.<name>: the model's fields).

Every trial trains with test_split='' so the test split is not even loaded while choosing. The
trials are ranked by the metric that chooses each run's best epoch (config.best_by: validation
accuracy unless the config says otherwise, e.g. --config.best_by=loss, in its direction), at each
trial's best epoch (the mean over seeds with --num_seeds). Only the winner is then evaluated on
the base config's test split, once, and its report is written to <output>/winner_test/.
"""
import ast
import itertools
import os
import random

from experiments.lib import common
from experiments.lib import distribute
from experiments.lib import early_stopping
from fmnist_jax import build
from fmnist_jax import cli
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import evaluator
from fmnist_jax import files
from fmnist_jax import metrics
from fmnist_jax import provenance
from fmnist_jax import reporting


def parse_grid(items: list[str]) -> dict[str, list]:
  grid = {}
  for item in items:
    field, sep, values = item.partition('=')
    if not sep or not values:
      raise errors.UserError(f'--grid item {item!r} is not of the form field=v1,v2,... (e.g. '
                             'learning_rate=1e-3,5e-4).')
    parsed = []
    for v in values.split(','):
      try:
        parsed.append(ast.literal_eval(v))
      except (ValueError, SyntaxError):
        parsed.append(v)
    grid[field] = parsed
  return grid


def trials(grid: dict[str, list], random_k: int | None, seed: int,
           one_at_a_time: bool = False) -> list[dict]:
  if one_at_a_time:
    return [{}] + [{field: v} for field, values in grid.items() for v in values]
  combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
  if random_k and random_k < len(combos):
    combos = random.Random(seed).sample(combos, random_k)
  return combos


def trial_name(trial: dict) -> str:
  if not trial:
    return 'base'
  return '_'.join(f'{k.replace(".", "-")}={v}' for k, v in trial.items())


def parse_args(argv=None):
  p = cli.ArgumentParser(prog=f'python -m {__spec__.name}', description=__doc__.split('\n')[0],
                         config_overrides=True)
  p.add_argument('--config', default='configs/cnn.py')
  p.add_argument('--grid', nargs='+', required=True, metavar='FIELD=V1,V2')
  p.add_argument('--random', type=int, default=None, help='Sample this many grid points.')
  p.add_argument('--one_at_a_time', action='store_true',
                 help='An ablation: the config itself, then each value of the grid alone.')
  p.add_argument('--num_seeds', type=int, default=1)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--early_stopping', action='store_true',
                 help='Stop poor trials early on the validation metric that ranks them (Ray '
                      'Tune\'s ASHA; see experiments/lib/early_stopping.py).')
  p.add_argument('--grace_epochs', type=int, default=None,
                 help='With --early_stopping: epochs every trial trains before it may be '
                      'stopped (default: a quarter of the config\'s epochs, at least 1).')
  p.add_argument('--reduction_factor', type=int, default=3,
                 help='With --early_stopping: ASHA keeps about 1 in this many trials at each '
                      'rung.')
  distribute.add_flags(p)
  p.add_argument('--workdir', default='runs/sweep')
  p.add_argument('--output', default='experiments/results/sweep')
  return p.parse_args(argv)


def plan_trials(args) -> tuple[object, list[tuple[dict, object]]]:
  """The base config and every trial's (trial, config), all checked before any trains."""
  base = common.load_config(args.config, args.config_overrides)
  plan = []
  for trial in trials(parse_grid(args.grid), args.random, args.seed, args.one_at_a_time):
    overrides = [*args.config_overrides, *(f'{k}={v}' for k, v in trial.items()),
                 f'num_seeds={args.num_seeds}', f'seed={args.seed}']
    config = common.load_config(args.config, overrides, validate=False)
    config.test_split = ''  # the test split is not even loaded while choosing
    config_check.validate_config(config)
    plan.append((trial, config))
  if len({config.best_by for _, config in plan}) > 1:
    raise errors.UserError('--grid: every trial must choose its best epoch alike to be ranked; '
                           'give best_by once, as --config.best_by=<metric>, not in the grid.')
  return base, plan


def rank(rows: list[dict], selection: metrics.Selection) -> list[dict]:
  """Best first by the selection's validation metric (its direction); a trial stopped early
  cannot win (its schedule did not finish), so it comes after every finished one."""
  sign = -1 if selection.higher_is_better else 1
  return sorted(rows, key=lambda r: (r['stopped_early'], sign * r[selection.key]))


def test_winner(winner: dict, base, output: str) -> None:
  """The only read of the test split: the winner's best variables, its report in
  <output>/winner_test/."""
  config, model, variables, history, best_epoch = build.load_best(winner['workdir'])
  test = build.data(base, which=('test',))['test']
  report_dir = os.path.join(output, 'winner_test')
  os.makedirs(report_dir, exist_ok=True)
  tester = build.evaluator_for(config, model, test)
  test_metrics = evaluator.report_on_test(tester, variables, test, report_dir, history)
  winner.update(test_accuracy=test_metrics['accuracy'], test_loss=test_metrics['loss'],
                best_epoch=best_epoch)


def main(argv=None):
  args = parse_args(argv)
  common.check_dirs(args)
  base, plan = plan_trials(args)
  selection = build.selection(plan[0][1])
  workdirs = [os.path.join(args.workdir, trial_name(trial)) for trial, _ in plan]
  with distribute.Runner(args, needs_ray=args.early_stopping) as runner:
    if args.early_stopping:
      outcomes = early_stopping.run(runner, [config for _, config in plan], workdirs, args)
    else:
      outcomes = runner.run([(config, w) for (_, config), w in zip(plan, workdirs)])
  rows = []
  for (trial, _), workdir, results in zip(plan, workdirs, outcomes):
    rows.append({'trial': trial, 'workdir': workdir, 'epochs': results['epochs'],
                 'stopped_early': bool(results.get('stopped_early')),
                 **{k: results[k] for k in dict.fromkeys(
                     ['validation_accuracy', 'validation_loss', selection.key])}})
  rows = rank(rows, selection)
  if rows[0]['stopped_early']:
    raise errors.UserError('every trial was stopped early; give a larger --grace_epochs or '
                           '--reduction_factor, or leave out --early_stopping.')
  test_winner(rows[0], base, args.output)
  machine = common.machine()
  common.write_json(os.path.join(args.output, 'sweep.json'),
                    {'machine': machine, 'provenance': provenance.describe(),
                     'config': args.config, 'grid': parse_grid(args.grid),
                     'overrides': args.config_overrides, 'selection': selection.as_json(),
                     'ranked': rows})
  full_epochs = common.load_config(args.config, validate=False).num_epochs
  md = markdown(rows, selection, args, machine, base.num_epochs, full_epochs)
  with files.atomic(os.path.join(args.output, 'sweep.md')) as f:
    f.write(md)
  print(md)
  return rows


def markdown(rows, selection, args, machine, epochs: int, full_epochs: int) -> str:
  shortened = (f' (SHORTENED: {epochs} of the config\'s {full_epochs} epochs per trial)'
               if epochs < full_epochs else '')
  extra = [] if selection.name in ('accuracy', 'loss') else [selection.key]
  lines = [f'# Sweep of {args.config} ranked by {selection.key.replace("_", " ")} '
           f'({"higher" if selection.higher_is_better else "lower"} is better){shortened}', '',
           f'Machine: {common.machine_line(machine)}. Code: '
           f'{provenance.code_line(provenance.describe())}. Overrides for every trial: '
           f'{" ".join(args.config_overrides) or "none"}. Test accuracy is measured for the '
           'winner only.', '',
           reporting.markdown_table(
               ['rank', 'trial', 'validation accuracy', 'validation loss',
                *[k.replace('_', ' ') for k in extra], 'epochs', 'test accuracy'],
               [[i, trial_name(r['trial']), f'{r["validation_accuracy"]:.4f}',
                 f'{r["validation_loss"]:.4f}', *[f'{r[k]:.4f}' for k in extra],
                 f'{r["epochs"]} (stopped early)' if r['stopped_early'] else r['epochs'],
                 f'{r["test_accuracy"]:.4f}' if 'test_accuracy' in r else '(not read)']
                for i, r in enumerate(rows, 1)])]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  cli.run_script(main)
