"""The architectures of the reports, as flax.linen modules, found by name in one registry.

`@register('name')` on a module class makes it `config.model='name'`; its dataclass fields (widths,
depth, dropout) are set from `config.model_args`, which `config_check` checks against the class.

Every model maps uint8-free, already normalised images of shape (N, 28, 28, 1) to logits (N, 10).
Parameters and BatchNorm statistics are explicit pytrees (`params`, `batch_stats`); `train=True`
turns on dropout (needs a 'dropout' rng) and BatchNorm statistics updates (mutable 'batch_stats').
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp

from fmnist_jax import ops

NUM_CLASSES = ops.NUM_CLASSES

MODELS: dict[str, Callable[..., nn.Module]] = {}  # config.model -> the class (with fixed fields)
# Each model's fields that other config fields set (registered with `config_fields`).
CONFIG_FIELDS: dict[str, dict[str, str]] = {}
# Fields the run sets from config fields every model shares (config.dtype, config.dropout_rate).
_RUN_FIELDS = ('dtype', 'dropout_rate')


def register(name: str, config_fields: dict[str, str] | None = None, **fixed):
  """Class decorator: `config.model=name` builds the class, with `fixed` fields (one class can be
  registered under several names, e.g. with and without BatchNorm).

  Its dataclass fields are set from `config.model_args`; `config_fields` maps a field to another
  dotted config field that sets it instead (e.g. {'weights': 'backbone.weights'}); an absent one
  keeps the class default. A class may also define, and the run then calls:
    - `check_fields(values) -> (field, what is wrong) | None`: all its field values together;
    - `load_weights(variables) -> variables`: the variables a fresh run starts from (pretrained);
    - `init_from_data(variables, images) -> variables`: a data-dependent initialisation from the
      training split's uint8 images (the model sees `input_pipeline.normalize(images)`);
    - `record() -> dict`: entries for results.json (e.g. which weight file it loaded; a
      'model_note' joins the summary line);
    - `weights_file() -> path | None` (raises errors.WeightsUnavailableError) and a class
      attribute `NO_WEIGHTS` (field values that start it from random weights): whether its
      pretrained weights can be had, and how to train without them (reproduce_tables does);
    - `weights_of(results) -> {'pretrained', 'note'} | None` (static): what a results.json says
      of the weights it started from, for tables;
    - `trainable(path) -> bool`: which parameters the optimizer updates (others are frozen).
  """
  def decorate(cls):
    if name in MODELS:
      raise ValueError(f'model {name!r} is registered already')
    MODELS[name] = functools.partial(cls, **fixed) if fixed else cls
    CONFIG_FIELDS[name] = dict(config_fields or {})
    return cls
  return decorate


def _class(name: str):
  entry = MODELS[name]
  return entry.func if isinstance(entry, functools.partial) else entry


def fields(name: str) -> list[str]:
  """Every field model `name` can be built with (those its registration fixes left out)."""
  entry = MODELS[name]
  fixed = entry.keywords if isinstance(entry, functools.partial) else {}
  return [f.name for f in dataclasses.fields(_class(name)) if f.init and f.name not in fixed
          and f.name not in ('parent', 'name')]


def settable_fields(name: str) -> list[str]:
  """The fields of model `name` that config.model_args may set."""
  return [f for f in fields(name) if f not in _RUN_FIELDS and f not in CONFIG_FIELDS[name]]


def check_fields(name: str, values: dict[str, Any]) -> tuple[str, Any, str] | None:
  """(config field, its value, what is wrong) from the model's own check of its field values, or
  None."""
  check = getattr(_class(name), 'check_fields', None)
  problem = check(values) if check is not None else None
  if problem is None:
    return None
  field, why = problem
  return CONFIG_FIELDS[name].get(field, f'model_args.{field}'), values.get(field), why


class ConvReLUPool(nn.Module):
  """nn.Conv (3x3) -> ReLU -> 2x2 max-pool, computed as conv -> max-pool -> bias -> ReLU.

  Max-pool commutes with adding a per-channel bias and with ReLU (both monotone, also in float
  rounding), so the values are those of the usual order while the bias and ReLU, forward and
  backward, touch a quarter of the elements, a large share of a small CNN's step on a CPU. Its
  parameters are nn.Conv's ('kernel', 'bias', same initialisers), so a caller naming it Conv_i
  keeps the usual parameter tree.
  """
  features: int
  padding: str = 'VALID'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), self.padding,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return nn.relu(ops.max_pool_2x2(y) + bias)


@register('mlp')
class MLP(nn.Module):
  """784 -> 256 -> 128 -> 10 with ReLU and dropout (the PyTorch ANN report)."""
  hidden: tuple[int, ...] = (256, 128)
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.Dense(width, dtype=self.dtype)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


@register('cnn')
class CNN(nn.Module):
  """Conv32-pool-Conv64-pool-Dense128-Dropout-Dense10, 3x3 'VALID' convs as in Keras' default.

  The basic CNN of the Keras 89.29 % report.
  """
  features: tuple[int, ...] = (32, 64)
  hidden: tuple[int, ...] = (128,)
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, features in enumerate(self.features):
      x = ConvReLUPool(features, dtype=self.dtype, name=f'Conv_{i}')(x)
    return ops.classifier_head(x, self.hidden, self.dropout_rate, train, self.dtype)


@register('bn_cnn')
class BNCNN(nn.Module):
  """The enhanced BN-CNN of the Keras 89.29 % report (242,442 parameters with statistics).

  Conv32-BN-pool-Conv64-BN-pool-Conv128-BN-Dense128-Dropout-Dense10; Keras puts BatchNorm after
  the ReLU (`Conv2D(activation='relu')` then `BatchNormalization()`), and so do we. Momentum 0.99
  and epsilon 1e-3 are Keras' defaults.
  """
  features: tuple[int, ...] = (32, 64, 128)  # the last conv is not pooled
  hidden: tuple[int, ...] = (128,)
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                                dtype=self.dtype)
    for i, features in enumerate(self.features):
      x = nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype)(x)
      x = norm()(nn.relu(x))
      if i < len(self.features) - 1:
        x = ops.max_pool_2x2(x)
    return ops.classifier_head(x, self.hidden, self.dropout_rate, train, self.dtype)


@register('small_cnn')
class SmallCNN(nn.Module):
  """Conv32-pool-Conv64-pool-Conv64-Dense64-Dense10, 3x3 'VALID' convs, no dropout.

  The CNN of the Keras MobileNetV2-transfer report (90.21 %): 93,322 parameters, as its summary.
  """
  dropout_rate: float = 0.0  # the report has none; kept for a uniform config.dropout_rate.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, features in enumerate((32, 64)):
      x = ConvReLUPool(features, dtype=self.dtype, name=f'Conv_{i}')(x)
    x = nn.relu(nn.Conv(64, (3, 3), padding='VALID', dtype=self.dtype, name='Conv_2')(x))
    return ops.classifier_head(x, (64,), self.dropout_rate, train, self.dtype)


@register('vgg_cnn')
@register('vgg_bn_cnn', batch_norm=True)
class VGGCNN(nn.Module):
  """(Conv64-Conv64)-pool-drop-(Conv128-Conv128)-pool-drop-Dense256-Dense256-Dropout-Dense10.

  The baseline (88.5 %) and, with `batch_norm`, the enhanced model (92.74 %) of the Keras
  augmented-BN-CNN report; 3x3 'VALID' convs as its layer table's output shapes show (26, 24, 12,
  10, 8, 4). Its text names two Dense-256 layers, its table one; we follow the text.
  """
  batch_norm: bool = False
  dropout_rate: float = 0.5
  conv_dropout_rate: float = 0.25
  hidden: tuple[int, ...] = (256, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, features in enumerate((64, 128)):
      for j in range(2):
        name = f'Conv_{2 * i + j}'
        if j == 1 and not self.batch_norm:  # pool before bias and ReLU (BatchNorm can't commute)
          x = ConvReLUPool(features, dtype=self.dtype, name=name)(x)
        else:
          x = nn.relu(nn.Conv(features, (3, 3), padding='VALID', dtype=self.dtype, name=name)(x))
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                           dtype=self.dtype)(x)
      if self.batch_norm:
        x = ops.max_pool_2x2(x)
      x = nn.Dropout(self.conv_dropout_rate, deterministic=not train)(x)
    return ops.classifier_head(x, self.hidden, self.dropout_rate, train, self.dtype)


@register('torch_cnn')
class TorchCNN(nn.Module):
  """Conv32-Conv64 (3x3, padding 1)-pool-Dense128-Dropout0.25-Dense10: the PyTorch ANN-vs-CNN report.

  The report gives the flattened size as 64x14x14, so one 2x2 pooling after 'SAME' convs
  (1,625,866 parameters); it also mentions two pooling layers, which would give 64x7x7.
  """
  dropout_rate: float = 0.25
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Conv(32, (3, 3), padding='SAME', dtype=self.dtype, name='Conv_0')(x))
    x = ConvReLUPool(64, padding='SAME', dtype=self.dtype, name='Conv_1')(x)
    return ops.classifier_head(x, (128,), self.dropout_rate, train, self.dtype)


class PreActBlock(nn.Module):
  """BN-ReLU-Conv3x3-BN-ReLU-Conv3x3 plus the input (He et al. 2016, identity mappings); a 1x1
  projection of the first activation where the width or the resolution changes."""
  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    conv = functools.partial(nn.Conv, self.features, use_bias=False, dtype=self.dtype)
    y = nn.relu(norm()(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = conv((1, 1), strides=self.strides)(y)
    y = conv((3, 3), strides=self.strides, padding='SAME')(y)
    y = conv((3, 3), padding='SAME')(nn.relu(norm()(y)))
    return y + shortcut


@register('preact_resnet')
class PreActResNet(nn.Module):
  """A pre-activation ResNet sized for 28x28 inputs: configs/best.py's leaderboard-class model.

  A 3x3 stem, three stages of `blocks` PreActBlocks at 28x28, 14x14 and 7x7 with `widths`
  channels, BN-ReLU, global average pooling, dropout, Dense 10. The defaults (3 blocks, widths
  32/64/128) are ResNet-20 at twice its width: 1,083,626 parameters.
  """
  blocks: int = 3
  widths: tuple[int, ...] = (32, 64, 128)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.widths[0], (3, 3), padding='SAME', use_bias=False, dtype=self.dtype)(x)
    for i, width in enumerate(self.widths):
      for j in range(self.blocks):
        x = PreActBlock(width, 2 if i > 0 and j == 0 else 1, self.dtype)(x, train)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x)


@register('speedrun_cnn')
class SpeedrunCNN(nn.Module):
  """configs/speedrun.py's network, after airbench's CIFAR-10 speedrun net, sized for a CPU.

  Blocks of (conv 3x3 'SAME' -> 2x2 max-pool -> BatchNorm -> GELU, then `convs_per_block - 1`
  more conv -> BatchNorm -> GELU) at `widths`, global max-pool, dropout, a bias-free Dense 10 whose
  logits are multiplied by `output_scale` (airbench: 1/9). BatchNorm momentum `bn_momentum`
  (airbench: 0.6, flax's convention: the old statistics' weight).
  """
  widths: tuple[int, ...] = (32, 64, 128)
  convs_per_block: int = 2
  bn_momentum: float = 0.6
  output_scale: float = 1 / 9
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                epsilon=1e-5, dtype=self.dtype)
    conv = lambda width: nn.Conv(width, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype)
    for width in self.widths:
      x = nn.gelu(norm()(ops.max_pool_2x2(conv(width)(x))))
      for _ in range(self.convs_per_block - 1):
        x = nn.gelu(norm()(conv(width)(x)))
    x = x.max(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(NUM_CLASSES, use_bias=False, dtype=self.dtype)(x) * self.output_scale


# (expansion, output channels, repeats, first stride) of MobileNetV2's inverted residual blocks.
_MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2_unit(layer: str) -> int:
  """Which of the backbone's 19 units (stem, blocks 0..16, last conv) a Keras layer name is in."""
  if layer in ('Conv1', 'bn_Conv1'):
    return 0
  if layer.startswith('expanded_conv_'):
    return 1
  if layer.startswith('block_'):
    return int(layer.split('_')[1]) + 1
  if layer.startswith('Conv_1'):
    return 18
  raise ValueError(f'{layer!r} is not a MobileNetV2 layer name.')


MOBILENETV2_UNITS = 19


class DepthwiseConv3x3(nn.Module):
  """Keras' DepthwiseConv2D(3, use_bias=False) on an already padded input ('VALID').

  The kernel is laid out like `nn.Conv(C, (3, 3), feature_group_count=C)`'s, (3, 3, 1, C).
  """
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, 1, x.shape[-1]))
    return ops.depthwise_conv3x3(x.astype(self.dtype), kernel[:, :, 0].astype(self.dtype),
                             self.strides)


class MobileNetV2(nn.Module):
  """`keras.applications.MobileNetV2(alpha=1.0, include_top=False)`, layer for layer.

  Every submodule carries its Keras layer's name ('Conv1', 'bn_Conv1', 'block_3_expand_BN', ...),
  so `pretrained.to_flax` maps Keras weights by name. Paddings follow Keras:
  'same' stride-2 Conv1 (XLA's SAME pads like TensorFlow's), and before each stride-2 depthwise
  conv the ZeroPadding2D of `imagenet_utils.correct_pad`. BatchNorm: momentum 0.999, epsilon 1e-3.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.999,
                             epsilon=1e-3, dtype=self.dtype)
    x = conv(32, (3, 3), strides=2, padding='SAME', name='Conv1')(x)
    x = nn.relu6(norm(name='bn_Conv1')(x))
    block_id = 0
    for expansion, filters, repeats, first_stride in _MOBILENETV2_BLOCKS:
      for r in range(repeats):
        stride = first_stride if r == 0 else 1
        prefix = f'block_{block_id}_' if block_id else 'expanded_conv_'
        inputs, channels = x, x.shape[-1]
        if block_id:
          x = conv(expansion * channels, (1, 1), name=prefix + 'expand')(x)
          x = nn.relu6(norm(name=prefix + 'expand_BN')(x))
        if stride == 2:
          pad = [(s % 2, 1) for s in x.shape[1:3]]  # imagenet_utils.correct_pad, 3x3 kernel.
          x = jnp.pad(x, [(0, 0)] + pad + [(0, 0)])
        else:
          x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # 'same' for stride 1.
        x = DepthwiseConv3x3(stride, dtype=self.dtype, name=prefix + 'depthwise')(x)
        x = nn.relu6(norm(name=prefix + 'depthwise_BN')(x))
        x = conv(filters, (1, 1), name=prefix + 'project')(x)
        x = norm(name=prefix + 'project_BN')(x)
        if channels == filters and stride == 1:
          x = x + inputs
        block_id += 1
    x = conv(1280, (1, 1), name='Conv_1')(x)
    return nn.relu6(norm(name='Conv_1_bn')(x))


@register('mobilenetv2_transfer', config_fields={'weights': 'backbone.weights',
                                                 'unfreeze_blocks': 'backbone.unfreeze_blocks'})
class MobileNetV2Transfer(nn.Module):
  """The transfer model of the Keras MobileNetV2 report: 3,733,992 parameters, 1,476,008 trainable.

  28x28 upsampled (bilinear) to 96x96 -> Conv 3 3x3 same ReLU ('adapter', trainable) ->
  MobileNetV2 ('backbone') -> Flatten (11,520) -> Dense 128 ReLU -> Dropout 0.5 -> Dense 10.
  The backbone runs in inference mode (frozen BatchNorm statistics, as Keras does for a layer with
  `trainable = False`); which of its parameters train is `trainable`: none by default, the last
  `unfreeze_blocks` of its 19 units (stem, 17 blocks, last conv) for fine-tuning. The gradient
  still flows through the frozen backbone into the adapter, as in the report's Keras model.
  `weights` (config.backbone.weights): 'imagenet' (Keras' file), a path, or 'random'.
  """
  NO_WEIGHTS = {'weights': 'random'}  # a randomly initialised backbone, never called pretrained

  input_size: int = 96
  unfreeze_blocks: int = 0
  weights: str = 'random'
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @staticmethod
  def check_fields(values: dict[str, Any]) -> tuple[str, str] | None:
    blocks = values.get('unfreeze_blocks', 0)
    if not (isinstance(blocks, int) and 0 <= blocks <= MOBILENETV2_UNITS):
      return 'unfreeze_blocks', (f'it must be an integer from 0 (frozen) to {MOBILENETV2_UNITS} '
                                 '(all trainable)')
    return None

  def trainable(self, path: tuple[str, ...]) -> bool:
    """Whether the parameter at `path` (keys from the root of `params`) is trained."""
    if path[0] != 'backbone':
      return True
    return mobilenetv2_unit(path[1]) >= MOBILENETV2_UNITS - self.unfreeze_blocks

  def weights_file(self) -> str | None:
    """The weight file `weights` names (downloaded if need be); None for 'random'."""
    from fmnist_jax import pretrained  # pylint: disable=g-import-not-at-top
    return pretrained.resolve(self.weights)

  def load_weights(self, variables: dict[str, Any]) -> dict[str, Any]:
    """The backbone from `weights` (Keras' file, read once per process)."""
    from fmnist_jax import pretrained  # pylint: disable=g-import-not-at-top  (Keras, when used)
    path = self.weights_file()
    if path is None:
      return variables
    params, batch_stats = dict(variables['params']), dict(variables['batch_stats'])
    params['backbone'], batch_stats['backbone'] = pretrained.to_flax(
        pretrained.keras_layer_weights(path), params['backbone'], batch_stats['backbone'])
    return {'params': params, 'batch_stats': batch_stats}

  def record(self) -> dict[str, Any]:
    from fmnist_jax import pretrained  # pylint: disable=g-import-not-at-top
    backbone = pretrained.describe(self.weights, pretrained.resolve(self.weights))
    return {'backbone': backbone, 'model_note': 'pretrained backbone' if backbone['pretrained']
            else 'random backbone, NOT pretrained'}

  @staticmethod
  def weights_of(results: dict[str, Any]) -> dict[str, Any] | None:
    """{'pretrained', 'note'}: what a results.json (or record) says of the backbone's weights."""
    backbone = results.get('backbone')
    if backbone is None:
      return None
    if not backbone['pretrained']:
      return {'pretrained': False, 'note': (
          '**NOT PRETRAINED**: randomly initialised MobileNetV2 backbone, so this row does not '
          'test the report\'s transfer claim')}
    return {'pretrained': True, 'note': (
        f'pretrained: Keras weight file {backbone["file"].rsplit("/", 1)[-1]} loaded '
        f'(sha256 {backbone["sha256"][:12]}…)')}

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = jax.image.resize(x, (x.shape[0], self.input_size, self.input_size, x.shape[-1]),
                         'bilinear')
    x = nn.relu(nn.Conv(3, (3, 3), padding='SAME', dtype=self.dtype, name='adapter')(x))
    x = MobileNetV2(dtype=self.dtype, name='backbone')(x, train=False)
    return ops.classifier_head(x, (128,), self.dropout_rate, train, self.dtype)


def create_model(name: str, **kwargs) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f'config.model={name!r} is unknown; choose one of {sorted(MODELS)}.')
  return MODELS[name](**kwargs)


def init_variables(model: nn.Module, rng: jax.Array, images=None, load_weights: bool = False
                   ) -> dict:
  """Returns {'params': ..., 'batch_stats': ...} ('batch_stats' only for models with BatchNorm).

  With `load_weights`, a model's pretrained weights (its `load_weights`); with `images` (the
  training split, uint8), its data-dependent initialisation (`init_from_data`).
  """
  variables = dict(model.init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32), train=False))
  if load_weights and hasattr(model, 'load_weights'):
    variables = dict(model.load_weights(variables))
  if images is not None and hasattr(model, 'init_from_data'):
    variables = dict(model.init_from_data(variables, images))
  return variables


def weights_of(name: str, results: dict[str, Any]) -> dict[str, Any] | None:
  """{'pretrained': bool, 'note': str} from a results.json of model `name` whose class starts
  from pretrained weights (its `weights_of`); None for the others."""
  read = getattr(_class(name), 'weights_of', None) if name in MODELS else None
  return read(results) if read is not None else None


def record(model: nn.Module) -> dict[str, Any]:
  """What the model adds to results.json (its `record`), e.g. the weight file it started from."""
  return model.record() if hasattr(model, 'record') else {}


def describe(name: str, model: nn.Module, variables, run_seeds: list[int]) -> str:
  """The line a run prints about its model (seed 0's `variables`); the parameter table goes to
  the log."""
  from clu import parameter_overview  # pylint: disable=g-import-not-at-top
  logging.info('%s parameters:\n%s', name, parameter_overview.get_parameter_overview(variables))
  return (f'{name}: {count_params(variables):,} parameters '
          f'({count_trainable(model, variables["params"]):,} trainable)'
          + (f', seeds {run_seeds} trained together' if len(run_seeds) > 1 else ''))


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


def trainable_mask(model: nn.Module, params) -> Any:
  """A tree of bools like `params` (True: the optimizer updates it); None if nothing is frozen."""
  trainable = getattr(model, 'trainable', None)
  if trainable is None:
    return None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: trainable(tuple(k.key for k in path)), params)


def count_trainable(model: nn.Module, params) -> int:
  mask = trainable_mask(model, params)
  if mask is None:
    return count_params(params)
  return sum(int(x.size) for x, t in zip(jax.tree_util.tree_leaves(params),
                                         jax.tree_util.tree_leaves(mask)) if t)


def summary(model: nn.Module) -> str:
  """Layer-by-layer table with output shapes and parameter counts, like Keras' model.summary()."""
  return model.tabulate(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.float32), train=False,
                        depth=1, compute_flops=False, compute_vjp_flops=False,
                        console_kwargs={'width': 120, 'force_terminal': False})
