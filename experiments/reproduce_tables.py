"""Every model row of the reports in ../shared/reports: the reported test accuracy beside ours.

    python experiments/reproduce_tables.py                      # every config in configs/reports/
    python experiments/reproduce_tables.py --num_seeds 2 --max_epochs 2     # shortened, labeled

Each row's config (configs/reports/<report>_<model>.py) carries the report's architecture,
optimizer, rate, batch size, epochs, augmentation and split, and the reported figure. Runs go to
<workdir>/<config name>; a rerun resumes or reuses them. A row trained for fewer epochs than the
report says "SHORTENED" in its own cells and in the table's title.

The MobileNetV2 transfer row needs Keras' ImageNet weight file (see README). Without it the row is
trained with a randomly initialised backbone in <workdir>/<config name>_random_backbone and says
"NOT PRETRAINED"; --require_pretrained makes a missing file an error instead.
"""
import argparse
import glob
import os

import common  # pylint: disable=g-bad-import-order

from fmnist_jax import pretrained
from fmnist_jax import reporting
from fmnist_jax import train

REPORT_CONFIGS = sorted(p for p in glob.glob(os.path.join(common.ROOT, 'configs/reports/*.py'))
                        if not os.path.basename(p).startswith('_'))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--configs', nargs='+', default=REPORT_CONFIGS)
  p.add_argument('--num_seeds', type=int, default=None,
                 help='Seeds for every row (default: each row\'s config.report.num_seeds, 5 for '
                 'rows that cost under about 10 minutes a seed on a 2-core CPU, else 3).')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--max_epochs', type=int, default=None,
                 help='Cap every row at this many epochs for slow machines (labeled SHORTENED).')
  p.add_argument('--full', nargs='*', default=[], metavar='CONFIG_NAME',
                 help='Rows that keep their full schedule despite --max_epochs.')
  p.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE',
                 help='Overrides for every row (e.g. data_dir=...); shown in each row\'s note.')
  p.add_argument('--vmap_seeds', action='store_true',
                 help='Train a row\'s seeds vmapped in one program (faster on accelerators) '
                 'instead of one run per seed in <workdir>/<row>/seed_<s> (faster on a CPU).')
  p.add_argument('--require_pretrained', action='store_true',
                 help='Stop when the MobileNetV2 row\'s ImageNet weights are missing instead of '
                 'training it with a random backbone (labeled NOT PRETRAINED).')
  p.add_argument('--workdir', default='runs/reproduce_tables')
  p.add_argument('--output', default='experiments/results/reproduce_tables')
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  planned = []
  for path in args.configs:  # load and check every row before training any.
    name = common.config_name(path)
    config = common.load_config(path, [f'seed={args.seed}', *args.set], validate=False)
    if 'report' not in config:
      raise SystemExit(f'{path} has no config.report block; is it a report config?')
    config.num_seeds = args.num_seeds or config.report.num_seeds
    report_epochs = config.num_epochs
    if args.max_epochs and name not in args.full:
      config.num_epochs = min(config.num_epochs, args.max_epochs)
    workdir = os.path.join(args.workdir, name)
    if 'backbone' in config:
      try:
        pretrained.resolve(config.backbone.weights)
      except pretrained.WeightsUnavailableError as e:
        if args.require_pretrained:
          raise SystemExit(f'ERROR: {e}') from e
        print(f'WARNING: {e}\nTraining {name} with a random backbone; its row says NOT '
              'PRETRAINED.', flush=True)
        config.backbone.weights = 'random'
        workdir += '_random_backbone'
    train.validate_config(config)
    planned.append((name, path, config, report_epochs, workdir))

  rows = []
  for name, path, config, report_epochs, workdir in planned:
    results = common.run_seeds(config, workdir, not args.vmap_seeds)
    backbone = results.get('backbone')
    s = reporting.seed_summary(common.per_seed(results, 'test_accuracy'))
    reported = config.report.reported_test_accuracy
    rows.append({
        'report': config.report.title, 'file': config.report.file, 'row': config.report.row,
        'config': os.path.relpath(path, common.ROOT), 'model': config.model,
        'num_params': results['num_params'],
        'reported_test_accuracy': reported if reported >= 0 else None,
        'ours_mean': s['mean'], 'ours_std': s['std'], 'seeds': s['n'],
        'difference': s['mean'] - reported if reported >= 0 else None,
        'epochs_run': results['epochs'], 'report_epochs': report_epochs,
        'shortened': results['epochs'] < report_epochs,
        'pretrained': None if backbone is None else backbone['pretrained'],
        'note': '; '.join(filter(None, [config.report.note, _backbone_note(backbone)] + [
            f'override {o}' for o in args.set if not o.startswith(('data_dir=', 'progress_bar='))])),
        'per_seed_test_accuracy': common.per_seed(results, 'test_accuracy'),
        'wall_seconds': results['train_seconds'],
    })
  machine = common.machine()
  os.makedirs(args.output, exist_ok=True)
  common.write_json(os.path.join(args.output, 'reproduction.json'),
                    {'machine': machine, 'rows': rows})
  md = markdown(rows, machine)
  with open(os.path.join(args.output, 'reproduction.md'), 'w') as f:
    f.write(md)
  print(md)
  return rows


def _backbone_note(backbone) -> str:
  """Says whether the row's backbone was pretrained; only a loaded, trained weight file is."""
  if backbone is None:
    return ''
  if not backbone['pretrained']:
    return ('**NOT PRETRAINED**: randomly initialised MobileNetV2 backbone, so this row does not '
            'test the report\'s transfer claim')
  return (f'pretrained: Keras weight file {os.path.basename(backbone["file"])} loaded '
          f'(sha256 {backbone["sha256"][:12]}…)')


def markdown(rows, machine) -> str:
  shortened = any(r['shortened'] for r in rows)
  title = 'Report rows reproduced' + (' (SOME ROWS SHORTENED: see the epochs column)'
                                      if shortened else ' (full schedules)')
  lines = [f'# {title}', '', f'Machine: {common.machine_line(machine)}. Ours: mean ± sample std '
           'of the test accuracy over seeds, each seed evaluated at its best validation epoch '
           '(validation carved out of train; the test split is never used for selection).', '',
           '| report | model | parameters | reported | ours (mean ± std, seeds) | difference | '
           'epochs run / report | note |', '|' + ' --- |' * 8]
  for r in rows:
    reported = f'{r["reported_test_accuracy"]:.2%}' if r['reported_test_accuracy'] else '—'
    diff = f'{r["difference"] * 100:+.2f} points' if r['difference'] is not None else '—'
    epochs = f'{r["epochs_run"]} / {r["report_epochs"]}' + (' SHORTENED' if r['shortened'] else '')
    lines.append(f'| {r["report"]} ({r["file"]}) | {r["row"]} (`{r["config"]}`) | '
                 f'{r["num_params"]:,} | {reported} | {r["ours_mean"]:.2%} ± '
                 f'{r["ours_std"] * 100:.2f} ({r["seeds"]}) | {diff} | {epochs} | {r["note"]} |')
  if shortened:
    lines += ['', 'To run every row on its full schedule (an accelerator is advised; on a 2-core CPU '
              'the two VGG-style rows take 3 to 5 minutes an epoch and seed): '
              '`python experiments/reproduce_tables.py --num_seeds 5`.']
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
