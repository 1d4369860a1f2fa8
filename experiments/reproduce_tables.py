"""Every model row of the reports (configs/reports/): the reported test accuracy beside ours.

    python -m experiments.reproduce_tables --workdir ~/fmnist_runs/reproduce_tables   # train, table
    python -m experiments.reproduce_tables --workdir ~/fmnist_runs/reproduce_tables --status
    python -m experiments.reproduce_tables --workdir ~/fmnist_runs/reproduce_tables --finished_only

Each row's config (configs/reports/<report>_<model>.py) carries the report's architecture,
optimizer, rate, batch size, epochs, augmentation, split and reported figure, and how many seeds
to train (config.report.num_seeds: 5 where a seed costs under about 10 minutes on a 2-core CPU, 3
otherwise). Each seed is one run in <workdir>/<row>/seed_<s>; a rerun of the same command resumes
the unfinished ones from their checkpoints and reuses the finished ones.

Every finished seed's results.json is also copied to --records (committed with the table), so a
later session on a fresh machine reuses it instead of training it again; a record is used only when
its config equals the row's and it was made by today's results version (fmnist_jax/provenance.py).
With --finished_only, a row none of whose seeds today's code has finished yet is shown from older
records, labeled with the code that made them, until it is regenerated.

A row's verdict: a report's figure is one training run, so it is compared with the spread of single
runs: "reproduced" when it lies inside the 95 % prediction interval for one new run of ours (mean ±
t(0.975, n-1) · s · sqrt(1 + 1/n)), "beaten" when the whole interval lies above it, "not
reproduced" when below; fewer than 2 seeds give no interval ("too few seeds"). The confidence
interval of our mean stays as a column (for comparing means, not single runs). Each row is judged
twice: ours as this project reports (the best-validation epoch's weights) and ours under the
report's protocol (the final weights after the report's epochs, config.report.protocol). A row
trained for fewer epochs than the report says SHORTENED, and a row with fewer finished seeds than asked says so, both in the row and in the title.

--other_records DIR completes a row from another machine's run of the same recipe: when fewer of
a row's own seeds are finished than asked, a record in DIR/<row>/ is used instead if its config
equals the row's except for how the seeds were run (num_seeds, steps_per_dispatch: a GPU run with
--vmap_seeds --num_seeds 5 --config.steps_per_dispatch=16) and it has at least as many seeds, from
the same first seed. The row says which machine trained it.

The MobileNetV2 transfer row needs Keras' ImageNet weight file (see docs). Without it the row is
trained with a randomly initialised backbone in <workdir>/<row>_random_backbone and says
"NOT PRETRAINED"; --require_pretrained makes a missing file an error instead.
"""
import glob
import os

from experiments.lib import common
from experiments.lib import distribute
from experiments.lib import runs
from fmnist_jax import build
from fmnist_jax import cli
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import files
from fmnist_jax import models
from fmnist_jax import provenance
from fmnist_jax import reporting

REPORT_CONFIGS = sorted(p for p in glob.glob(os.path.join(common.ROOT, 'configs/reports/*.py'))
                        if not os.path.basename(p).startswith('_'))
OUTPUT = os.path.join(common.ROOT, 'experiments/results/reproduce_tables')


def parse_args(argv=None):
  p = cli.ArgumentParser(prog=f'python -m {__spec__.name}', description=__doc__.split('\n')[0],
                         config_overrides=True)
  p.add_argument('--configs', nargs='+', default=REPORT_CONFIGS)
  p.add_argument('--num_seeds', type=int, default=None,
                 help='Seeds for every row (default: each row\'s config.report.num_seeds).')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--max_epochs', type=int, default=None,
                 help='Cap every row at this many epochs for slow machines (labeled SHORTENED).')
  p.add_argument('--full', nargs='*', default=[], metavar='CONFIG_NAME',
                 help='Rows that keep their full schedule despite --max_epochs.')
  p.add_argument('--vmap_seeds', action='store_true',
                 help='Train a row\'s seeds together in one process (vmapped on accelerators, '
                 'where it is faster) instead of one run per seed (as fast on a CPU).')
  p.add_argument('--require_pretrained', action='store_true',
                 help='Stop when the MobileNetV2 row\'s ImageNet weights are missing instead of '
                 'training it with a random backbone (labeled NOT PRETRAINED).')
  p.add_argument('--status', action='store_true',
                 help='Train nothing, write nothing: print which rows and seeds are finished.')
  p.add_argument('--finished_only', action='store_true',
                 help='Train nothing: write the table from the seeds finished so far.')
  distribute.add_flags(p)
  p.add_argument('--workdir', default='~/fmnist_runs/reproduce_tables')
  p.add_argument('--output', default=OUTPUT)
  p.add_argument('--records', default=None,
                 help='Where finished seeds\' results are kept (default: <output>/seeds); '
                 '"none" keeps none.')
  p.add_argument('--other_records', default=None, metavar='DIR',
                 help='Another machine\'s records of the same rows (e.g. a GPU run\'s <output>/'
                 'seeds): used for a row whose own seeds are not all finished.')
  args = p.parse_args(argv)
  if args.vmap_seeds and args.workers == 0:
    args.workers = 1  # the seeds of a row in one program, rows one after another
  args.workdir = os.path.expanduser(args.workdir)
  if args.records is None:
    args.records = os.path.join(args.output, 'seeds')
  elif args.records == 'none':
    args.records = None
  return args


def plan(args) -> list[dict]:
  """Loads and checks every row before any trains."""
  rows = []
  for path in args.configs:
    name = common.config_name(path)
    config = common.load_config(path, [f'seed={args.seed}', *args.config_overrides],
                                validate=False)
    if 'report' not in config:
      raise errors.UserError(f'--configs {path}: no config.report block; pass configs from '
                             'configs/reports/.')
    config.num_seeds = args.num_seeds or config.report.num_seeds
    report_epochs = config.num_epochs
    if args.max_epochs and name not in args.full:
      config.num_epochs = min(config.num_epochs, args.max_epochs)
    workdir = os.path.join(args.workdir, name)
    without = build.without_pretrained_weights(config)  # None: no pretrained weights to miss
    if without is not None:
      try:
        build.model(config).weights_file()
      except errors.WeightsUnavailableError as e:
        if args.require_pretrained:
          raise
        if not (args.status or args.finished_only):
          print(f'WARNING: {e}\nTraining {name} with a random backbone; its row says NOT '
                'PRETRAINED.', flush=True)
        config = without
        workdir += '_random_backbone'
        name += '_random_backbone'
    config_check.validate_config(config)
    rows.append({'name': name, 'path': path, 'config': config, 'report_epochs': report_epochs,
                 'workdir': workdir})
  return rows


def seed_status(row: dict, records: str | None, sequential: bool = True) -> list[dict]:
  """Per seed: 'finished' (with its test accuracy), 'in progress' (epochs done) or 'not started'."""
  config = row['config']
  out = []
  for label, run_dir, run_config in common.seed_runs(config, row['workdir'], sequential):
    record = records and os.path.join(records, row['name'], f'{label}.json')
    result = runs.finished_run(run_dir, run_config, record)
    entry = {'run': label.replace('_', ' '), 'epochs': config.num_epochs}
    if result is not None:
      entry.update(state='finished', test_accuracy=result['test_accuracy'])
    else:
      done = runs.epochs_done(run_dir)
      entry.update(state='in progress' if done else 'not started', epochs_done=done)
    out.append(entry)
  return out


# How a row's seeds were run, not what they trained: a record that differs only here is the
# same recipe.
SEED_RUNNING_FIELDS = ('num_seeds', 'steps_per_dispatch')


def other_record(row: dict, other_records: str | None, any_version: bool = False) -> dict | None:
  """results of a finished run of the row's recipe in `other_records`/<row>/, if one qualifies
  (made by today's results version, unless `any_version`)."""
  config = row['config']
  folder = other_records and os.path.join(other_records, row['name'])
  if not folder or not os.path.isdir(folder):
    return None
  for path in sorted(glob.glob(os.path.join(folder, '*.json'))):
    record = runs.read_record(path)
    results = record['results']
    seeds = common.per_seed(results, 'seed')
    if (runs.is_run_of(config, results, record['config'], SEED_RUNNING_FIELDS, any_version)
        and len(seeds) >= config.num_seeds and seeds[0] == config.seed):
      run = record['config']
      return dict(results, other_run=(
          f'seeds from another machine\'s run ({os.path.basename(path)}: num_seeds='
          f'{run.get("num_seeds", 1)}, steps_per_dispatch={run.get("steps_per_dispatch", 1)})'))
  return None


def row_results(row: dict, args, runner=None) -> dict | None:
  """The row's own seeds; another machine's complete run where its own are not all finished.
  `runner` (distribute.Runner) trains the missing seeds (side by side with --workers)."""
  records = args.records and os.path.join(args.records, row['name'])
  sequential = not args.vmap_seeds
  own = common.run_seeds(row['config'], row['workdir'], sequential, True, records)
  if own is not None and len(common.per_seed(own, 'test_accuracy')) >= row['config'].num_seeds:
    return own
  other = other_record(row, args.other_records)
  if other is not None:
    return other
  if not args.finished_only:
    return common.run_seeds(row['config'], row['workdir'], sequential, False, records,
                            runner=runner)
  if own is not None:
    return own
  # Nothing of today's code yet: the older records, labeled by the table, until regenerated.
  older = common.run_seeds(row['config'], row['workdir'], sequential, True, records,
                           any_version=True)
  if older is not None and len(common.per_seed(older, 'test_accuracy')) >= row['config'].num_seeds:
    return older
  return other_record(row, args.other_records, any_version=True) or older


def trained_on(results: dict) -> str:
  """The machine a row's runs trained on, as their results.json recorded it."""
  backend = results.get('backend')
  if backend is None:
    return 'unrecorded'
  if backend == 'cpu':
    return 'CPU'
  devices = results.get('device_kinds') or results.get('devices') or []
  return f'{backend.upper()} ({", ".join(sorted(set(devices)))})'


def status_text(rows: list[dict], records: str | None, sequential: bool = True,
                other_records: str | None = None) -> str:
  lines, total, finished = [], 0, 0
  for row in rows:
    seeds = seed_status(row, records, sequential)
    unfinished = any(s['state'] != 'finished' for s in seeds)
    other = other_record(row, other_records) if unfinished else None
    if other is not None:
      n = len(common.per_seed(other, 'test_accuracy'))
      total += len(seeds)
      finished += len(seeds)
      lines.append(f'{row["name"]}: {n} seeds finished on {trained_on(other)} (--other_records)')
      continue
    total += len(seeds)
    done = [s for s in seeds if s['state'] == 'finished']
    finished += len(done)
    parts = [f'{s["run"]} ' + (f'{s["test_accuracy"]:.4f}' if s['state'] == 'finished' else
                                      f'{s["epochs_done"]}/{s["epochs"]} epochs')
             for s in seeds]
    lines.append(f'{row["name"]}: {len(done)}/{len(seeds)} finished: ' + ', '.join(parts))
  return '\n'.join(lines + [f'{finished} of {total} runs finished.'])


def verdict(reported: float | None, summary: dict | None) -> str:
  """Where the reported figure (one run) lies relative to our 95 % prediction interval for one
  run."""
  if reported is None:
    return 'no figure reported'
  if summary is None:
    return 'not recorded (older code)'
  if summary['n'] < 2:
    return 'too few seeds to decide'
  if summary['pi95_low'] > reported:
    return 'beaten'
  if summary['pi95_high'] < reported:
    return 'not reproduced'
  return 'reproduced'


def table_row(row: dict, results: dict, args) -> dict:
  config = row['config']
  report = config.report
  accuracies = common.per_seed(results, 'test_accuracy')
  s = reporting.seed_summary(accuracies)
  final = common.per_seed(results, 'final_test_accuracy')
  f = reporting.seed_summary(final) if None not in final else None
  reported = report.reported_test_accuracy if report.reported_test_accuracy >= 0 else None
  weights = models.weights_of(config.model, results)  # None: no pretrained weights to say
  return {
      'report': report.title, 'file': report.file, 'row': report.row,
      'config': os.path.relpath(row['path'], common.ROOT), 'model': config.model,
      'num_params': results['num_params'],
      'report_num_params': report.num_params if report.num_params >= 0 else None,
      'reported_test_accuracy': reported,
      'ours_mean': s['mean'], 'ours_std': s['std'], 'ci95_low': s['ci95_low'],
      'ci95_high': s['ci95_high'], 'pi95_low': s['pi95_low'], 'pi95_high': s['pi95_high'],
      'min': s['min'], 'max': s['max'],
      'seeds': s['n'], 'seeds_asked': config.num_seeds,
      'verdict': verdict(reported, s),
      'difference': s['mean'] - reported if reported is not None else None,
      'report_protocol': report.get('protocol', 'final weights after the last epoch'),
      'final_mean': f and f['mean'], 'final_std': f and f['std'],
      'final_pi95_low': f and f['pi95_low'], 'final_pi95_high': f and f['pi95_high'],
      'final_verdict': verdict(reported, f),
      'per_seed_final_test_accuracy': final,
      'epochs_run': results['epochs'], 'report_epochs': row['report_epochs'],
      'shortened': results['epochs'] < row['report_epochs'],
      'selected_on_test': report.selected_on_test,
      'pretrained': None if weights is None else weights['pretrained'],
      'note': '; '.join(filter(None, [report.note, weights and weights['note'],
                                      results.get('other_run')] + [
          f'override {o}' for o in args.config_overrides
          if not o.startswith(('data_dir=', 'archives_dir=', 'progress_bar='))])),
      'per_seed_test_accuracy': accuracies,
      'wall_seconds_per_seed': results['train_seconds'] / s['n'],
      'trained_on': trained_on(results),
      'results_version': provenance.results_version(results),
      'made_by': provenance.code_line(results.get('provenance')),
  }


def main(argv=None):
  args = parse_args(argv)
  planned = plan(args)
  if not args.status:
    common.check_dirs(args)
  if args.status:
    print(status_text(planned, args.records, not args.vmap_seeds, args.other_records))
    return None
  rows = []
  with distribute.Runner(args) as runner:  # Ray starts only if a seed needs training
    for row in planned:
      results = row_results(row, args, runner)
      if results is None:
        print(f'{row["name"]}: no finished seed yet; left out of the table.')
        continue
      rows.append(table_row(row, results, args))
  machine = common.machine()
  os.makedirs(args.output, exist_ok=True)
  common.write_json(os.path.join(args.output, 'reproduction.json'),
                    {'machine': machine, 'provenance': provenance.describe(), 'rows': rows})
  md = markdown(rows, machine, len(planned))
  with files.atomic(os.path.join(args.output, 'reproduction.md')) as f:
    f.write(md)
  print(md)
  return rows


def _cells(r: dict) -> dict[str, str]:
  pct = lambda x: f'{x:.2%}'
  spread = lambda low, high: f'{pct(low)} – {pct(high)}' if r['seeds'] > 1 else '—'
  std = lambda x: f' ± {x * 100:.2f}' if r['seeds'] > 1 else ''
  final = (f'{pct(r["final_mean"])}{std(r["final_std"])}' if r.get('final_mean') is not None
           else 'not recorded (older code)')
  params = f'{r["num_params"]:,}' + (f' ({r["report_num_params"]:,})'
                                     if r['report_num_params'] else ' (—)')
  return {
      'report': f'{r["report"]} (`{r["file"]}`)',
      'model row': f'{r["row"]} (`{r["config"]}`)',
      'parameters: ours (report)': params,
      'reported': pct(r['reported_test_accuracy']) if r['reported_test_accuracy'] else '—',
      "report's protocol": r.get('report_protocol', '—'),
      'seeds': f'{r["seeds"]}' + (f' of {r["seeds_asked"]} asked'
                                  if r['seeds'] < r['seeds_asked'] else ''),
      'ours (best-validation epoch): mean ± std': f'{pct(r["ours_mean"])}{std(r["ours_std"])}',
      '95 % CI of our mean': spread(r['ci95_low'], r['ci95_high']),
      '95 % PI for one run': spread(r['pi95_low'], r['pi95_high']),
      'verdict': f'**{r["verdict"]}**',
      "ours (report's protocol: final weights): mean ± std": final,
      "its 95 % PI for one run": (spread(r['final_pi95_low'], r['final_pi95_high'])
                                  if r.get('final_mean') is not None else '—'),
      "verdict (report's protocol)": f'**{r.get("final_verdict", "not recorded (older code)")}**',
      'min – max': f'{pct(r["min"])} – {pct(r["max"])}',
      'epochs run / report': f'{r["epochs_run"]} / {r["report_epochs"]}'
                             + (' SHORTENED' if r['shortened'] else ''),
      'training time per seed (machine)':
          f'{r["wall_seconds_per_seed"] / 60:.1f} min ({r["trained_on"]})',
      'made by': r.get('made_by', provenance.code_line(None)),
      'report selected on test?': r['selected_on_test'],
      'note': r['note'],
  }


def summary_table(rows: list[dict]) -> str:
  """The README's headline: one line per row, the verdicts first."""
  header = ['verdict', "verdict (report's protocol)", 'report row', 'reported', 'ours (seeds)',
            '95 % PI for one run', "ours (report's protocol)", 'made by',
            'report selected on test?']
  cells = []
  for r in rows:
    c = _cells(r)
    seeds = c['seeds'] + (' SHORTENED' if r['shortened'] else '')
    cells.append([c['verdict'], c["verdict (report's protocol)"],
                  f'{r["row"]} ({r["file"].removesuffix(".md")})', c['reported'],
                  f'{c["ours (best-validation epoch): mean ± std"]} ({seeds}, {r["trained_on"]})',
                  c['95 % PI for one run'], c["ours (report's protocol: final weights): mean ± std"],
                  c['made by'], r['selected_on_test'].split(':')[0]])
  return reporting.markdown_table(header, cells)


RULE = ('A report\'s figure is one training run, so it is judged against the 95 % prediction '
        'interval for one run of ours (mean ± t · s · √(1 + 1/n)): *reproduced* inside it, '
        '*beaten* when the whole interval lies above, *not reproduced* when below. Each row is '
        'judged twice: ours as this project reports (the best-validation epoch\'s weights; the '
        'test split never selects anything) and ours under the report\'s own protocol (the final '
        'weights after its epochs).')


def markdown(rows: list[dict], machine: dict, rows_planned: int) -> str:
  caveats = []
  if any(r['shortened'] for r in rows):
    caveats.append('SOME ROWS SHORTENED')
  if any(r['seeds'] < r['seeds_asked'] for r in rows):
    caveats.append('SOME ROWS HAVE FEWER SEEDS THAN ASKED')
  if len(rows) < rows_planned:
    caveats.append(f'{rows_planned - len(rows)} OF {rows_planned} ROWS NOT RUN YET')
  if any(r.get('results_version') != provenance.RESULTS_VERSION for r in rows):
    caveats.append('SOME ROWS FROM OLDER CODE')
  title = 'Report rows reproduced' + (f' ({"; ".join(caveats)})' if caveats
                                      else ' (full schedules, all seeds)')
  cells = [_cells(r) for r in rows]
  header = list(cells[0]) if cells else []
  lines = [f'# {title}', '',
           f'Table written on: {common.machine_line(machine)}, by '
           f'{provenance.code_line(provenance.describe())}; each row names the code that trained '
           f'it ("made by"; today\'s code is results version {provenance.RESULTS_VERSION}). '
           + RULE + ' The 95 % confidence interval of our mean is there for comparing means. '
           'Validation is carved out of train. Training time per seed: a run\'s training time '
           'divided by its seeds, on the machine that trained the row (other work shared it; a '
           'GPU run trains a row\'s seeds together, vmapped).', '',
           reporting.markdown_table(header, [list(c.values()) for c in cells]), '',
           '## In short (the README\'s headline)', '', summary_table(rows)]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  cli.run_script(main)
