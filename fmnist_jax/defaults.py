"""The one home of every config field's default; configs/default.py is this, for the command line.

Every config a run gets, from a file or a workdir's saved config.json, is completed over these
defaults (`complete`), so code reads `config.field` and never guesses a default of its own.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from fmnist_jax import augment
from fmnist_jax import batch_transforms

# Where a config saved by older code lacks a field and that code behaved unlike today's default:
# the value it ran with. (Before results version 2 every parameter decayed.)
OLDER_CODE = {'weight_decay_on': 'all'}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = 'cnn'  # a name in models.MODELS (mlp, cnn, bn_cnn, ...; `register` adds one)
  # Modules to import before the config is checked (your own registered models, augmentations,
  # metrics, optimizers: docs/extending.md); saved with the config, so evaluate and predict
  # import them too.
  config.imports = ()
  # The architecture's own fields (e.g. hidden=(512, 256) for mlp, widths for preact_resnet), set
  # as config.model_args = ml_collections.ConfigDict({...}); unset ones keep the class defaults.
  config.model_args = ml_collections.ConfigDict()
  config.dropout_rate = -1.0  # < 0: the architecture's own (mlp 0.2, torch_cnn 0.25, most 0.5).
  config.seed = 0
  # Seeds seed .. seed+num_seeds-1 trained together in one program; results.json then
  # gives each seed's metrics (per_seed) and their means and standard deviations.
  config.num_seeds = 1
  config.dtype = 'float32'  # float32 | bfloat16 (mixed precision for accelerators; params stay f32)

  # Data: tfds split strings, so 'train[:5000]' gives a quick run. Validation is carved out of
  # train; test is the official 10,000 images.
  config.train_split = 'train[:90%]'
  config.validation_split = 'train[90%:]'
  config.test_split = 'test'
  config.data_dir = '~/tensorflow_datasets'  # where tfds prepares fashion_mnist once.
  config.archives_dir = '/usr/share/datasets/fashion-mnist'  # Debian's archives, used offline.
  # archives: the four archives read with numpy in tfds' order (no TensorFlow). tfds: tfds'
  # prepared copy, read with TensorFlow (the same images in the same order, the same results).
  # 'auto', the name of the default in older configs, reads the archives.
  config.data_source = 'archives'

  # Optimisation.
  config.num_epochs = 15
  config.batch_size = 128
  config.eval_batch_size = 1000
  # Optimizer steps per dispatch from Python (a lax.scan over k steps): for GPUs and TPUs, where
  # launching a small CNN's step costs more than running it. 1 on a CPU.
  config.steps_per_dispatch = 1
  config.optimizer = 'adam'  # adam | adamw | sgd (with momentum)
  config.learning_rate = 1e-3
  config.momentum = 0.9  # sgd only.
  config.nesterov = False  # sgd only: Nesterov momentum.
  config.weight_decay = 0.0  # adamw: decoupled; sgd: L2 added to the gradient (as PyTorch's SGD).
  # kernels: only dense and convolution kernels decay (flax's, big_vision's default); all: every
  # parameter, biases and BatchNorm scales included (as PyTorch's SGD(weight_decay=...)).
  config.weight_decay_on = 'kernels'
  config.schedule = 'cosine'  # constant | cosine | step | linear (state.SCHEDULES)
  config.warmup_epochs = 0.0
  config.label_smoothing = 0.0  # optax.smooth_labels on the targets of the training loss.
  # The training loss by name (losses.LOSSES, or a user's) and its keyword arguments.
  config.loss, config.loss_args = 'cross_entropy', ml_collections.ConfigDict()
  # Which validation metric picks each seed's best epoch (the weights tested, the checkpoint
  # kept, a sweep's winner): 'accuracy' (higher is better), 'loss' (lower), or a registered
  # metric (metrics.register, with its direction).
  config.best_by = 'accuracy'
  # > 0: validation, the best-epoch choice and the test use an exponential moving average of the
  # weights and BatchNorm statistics with this decay (e.g. 0.999), warmed up as
  # min(decay, (1 + t) / (10 + t)).
  config.ema_decay = 0.0
  config.step_boundaries = (0.5, 0.75)  # step: fractions of training where the rate drops...
  config.step_decay = 0.1  # ... by this factor.

  # On-device augmentation: every registered augmentation's fields, each off (augment.py).
  config.augment = ml_collections.ConfigDict(
      {field: default for field, (default, _) in augment.fields_of_all().items()})
  # Batch transforms (batch_transforms.py: mixup, cutmix, ...) mix images and labels; all off.
  config.batch_transforms = ml_collections.ConfigDict(
      {field: default for field, (default, _) in batch_transforms.fields_of_all().items()})
  # Extra metrics (names in metrics.EVAL_METRICS, e.g. 'macro_f1'), computed on validation every
  # epoch and on test, beside the loss and accuracy that are always there.
  config.metrics = ()
  # Test-time augmentation for validation and test (augment.TTA): '' off, 'flip' (the image
  # and its mirror), 'flip_translate' (both, and each shifted a pixel either way); the views'
  # class probabilities are averaged.
  config.tta = ''

  # Checkpoints and reporting.
  config.keep_checkpoints = 3  # the latest few; the best by best_by on validation is kept too.
  config.progress_bar = 'auto'  # auto (when attached to a terminal) | on | off
  config.report_every_steps = 100  # steps/s and ETA through clu's ReportProgress.
  return config


def import_extensions(config) -> None:
  """Imports the modules named in config.imports (their registrations run); one ConfigError line
  naming a module that cannot be imported."""
  import importlib  # pylint: disable=g-import-not-at-top
  from fmnist_jax import errors  # pylint: disable=g-import-not-at-top
  for name in config.imports:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise errors.ConfigError(
          f'config.imports names {name!r}, which cannot be imported ({e}); put its folder on '
          'PYTHONPATH (e.g. PYTHONPATH=. when it is in the current directory).') from None


def complete(config: Any, older_code: bool = False) -> ml_collections.ConfigDict:
  """A new ConfigDict: today's defaults with `config` (a ConfigDict or a dict) laid over them.

  With `older_code` (a config.json or record saved by earlier code), a field it lacks takes the
  value that code ran with (OLDER_CODE) rather than today's default. Fields the defaults do not
  know (a user's augmentation, a report's description) are kept.
  """
  given = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  merged = get_config().to_dict()
  if older_code:
    merged.update({k: v for k, v in OLDER_CODE.items() if k not in given})
  _lay_over(merged, given)
  return ml_collections.ConfigDict(merged)


def _lay_over(base: dict, top: dict) -> None:
  for k, v in top.items():
    if isinstance(v, dict) and isinstance(base.get(k), dict):
      _lay_over(base[k], v)
    else:
      base[k] = v
