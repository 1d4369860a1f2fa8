"""Time to accuracy of every committed config: training seconds and epochs until validation
accuracy first reaches 0.90, 0.92, 0.93, 0.94, 0.95, and the final test accuracy over seeds.

    python -m experiments.time_to_accuracy    # experiments/results/time_to_accuracy/, docs/results.md

Reads every committed seed record (experiments/results/**/seeds/<config>/seed_<s>.json: the
`config` and `results` of one seed's run, its history with each epoch's training seconds; also
multi-seed records and cpu_full_runs/) and writes time_to_accuracy.{md,json} and
time_to_accuracy.png (mean validation accuracy against training minutes, one line per config). Times are training seconds only (validation excluded), as
each run recorded them on its machine: runs that shared their CPU with other work read slower than
they would alone, so compare figures of one machine and one sitting. Thresholds are read on
validation (selection never touches test); the test column is each seed's best epoch, chosen by
the metric its run chose it by (results.json's 'selection': validation accuracy unless the run's
config.best_by said otherwise; the cell names any other).
"""
from __future__ import annotations

import glob
import os

import numpy as np

from fmnist_jax import cli
from fmnist_jax import files
from fmnist_jax import metrics
from fmnist_jax import provenance
from fmnist_jax import reporting
from fmnist_jax import seeds

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
THRESHOLDS = (0.90, 0.92, 0.93, 0.94, 0.95)


def seed_records(root: str) -> dict[str, list[dict]]:
  """'<comparison>/<config>' -> its seeds' results: every seed record under `root`
  (seeds/<config>/seed_<s>.json), each seed of a multi-seed record (seeds/<config>/seeds_*.json,
  seeds trained together: its seconds are all seeds'), and the single runs of cpu_full_runs/."""
  groups = {}
  for path in sorted(glob.glob(os.path.join(root, '**', 'seeds', '*', 'seed*.json'),
                          recursive=True)):
    results = files.read_json(path, 'Restore it from git.', required=('results',))['results']
    name = os.path.relpath(os.path.dirname(path), root).replace(os.sep + 'seeds' + os.sep, '/')
    if 'per_seed' not in results:
      groups.setdefault(name, []).append(results)
      continue
    for k, own in enumerate(results['per_seed']):
      groups.setdefault(f'{name} ({len(results["per_seed"])} seeds together)', []).append(
          {**results, **own, 'history': seeds.history(results['history'], k)})
  for path in sorted(glob.glob(os.path.join(root, 'cpu_full_runs', '*.json'))):
    results = files.read_json(path, 'Restore it from git.', required=('history',))
    groups[os.path.relpath(path, root)[:-len('.json')]] = [results]
  return groups


def reached(history: list[dict], threshold: float) -> tuple[float, int] | None:
  """(training seconds, epoch) when validation accuracy first reached `threshold`; None if never."""
  seconds = 0.0
  for h in history:
    seconds += h['train_seconds']
    if h['validation_accuracy'] >= threshold:
      return seconds, h['epoch']
  return None


def machine(results: dict) -> str:
  kinds = results.get('device_kinds')
  backend = results.get('backend', '?')
  return f'{backend} ({kinds[0]})' if kinds and kinds[0] != backend else backend


def summarize(name: str, runs: list[dict]) -> dict:
  """One row: per threshold the mean minutes and epochs over the seeds that reached it."""
  row = {'config': name, 'seeds': len(runs), 'machine': machine(runs[0]),
         'results_version': provenance.results_version(runs[0]),
         'epochs': runs[0]['epochs'],
         'seconds_per_epoch': float(np.mean([h['train_seconds'] for r in runs
                                             for h in r['history']])),
         'test_accuracy': reporting.seed_summary([r['test_accuracy'] for r in runs]),
         # the epoch whose test accuracy is shown: the best by the runs' own selection
         'best_by': sorted({metrics.selection_of(r).key for r in runs}),
         'reached': {}}
  for t in THRESHOLDS:
    hits = [reached(r['history'], t) for r in runs]
    hits = [h for h in hits if h is not None]
    row['reached'][f'{t:.2f}'] = None if not hits else {
        'seeds': len(hits), 'minutes': float(np.mean([s for s, _ in hits])) / 60,
        'epochs': float(np.mean([e for _, e in hits]))}
  return row


def _cell(hit, n: int) -> str:
  if hit is None:
    return '—'
  text = f'{hit["minutes"]:.1f} min ({hit["epochs"]:.0f} ep)'
  return text if hit['seeds'] == n else f'{text}, {hit["seeds"]}/{n} seeds'


def table(rows: list[dict]) -> str:
  header = ['config', 'made by', 'seeds', 's / epoch', *[f'val ≥ {t:.2f}' for t in THRESHOLDS],
            'test accuracy (95 % CI of the mean)']
  body = []
  for r in rows:
    s = r['test_accuracy']
    test = f'{s["mean"]:.4f}' + (f' [{s["ci95_low"]:.4f}, {s["ci95_high"]:.4f}]' if s['n'] > 1
                                 else ' (1 seed)')
    if r['best_by'] != ['validation_accuracy']:
      test += f' (epoch best by {", ".join(k.replace("_", " ") for k in r["best_by"])})'
    body.append([f'`{r["config"]}`', f'v{r["results_version"]}, {r["machine"]}', r['seeds'],
                 f'{r["seconds_per_epoch"]:.0f}',
                 *[_cell(r['reached'][f'{t:.2f}'], r['seeds']) for t in THRESHOLDS], test])
  return reporting.markdown_table(header, body)


def plot(groups: dict[str, list[dict]], path: str) -> None:
  """One panel per machine kind (CPU, GPU): mean validation accuracy against training minutes."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  machines = sorted({machine(runs[0]) for runs in groups.values()})
  fig, axes = plt.subplots(len(machines), 1, figsize=(12, 5 * len(machines)), squeeze=False)
  colors = plt.get_cmap('tab20').colors
  for ax, kind in zip(axes[:, 0], machines):
    names = [n for n, runs in groups.items() if machine(runs[0]) == kind]
    for i, name in enumerate(names):
      runs = groups[name]
      epochs = min(len(r['history']) for r in runs)
      minutes = np.mean([np.cumsum([h['train_seconds'] for h in r['history'][:epochs]]) / 60
                         for r in runs], axis=0)
      accuracy = np.mean([[h['validation_accuracy'] for h in r['history'][:epochs]]
                          for r in runs], axis=0)
      ax.plot(minutes, accuracy, marker='.', color=colors[i % len(colors)],
              ls='-' if i < len(colors) else '--', label=f'{name} ({len(runs)} seeds)')
    for t in THRESHOLDS:
      ax.axhline(t, color='grey', lw=0.5, ls=':')
    ax.set(xscale='log', xlabel='training minutes (log scale)', ylim=(0.85, 0.96),
           ylabel='validation accuracy (mean over seeds)', title=f'Time to accuracy on {kind}')
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  with files.atomic(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=110, bbox_inches='tight')
  plt.close(fig)


DOCS = os.path.join(os.path.dirname(RESULTS), '..', 'docs', 'results.md')
START, END = '<!-- time to accuracy: written by experiments/time_to_accuracy.py -->', \
    '<!-- end of time to accuracy -->'


def update_docs(path: str, text: str) -> None:
  """Replaces the block between the two markers in `path` (docs/results.md) with the table."""
  with open(path) as f:
    doc = f.read()
  if START not in doc or END not in doc:
    raise SystemExit(f'ERROR: {path} lacks the markers {START!r} and {END!r}.')
  before, rest = doc.split(START)
  with files.atomic(path) as f:
    f.write(f'{before}{START}\n{text}\n{END}{rest.split(END)[1]}')


def main(argv=None) -> list[dict]:
  parser = cli.ArgumentParser(prog=f'python -m {__spec__.name}',
                              description=__doc__.splitlines()[0])
  parser.add_argument('--records', default=RESULTS, help='folder searched for seeds/ records')
  parser.add_argument('--output', default=os.path.join(RESULTS, 'time_to_accuracy'))
  parser.add_argument('--docs', default=DOCS, help="a page whose marked block gets the table "
                      "('' for none)")
  args = parser.parse_args(argv)
  groups = seed_records(args.records)
  if not groups:
    raise SystemExit(f'ERROR: no seed records under {args.records}')
  # By machine, then by time to 0.90 (never reached: last).
  rows = sorted((summarize(n, r) for n, r in groups.items()),
                key=lambda r: (r['machine'], (r['reached']['0.90'] or {'minutes': 1e9})['minutes']))
  os.makedirs(args.output, exist_ok=True)
  files.write_json(os.path.join(args.output, 'time_to_accuracy.json'), rows)
  text = table(rows)
  with files.atomic(os.path.join(args.output, 'time_to_accuracy.md')) as f:
    f.write(text + '\n')
  plot(groups, os.path.join(args.output, 'time_to_accuracy.png'))
  if args.docs:
    update_docs(args.docs, text)
  print(text)
  return rows


if __name__ == '__main__':
  cli.run_script(main)
