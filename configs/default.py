"""Shared defaults; configs/mlp.py, cnn.py and bn_cnn.py import and adjust them."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = 'cnn'  # mlp | cnn | bn_cnn
  config.dropout_rate = -1.0  # < 0: the architecture's own (mlp 0.2, cnn and bn_cnn 0.5).
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
  # tfds: tfds' prepared copy, read with TensorFlow. archives: the four archives read with numpy in
  # tfds' exact order (no TensorFlow; the same images and results). auto: tfds where TensorFlow
  # is installed, archives otherwise.
  config.data_source = 'auto'

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
  config.weight_decay = 0.0  # adamw: decoupled; sgd: L2 added to the gradient (as PyTorch's SGD).
  # kernels: only dense and convolution kernels decay (flax's, big_vision's default); all: every
  # parameter, biases and BatchNorm scales included (as PyTorch's SGD(weight_decay=...)).
  config.weight_decay_on = 'kernels'
  config.schedule = 'cosine'  # constant | cosine | step
  config.warmup_epochs = 0.0
  config.label_smoothing = 0.0  # optax.smooth_labels on the one-hot targets of the training loss.
  # > 0: validation, the best-epoch choice and the test use an exponential moving average of the
  # weights and BatchNorm statistics with this decay (e.g. 0.999), warmed up as
  # min(decay, (1 + t) / (10 + t)).
  config.ema_decay = 0.0
  config.step_boundaries = (0.5, 0.75)  # step: fractions of training where the rate drops...
  config.step_decay = 0.1  # ... by this factor.

  # On-device augmentation; each is off at 0 / False.
  config.augment = ml_collections.ConfigDict()
  config.augment.flip = False  # random horizontal flip.
  config.augment.shift = 0.0  # max shift as a fraction of the side (Keras width/height_shift_range).
  config.augment.rotation = 0.0  # max rotation in degrees.
  config.augment.zoom = 0.0  # zoom in [1 - zoom, 1 + zoom].
  config.augment.shear = 0.0  # max shear in degrees.
  config.augment.crop = 0  # pad by this many pixels and crop back at a random offset.
  config.augment.erase = 0.0  # random erasing: the probability per image.

  # Checkpoints and reporting.
  config.keep_checkpoints = 3  # the latest few; the best by validation accuracy is kept as well.
  config.progress_bar = 'auto'  # auto (when attached to a terminal) | on | off
  config.report_every_steps = 100  # steps/s and ETA through clu's ReportProgress.
  return config
