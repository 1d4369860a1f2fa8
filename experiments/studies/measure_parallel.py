"""Wall time of the experiment scripts one run at a time and side by side, and their numbers.

    python -m experiments.studies.measure_parallel --workdir ~/runs/parallel

1. The same comparison (2 configs × 4 seeds, shortened) three ways: `--workers 1` (one run at a
   time on all cores, no Ray), `--workers 1 --cores_per_run 1` (Ray, one 1-core run at a time) and
   `--workers 2` (Ray, two 1-core runs at a time); wall time of each and whether the per-seed
   numbers are identical.
2. The same sweep with 2 workers, without and with `--early_stopping` (ASHA): wall time and winner.

Every command starts from an empty workdir and, where the machine allows (root), runs in a network
namespace with only the loopback interface, as the tests do. Run it on an otherwise idle machine.
Writes <output>/parallel.{json,md}.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from experiments.lib import common
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import reporting

COMPARE = ['-m', 'experiments.compare_architectures', '--configs', 'configs/mlp.py',
           'configs/cnn.py', '--num_seeds', '4', '--epochs', '5', '--sequential']
SWEEP = ['-m', 'experiments.sweep', '--config', 'configs/cnn.py', '--grid',
         'learning_rate=0.001,0.01,0.0003,0.003', 'batch_size=128,64,256', '--config.num_epochs=9']
COMPARE_WAYS = {'one at a time, all cores, no Ray': ['--workers', '1'],
                'Ray, 1 worker of 1 core': ['--workers', '1', '--cores_per_run', '1'],
                'Ray, 2 workers of 1 core': ['--workers', '2']}
SWEEP_WAYS = {'2 workers': ['--workers', '2'],
              '2 workers, early stopping (ASHA)': ['--workers', '2', '--early_stopping',
                                                   '--grace_epochs', '1']}


def _loopback() -> list[str]:
  ok = subprocess.run(['unshare', '-n', 'sh', '-c', 'ip link set lo up'], capture_output=True,
                      check=False).returncode == 0 if shutil.which('unshare') else False
  return ['unshare', '-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"'] if ok else []


def timed(argv: list[str], workdir: str, output: str, log: str) -> float:
  shutil.rmtree(workdir, ignore_errors=True)
  shutil.rmtree(output, ignore_errors=True)
  cmd = [*_loopback(), sys.executable, *argv, '--workdir', workdir, '--output', output]
  start = time.perf_counter()
  with open(log, 'w') as f:
    subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=common.ROOT, check=True)
  return time.perf_counter() - start


def main(argv=None):
  p = argparse.ArgumentParser(prog=f'python -m {__spec__.name}',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--output', default=os.path.join(common.ROOT, 'experiments/results/parallel'))
  p.add_argument('--only', choices=('compare', 'sweep'), default=None)
  args = p.parse_args(argv)
  work = os.path.expanduser(args.workdir)
  os.makedirs(work, exist_ok=True)
  os.makedirs(args.output, exist_ok=True)
  out = {'machine': common.machine(), 'provenance': provenance.describe(), 'compare': {},
         'sweep': {}}
  earlier = os.path.join(args.output, 'parallel.json')
  if args.only and os.path.exists(earlier):  # keep the other measurement's figures
    with open(earlier) as f:
      kept = json.load(f)
    out = {**kept, args.only: {}, f'{args.only}_machine': out['machine'],
           f'{args.only}_provenance': out['provenance']}
  def compare_result(o):
    rows = json.load(open(os.path.join(o, 'comparison.json')))['rows']
    return {'per_seed': {r['config']: r['per_seed_test_accuracy'] for r in rows}}
  def sweep_result(o):
    ranked = json.load(open(os.path.join(o, 'sweep.json')))['ranked']
    return {'winner': ranked[0]['trial'], 'ranked': ranked}
  for kind, base, ways, read in (('compare', COMPARE, COMPARE_WAYS, compare_result),
                                 ('sweep', SWEEP, SWEEP_WAYS, sweep_result)):
    if args.only not in (None, kind):
      continue
    for i, (way, flags) in enumerate(ways.items()):
      o = os.path.join(work, f'{kind}_out_{i}')
      seconds = timed(base + flags, os.path.join(work, f'{kind}_{i}'), o,
                      os.path.join(work, f'{kind}_{i}.log'))
      out[kind][way] = {'command': ' '.join(base + flags), 'seconds': seconds, **read(o)}
      print(f'{way}: {seconds:.0f} s', flush=True)
  common.write_json(os.path.join(args.output, 'parallel.json'), out)
  with files.atomic(os.path.join(args.output, 'parallel.md')) as f:
    f.write(markdown(out))
  print(markdown(out))


def _largest_difference(a: dict, b: dict) -> float:
  return max(abs(x - y) for config in a for x, y in zip(a[config], b[config]))


def markdown(out: dict) -> str:
  lines = ['# Runs one at a time and side by side', '',
           f'Machine: {common.machine_line(out["machine"])}. Code: '
           f'{provenance.code_line(out["provenance"])}. Written by '
           '`python -m experiments.studies.measure_parallel`; every command from an empty '
           'workdir.', '']
  compare = out['compare']
  if compare:
    first = next(iter(compare.values()))
    base = compare.get('Ray, 1 worker of 1 core')
    lines += ['## 2 configs × 4 seeds (shortened)', '', reporting.markdown_table(
        ['how', 'wall time', 'vs. one at a time, all cores', 'per-seed test accuracies',
         'identical to Ray, 1 worker of 1 core', 'largest per-seed difference from it'],
        [[way, f'{r["seconds"]:.0f} s', f'{r["seconds"] / first["seconds"]:.2f}×',
          '; '.join(f'{os.path.basename(c)}: ' + ', '.join(f'{a:.4f}' for a in accs)
                    for c, accs in r['per_seed'].items()),
          ('yes' if r['per_seed'] == base['per_seed'] else 'no') if base else '',
          f'{_largest_difference(r["per_seed"], base["per_seed"]):.4f}' if base else '']
         for way, r in compare.items()]), '', f'Command: `{first["command"]}`', '']
  sweep = out['sweep']
  if sweep:
    first = next(iter(sweep.values()))
    lines += ['## A sweep of 4 learning rates × 3 batch sizes (12 trials)', '']
    if 'sweep_provenance' in out:
      lines += [f'Measured in a later sitting: {common.machine_line(out["sweep_machine"])}. Code: '
                f'{provenance.code_line(out["sweep_provenance"])}.', '']
    lines += [reporting.markdown_table(
        ['how', 'wall time', 'ratio', 'winner', 'its validation accuracy', 'trials stopped early'],
        [[way, f'{r["seconds"]:.0f} s', f'{r["seconds"] / first["seconds"]:.2f}×',
          ' '.join(f'{k}={v}' for k, v in r['winner'].items()),
          f'{r["ranked"][0]["validation_accuracy"]:.4f}',
          str(sum(bool(t.get('stopped_early')) for t in r['ranked']))]
         for way, r in sweep.items()]), '', f'Command: `{first["command"]}`', '']
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
