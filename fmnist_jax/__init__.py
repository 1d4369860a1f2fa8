"""fmnist_jax: MLP, CNN and BN-CNN on Fashion-MNIST with JAX, Flax, Optax, tfds, Orbax and CLU.

Importing the package sets one XLA CPU flag before JAX starts its backend: XLA's YNNPACK fusions
ran the CNNs' convolutions 1.5 to 3 times slower than its default CPU convolutions on our 2-core
CPU (profiled, see README "Speed"). The flag only affects the CPU backend; a value of it already
in XLA_FLAGS is kept, and `FMNIST_JAX_KEEP_XLA_FLAGS=1` leaves XLA_FLAGS alone.
"""
import importlib.metadata
import os

_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type='


def _set_xla_cpu_flags():
  flags = os.environ.get('XLA_FLAGS', '')
  if os.environ.get('FMNIST_JAX_KEEP_XLA_FLAGS') == '1' or 'ynn_fusion_type' in flags:
    return
  try:  # Older jaxlibs do not know the flag, and XLA aborts on an unknown flag.
    version = tuple(int(p) for p in importlib.metadata.version('jaxlib').split('.')[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return
  if version >= (0, 10):
    os.environ['XLA_FLAGS'] = f'{flags} {_YNN_FLAG}'.strip()


_set_xla_cpu_flags()


def _without_tensorflow():
  """clu's TensorBoard writer is swapped for one on tensorboard's event files
  (fmnist_jax/writers.py) before anything imports clu.metric_writers, which would import
  TensorFlow."""
  from fmnist_jax import writers  # pylint: disable=g-import-not-at-top
  writers.register_tensorflow_free_summary_writer()


_without_tensorflow()
