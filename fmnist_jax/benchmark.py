"""Speed of the real train step: `python -m fmnist_jax.benchmark [--compare]`.

For each model: compile time, steady-state training images/s (the config's own augmentation, none,
and all five transforms, which gives the augmentation's share of the step), evaluation images/s and
peak memory on the current backend; with --compare, the same architecture, batch size and step
count in PyTorch and Keras, in the same run. Pixel values do not change the speed, so the images
are random uint8 arrays of Fashion-MNIST's shape, held on the device as in training.
"""
import json
import resource
import time

from absl import flags
import jax
import ml_collections
import numpy as np

from fmnist_jax import augment
from fmnist_jax import baselines  # imports PyTorch and Keras only when they run.
from fmnist_jax import build
from fmnist_jax import cli
from fmnist_jax import config_check
from fmnist_jax import errors
from fmnist_jax import evaluator
from fmnist_jax import files
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import reporting
from fmnist_jax import state as state_lib
from fmnist_jax import step as step_lib

DEFAULT_CONFIG = 'configs/default.py'
cli.define_config_flag('config', DEFAULT_CONFIG, 'Base config; model is set per row.')
flags.DEFINE_list('models', ['mlp', 'cnn', 'bn_cnn'], 'Models to measure.')
flags.DEFINE_integer('batch_size', 128, 'Training batch size.')
flags.DEFINE_integer('steps', 200, 'Timed training steps per measurement.')
flags.DEFINE_integer('warmup', 20, 'Untimed steps before each measurement.')
flags.DEFINE_integer('repeats', 3, 'Timed runs of --steps per training measurement; the fastest '
                     'counts (JAX, PyTorch and Keras alike).')
flags.DEFINE_integer('eval_images', 10000, 'Images per evaluation measurement.')
flags.DEFINE_integer('steps_per_dispatch', 1, 'Optimizer steps per dispatch (lax.scan); see '
                     'config.steps_per_dispatch.')
flags.DEFINE_integer('num_seeds', 1, 'Also time this many seeds trained together in one process.')
flags.DEFINE_bool('compare', False, 'Also time PyTorch and Keras (pip install -e .[compare]).')
flags.DEFINE_string('output', 'benchmark.json', 'Where to write the JSON results.')
FLAGS = flags.FLAGS

# No augmentation: every registered augmentation's fields at their defaults (off); the full set:
# the five Keras-style transforms on, a fixed reference for the augmentation's share of a step.
NO_AUGMENT = {field: default for field, (default, _) in augment.fields_of_all().items()}
FULL_AUGMENT = {**NO_AUGMENT, **dict(flip=True, shift=0.1, rotation=10.0, zoom=0.1, shear=10.0)}


def _peak_memory() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return {'peak_device_memory_mb': stats['peak_bytes_in_use'] / 2**20}
  # CPU: the process' peak resident memory (it only grows over the run).
  return {'peak_process_memory_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def time_training(config, augment: dict, steps: int, warmup: int):
  """(compile seconds, images/s) of the training's own step (`step.Stepper`) with the given
  augmentation, on random images held on the device."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.augment.update(augment)
  batch, k = config.batch_size, config.steps_per_dispatch
  n = batch * 16 * k
  rng = np.random.default_rng(0)
  train = {'image': rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
           'label': rng.integers(0, 10, (n,)).astype(np.int32)}
  model = build.model(config)
  run_seeds = build.seeds(config)
  # The speed does not depend on the weights' values: no pretrained file is read.
  state = build.train_states(config, model, steps, load_weights=False)
  stepper = step_lib.Stepper(build.step_spec(config), model, state,
                             state_lib.empty_totals(len(run_seeds)), train, run_seeds,
                             parallel.create_mesh())
  stepper.start_epoch(1)

  def run(dispatches):
    for d in range(dispatches):
      stepper.dispatch(d % 16 * k, k)
    jax.block_until_ready(stepper.carry)

  run(-(-warmup // k))
  dispatches = -(-steps // k)
  return stepper.compile_seconds, baselines.best_rate(
      lambda: run(dispatches), dispatches * k * batch * len(run_seeds), FLAGS.repeats)


def time_evaluation(config, num_images: int) -> float:
  model = build.model(config)
  variables = build.train_state(config, model, 1, load_weights=False).variables
  rng = np.random.default_rng(0)
  ev = evaluator.Evaluator(model, rng.integers(0, 256, (num_images, 28, 28, 1), dtype=np.uint8),
                           rng.integers(0, 10, (num_images,)).astype(np.int32),
                           config.eval_batch_size)
  ev.run(variables)  # compile
  t0 = time.perf_counter()
  ev.run(variables)
  return num_images / (time.perf_counter() - t0)


def benchmark_model(base, name: str) -> dict:
  config = ml_collections.ConfigDict(base.to_dict())
  config.model = name
  config.batch_size = FLAGS.batch_size
  config.steps_per_dispatch = FLAGS.steps_per_dispatch
  own = {k: config.augment.get(k, v) for k, v in NO_AUGMENT.items()}
  compile_s, own_ips = time_training(config, own, FLAGS.steps, FLAGS.warmup)
  _, off_ips = time_training(config, NO_AUGMENT, FLAGS.steps, FLAGS.warmup)
  _, full_ips = time_training(config, FULL_AUGMENT, FLAGS.steps, FLAGS.warmup)
  row = {
      'model': name,
      'batch_size': config.batch_size,
      'steps_per_dispatch': config.steps_per_dispatch,
      'steps': FLAGS.steps,
      'compile_seconds': compile_s,
      'train_images_per_second': own_ips,
      'augment': own,
      'train_images_per_second_no_augment': off_ips,
      'train_images_per_second_full_augment': full_ips,
      # Share of the step time spent on augmentation with all five transforms on.
      'augment_cost_fraction': 1.0 - full_ips / off_ips,
      'eval_images_per_second': time_evaluation(config, FLAGS.eval_images),
  }
  if FLAGS.num_seeds > 1:
    seeds_config = ml_collections.ConfigDict(config.to_dict())
    seeds_config.num_seeds = FLAGS.num_seeds
    _, seeds_ips = time_training(seeds_config, own, FLAGS.steps, FLAGS.warmup)
    row['num_seeds'] = FLAGS.num_seeds
    row['train_images_per_second_all_seeds'] = seeds_ips
    # Wall time of N seeds together over the wall time of one seed, for the same epochs.
    row['seeds_wall_time_ratio'] = FLAGS.num_seeds * own_ips / seeds_ips
  row.update(_peak_memory())
  if FLAGS.compare and name in baselines.MODELS:
    for framework, fn in baselines.FRAMEWORKS.items():
      ips = fn(name, config.batch_size, FLAGS.steps, FLAGS.warmup, FLAGS.repeats)
      row[f'{framework}_images_per_second'] = ips
      # Like for like: the other frameworks train without augmentation.
      row[f'speedup_vs_{framework}'] = off_ips / ips
  return row


def format_table(rows: list[dict]) -> str:
  cols = [('model', 'model', '{}'), ('compile_seconds', 'compile s', '{:.1f}'),
          ('train_images_per_second', 'train img/s', '{:,.0f}'),
          ('train_images_per_second_no_augment', 'no aug', '{:,.0f}'),
          ('train_images_per_second_full_augment', 'full aug', '{:,.0f}'),
          ('augment_cost_fraction', 'aug cost', '{:.1%}'),
          ('eval_images_per_second', 'eval img/s', '{:,.0f}'),
          ('seeds_wall_time_ratio', 'N seeds / 1 seed time', '{:.2f}x'),
          ('pytorch_images_per_second', 'PyTorch img/s', '{:,.0f}'),
          ('speedup_vs_pytorch', 'vs PyTorch', '{:.2f}x'),
          ('keras_images_per_second', 'Keras img/s', '{:,.0f}'),
          ('speedup_vs_keras', 'vs Keras', '{:.2f}x')]
  cols = [c for c in cols if any(c[0] in r for r in rows)]
  return reporting.markdown_table([c[1] for c in cols],
                                  [[fmt.format(r[k]) for k, _, fmt in cols] for r in rows])


def check_flags(argv) -> None:
  """Every flag mistake named before anything is built or timed."""
  if len(argv) > 1:
    raise errors.UserError(f'unexpected arguments {argv[1:]}; name models with --models=a,b.')
  unknown = [m for m in FLAGS.models if m not in models.MODELS]
  if unknown or not FLAGS.models:
    raise errors.UserError(f'--models={",".join(FLAGS.models)}: unknown model(s) {unknown}; '
                           f'choose from {",".join(sorted(models.MODELS))}.')
  for name in ('batch_size', 'steps', 'repeats', 'eval_images', 'num_seeds', 'steps_per_dispatch'):
    if FLAGS[name].value < 1:
      raise errors.UserError(f'--{name}={FLAGS[name].value}: it must be at least 1.')
  if FLAGS.warmup < 0:
    raise errors.UserError(f'--warmup={FLAGS.warmup}: it must be 0 or more.')
  cli.check_output_file(FLAGS.output, '--output')
  config_check.validate_config(FLAGS.config)


def main(argv):
  check_flags(argv)
  rows = []
  for name in FLAGS.models:
    rows.append(benchmark_model(FLAGS.config, name))
    print(json.dumps(rows[-1]), flush=True)
  result = {'machine': reporting.machine(), 'rows': rows}
  files.write_json(FLAGS.output, result)
  print(f'\n{json.dumps(result["machine"])}\n{format_table(rows)}\n\nwritten to {FLAGS.output}')


if __name__ == '__main__':
  cli.run(main, config_default=DEFAULT_CONFIG)
