"""Validation accuracy of a run's best variables under every test-time augmentation (config.tta).

    python -m experiments.studies.tta_on_validation --workdir ~/runs/ablate_speedrun/base \\
        --output experiments/results/ablate_speedrun/tta.md

TTA changes no training, so one run measures all of its options; only the validation split is
read (the choice of a recipe's TTA is made there, like every other choice).
"""
import argparse
import os

from fmnist_jax import augment
from fmnist_jax import build
from fmnist_jax import evaluator
from fmnist_jax import files
from fmnist_jax import provenance
from fmnist_jax import reporting


def main(argv=None):
  p = argparse.ArgumentParser(prog=f'python -m {__spec__.name}',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a finished run')
  p.add_argument('--output', default=None, help='a markdown file for the table')
  args = p.parse_args(argv)
  config, model, variables, _, best_epoch = build.load_best(os.path.expanduser(args.workdir))
  validation = build.data(config, which=('validation',))['validation']
  rows = []
  for tta in augment.TTA:
    metrics = evaluator.Evaluator(model, validation['image'], validation['label'],
                                  config.eval_batch_size, tta=tta)(variables)
    rows.append([repr(tta), f'{metrics["accuracy"]:.4f}', f'{metrics["loss"]:.4f}'])
  md = '\n'.join([
      f'# Test-time augmentation on validation: {args.workdir}', '',
      f'The run\'s best variables (epoch {best_epoch}, chosen with its own config.tta='
      f'{config.tta!r}) on {config.validation_split} ({len(validation["label"]):,} images). '
      f'Machine: {reporting.machine_line(reporting.machine())}. Code: '
      f'{provenance.code_line(provenance.describe())}.', '',
      reporting.markdown_table(['config.tta', 'validation accuracy', 'validation loss'], rows)])
  print(md)
  if args.output:
    with files.atomic(args.output) as f:
      f.write(md + '\n')


if __name__ == '__main__':
  main()
