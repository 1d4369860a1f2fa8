"""Copies the reproduction table's title and its "In short" table into the README's headline.

    python -m experiments.update_readme_table

Run after `reproduce_tables.py` (or its `--finished_only`) has written
experiments/results/reproduce_tables/reproduction.md; the README's block between its two markers
is replaced, nothing else.
"""
import os
import re

from fmnist_jax import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, 'experiments/results/reproduce_tables/reproduction.md')
README = os.path.join(ROOT, 'README.md')
START = '<!-- reproduction table: written from experiments/results/reproduce_tables/reproduction.md -->'
END = '<!-- end of reproduction table -->'


def headline(table_md: str) -> str:
  title = table_md.splitlines()[0].lstrip('# ').strip()
  short = table_md.split('## In short')[1].split('\n', 1)[1].strip().split('\n\n')[0]
  unfinished = re.search(r'FEWER SEEDS|NOT RUN YET|OLDER CODE', title)
  more = ('the runs continue: see [the full table](experiments/results/reproduce_tables/'
          'reproduction.md) for which seeds are done' if unfinished else
          'every column in [the full table](experiments/results/reproduce_tables/reproduction.md)')
  return f'*{title}* ({more}).\n\n{short}'


def main():
  with open(TABLE) as f:
    block = headline(f.read())
  with open(README) as f:
    readme = f.read()
  if START not in readme or END not in readme:
    raise SystemExit(f'ERROR: {README} lacks the markers {START!r} and {END!r}.')
  before, rest = readme.split(START)
  after = rest.split(END)[1]
  with files.atomic(README) as f:
    f.write(f'{before}{START}\n{block}\n{END}{after}')
  print(f'README headline updated from {TABLE}.')


if __name__ == '__main__':
  main()
