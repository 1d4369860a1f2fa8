"""MLP vs CNN vs BN-CNN (or any configs) over seeds: mean ± std, 95 % intervals, Welch tests.

    python -m experiments.compare_architectures                    # the default configs, 5 seeds
    python -m experiments.compare_architectures --num_seeds 3 --epochs 2 \\
        --config.train_split='train[:5000]'

With --workers 1 (the default on 2 cores or fewer) a config's seeds train together in one process
(config.num_seeds, one program) in <workdir>/<config name>, or with --sequential one after another
in <workdir>/<config name>/seed_<s>; otherwise each seed is a run of its own there, side by side as
Ray tasks (experiments/lib/distribute.py). A rerun resumes or reuses finished runs. Writes
comparison.{csv,json,md}, accuracy.png and validation_curves.png to --output. A run with --epochs or
--config.<field>=<value> overrides (applied to every config) says so in every table row. Each
registered metric a config computes (config.metrics, e.g. macro_f1) gets its own column of test
figures over the seeds beside accuracy, and its per-seed values in comparison.json; the Welch tests
compare test accuracy.
--against adds the rows of an earlier comparison.json (a committed run of the originals, say; a
suffix :<config name>[,<config name>] picks rows) to the table and the Welch tests without training
them again; each such row names its file and date.
"""
import csv
import json
import os

from experiments.lib import common
from experiments.lib import distribute
from fmnist_jax import cli
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import reporting

DEFAULT_CONFIGS = ['configs/mlp.py', 'configs/cnn.py', 'configs/bn_cnn.py']


def parse_args(argv=None):
  p = cli.ArgumentParser(prog=f'python -m {__spec__.name}', description=__doc__.split('\n')[0],
                         config_overrides=True)
  p.add_argument('--configs', nargs='+', default=DEFAULT_CONFIGS)
  p.add_argument('--num_seeds', type=int, default=5)
  p.add_argument('--seed', type=int, default=0, help='First seed; seeds are seed..seed+N-1.')
  p.add_argument('--epochs', type=int, default=None,
                 help='Shorten every config to this many epochs (labeled in the tables).')
  p.add_argument('--sequential', action='store_true',
                 help='Train the seeds as separate runs instead of together in one process: '
                      'about as fast on a CPU, with the same numbers there (on accelerators, where '
                      'seeds are vmapped, up to float rounding).')
  p.add_argument('--finished_only', action='store_true',
                 help='Train nothing: tabulate the seeds whose runs have finished (a row then '
                      'says how many of --num_seeds it has).')
  p.add_argument('--records', default=None,
                 help='Keep each finished seed\'s results in <records>/<config name>/ and reuse '
                 'them on a machine without the run (see reproduce_tables.py).')
  p.add_argument('--against', nargs='+', default=[], metavar='COMPARISON_JSON[:NAMES]',
                 help='Rows of earlier comparisons (their comparison.json, optionally only the '
                      'configs named after a colon, comma-separated) to test against, trained '
                      'nothing.')
  distribute.add_flags(p)
  p.add_argument('--workdir', default='runs/compare_architectures')
  p.add_argument('--output', default='experiments/results/compare_architectures')
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  common.check_dirs(args)
  if args.num_seeds < 2:
    raise errors.UserError(f'--num_seeds {args.num_seeds}: it must be at least 2 for a spread '
                           'and a test.')
  overrides = [f'num_seeds={args.num_seeds}', f'seed={args.seed}', *args.config_overrides]
  if args.epochs:
    overrides.append(f'num_epochs={args.epochs}')
  # Every config is loaded and checked before anything trains.
  configs = {common.config_name(p): (p, common.load_config(p, overrides)) for p in args.configs}
  full_epochs = {name: common.load_config(p, validate=False).num_epochs
                 for name, (p, _) in configs.items()}
  changed = ' '.join([o for o in args.config_overrides
                      if o.split('=')[0] not in config_check.NOT_COMPARED]
                     + ([f'num_epochs={args.epochs}'] if args.epochs else []))
  label = f'SHORTENED/CHANGED ({changed})' if changed else 'full schedule'
  earlier = [earlier_rows(path) for path in args.against]  # read before anything trains

  rows, accuracies, curves = [], {}, {}
  with distribute.Runner(args) as runner:
    all_results = common.run_rows(
        [(config, os.path.join(args.workdir, name), args.sequential,
          args.records and os.path.join(args.records, name))
         for name, (_, config) in configs.items()], args.finished_only, runner=runner)
  for (name, (path, config)), results in zip(configs.items(), all_results):
    if results is None:
      print(f'{name}: no finished run in {args.workdir}; left out.')
      continue
    rows.append(table_row(path, config, results, full_epochs[name], label, args.num_seeds))
    accuracies[name] = rows[-1]['per_seed_test_accuracy']
    curves[name] = common.validation_curves(results)
  for row in (r for group in earlier for r in group):
    while row['name'] in accuracies:
      row['name'] += "'"
    accuracies[row['name']] = row['per_seed_test_accuracy']
    rows.append(row)
  if not rows:
    raise errors.UserError(f'No finished run in {args.workdir} and no --against rows: nothing to '
                           'tabulate (leave out --finished_only to train).')
  tests = reporting.welch_tests(accuracies)
  machine = common.machine()
  os.makedirs(args.output, exist_ok=True)
  common.write_json(os.path.join(args.output, 'comparison.json'),
                    {'machine': machine, 'provenance': provenance.describe(), 'label': label,
                     'rows': rows, 'welch_tests': tests})
  with files.atomic(os.path.join(args.output, 'comparison.csv')) as f:
    scalar = lambda r: {k: v for k, v in r.items() if not isinstance(v, list)}  # no per-seed lists
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in scalar(r))))
    writer.writeheader()
    for r in rows:
      writer.writerow(scalar(r))
  partial = any(r['seeds'] < r['seeds_asked'] for r in rows)
  title = (f'Test accuracy over {"up to " if partial else ""}{args.num_seeds} seeds ({label}'
           + ('; some rows have unfinished seeds' if partial else '') + ')')
  reporting.plot_seed_accuracies(accuracies, os.path.join(args.output, 'accuracy.png'), title)
  bands = os.path.join(args.output, 'validation_curves.png')
  if curves:  # earlier rows bring no curves
    reporting.plot_validation_bands(curves, bands,
                                    f'Validation accuracy, mean ± std over seeds ({label})')
  elif os.path.exists(bands):
    os.remove(bands)
  md = markdown(rows, tests, machine, title)
  with files.atomic(os.path.join(args.output, 'comparison.md')) as f:
    f.write(md)
  print(md)
  return rows, tests


def table_row(path: str, config, results: dict, config_epochs: int, label: str,
              seeds_asked: int) -> dict:
  """One config's row: test accuracy over its seeds (at each seed's best epoch), and each
  registered metric it computed (config.metrics) beside it."""
  accuracies = common.per_seed(results, 'test_accuracy')
  s = reporting.seed_summary(accuracies)
  return {
      'config': path, 'model': config.model, 'epochs': results['epochs'],
      'config_epochs': config_epochs, 'schedule': label, 'seeds': s['n'],
      'seeds_asked': seeds_asked,
      'test_accuracy_mean': s['mean'], 'test_accuracy_std': s['std'],
      'ci95_low': s['ci95_low'], 'ci95_high': s['ci95_high'], 'min': s['min'], 'max': s['max'],
      **metric_figures(config.metrics, results),
      'num_params': results['num_params'],
      'train_images_per_second_all_seeds': results['train_images_per_second'],
      'wall_seconds': results['train_seconds'],
      'per_seed_test_accuracy': accuracies,
      'made_by': provenance.code_line(results.get('provenance')),
  }


def metric_figures(names, results: dict) -> dict:
  """Each registered metric in `names` on test over the seeds, as test accuracy has them: mean,
  std and each seed's value (test_<name> in results.json; left out where a run lacks it)."""
  out = {'metrics': []}
  for name in names:
    values = common.per_seed(results, f'test_{name}')
    if not values or None in values:
      continue
    s = reporting.seed_summary(values)
    out['metrics'].append(name)
    out.update({f'test_{name}_mean': s['mean'], f'test_{name}_std': s['std'],
                f'per_seed_test_{name}': values})
  return out


def earlier_rows(arg: str) -> list[dict]:
  """The rows of an earlier comparison.json ('<path>[:<names>]'), named '<config> (<date> run)'."""
  path, names = arg, None
  if not os.path.isfile(arg) and ':' in arg:
    path, names = arg.rsplit(':', 1)
    names = names.split(',')
  if not os.path.isfile(path):
    raise errors.UserError(f'--against {path}: no such file; pass a comparison.json from '
                           'experiments/results/*/.')
  try:
    with open(path) as f:
      earlier = json.load(f)
    machine, rows = earlier['machine'], earlier['rows']
    date, have = machine['date'], [common.config_name(r['config']) for r in rows]
    if any(len(r['per_seed_test_accuracy']) < 2 for r in rows):
      raise ValueError('a row with fewer than 2 seeds')
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'--against {path}: not a comparison.json written by this script '
                           f'({e}); pass one from experiments/results/*/.') from None
  if missing := [n for n in names or [] if n not in have]:
    raise errors.UserError(f'--against {arg}: {path} has no row {", ".join(missing)}; its rows: '
                           f'{", ".join(have)}.')
  picked = []
  for r, name in zip(rows, have):
    if not names or name in names:
      picked.append(dict(r, name=f'{name} ({date} run)',
                         source=f'{path}, {common.machine_line(machine)}'))
  return picked


def _config_cell(row) -> str:
  return f'{row["config"]} (earlier run: {row["source"]})' if 'source' in row else row['config']


def _seeds_cell(row) -> str:
  if row['seeds'] == row['seeds_asked']:
    return str(row['seeds'])
  return f'{row["seeds"]} of {row["seeds_asked"]} (the others unfinished)'


def _metric_cell(row, name: str) -> str:
  if f'test_{name}_mean' not in row:
    return '—'
  return f'{row[f"test_{name}_mean"]:.4f} ± {row[f"test_{name}_std"]:.4f}'


def markdown(rows, tests, machine, title) -> str:
  names = list(dict.fromkeys(m for r in rows for m in r.get('metrics', [])))
  table = reporting.markdown_table(
      ['config', 'model', 'epochs', 'seeds', 'test accuracy (mean ± std)', '95 % interval', 'min',
       'max', *[f'test {m} (mean ± std)' for m in names], 'parameters',
       'train images/s (all seeds)', 'wall time', 'schedule', 'made by'],
      [[_config_cell(r), r['model'], r['epochs'], _seeds_cell(r),
        f'{r["test_accuracy_mean"]:.4f} ± {r["test_accuracy_std"]:.4f}',
        f'[{r["ci95_low"]:.4f}, {r["ci95_high"]:.4f}]', f'{r["min"]:.4f}', f'{r["max"]:.4f}',
        *[_metric_cell(r, m) for m in names], f'{r["num_params"]:,}',
        f'{r["train_images_per_second_all_seeds"]:,.0f}',
        f'{r["wall_seconds"] / 60:.1f} min', r['schedule'],
        r.get('made_by', provenance.code_line(None))] for r in rows])
  welch = reporting.markdown_table(
      ['a', 'b', 'mean difference', 't', 'p', 'p (Holm)', 'p (Holm) < 0.05'],
      [[t['a'], t['b'], f'{t["mean_difference"]:+.4f}', f'{t["t"]:.2f}', f'{t["p_value"]:.3g}',
        f'{t["p_holm"]:.3g}', 'yes' if t['significant_at_0.05_holm'] else 'no'] for t in tests])
  return '\n'.join([f'# {title}', '', f'Machine: {common.machine_line(machine)}. Code: '
                     f'{provenance.code_line(provenance.describe())}; each row\'s own in the '
                     'table.', '', table, '',
                     "Welch's t-test on the per-seed test accuracies (two-sided). With several "
                     "pairs in one table, read p (Holm): Holm's step-down adjustment over all of "
                     'them, which keeps the chance of any false difference at 5 %; the raw p is '
                     'for one pair chosen in advance.', '', welch]) + '\n'


if __name__ == '__main__':
  cli.run_script(main)
