"""Shared fixtures: the real Fashion-MNIST, prepared once per session in the default data_dir.

Compiled programs are cached on disk (JAX's persistent compilation cache), shared by the tests and
the subprocesses they start (which inherit the environment): the suite compiles the same train and
evaluation steps many times, and a cached one loads in milliseconds. The cache is keyed by the
program, the XLA flags, the devices and the jax version, so it never changes a result.
FMNIST_TEST_XLA_CACHE='' turns it off.
"""
import os
import sys
import tempfile

_cache = os.environ.get('FMNIST_TEST_XLA_CACHE',
                        os.path.join(tempfile.gettempdir(), 'fmnist_jax_tests_xla_cache'))
if _cache:  # before anything imports jax, which reads these once
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _cache)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # so `configs` imports like it does for `python -m fmnist_jax.main`.

from configs import default  # pylint: disable=g-import-not-at-top
from fmnist_jax import input_pipeline  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def data_dir():
  return os.environ.get('FMNIST_DATA_DIR', default.get_config().data_dir)


@pytest.fixture(scope='session')
def builder(data_dir):
  return input_pipeline.prepare(data_dir)


@pytest.fixture
def small_config(data_dir):
  """A quick run on real slices: 2,000 training and 1,000 validation images, constant rate."""
  config = default.get_config()
  config.model = 'mlp'
  config.data_dir = data_dir
  config.train_split = 'train[:2000]'
  config.validation_split = 'train[59000:]'
  config.test_split = 'test[:1000]'
  config.num_epochs = 2
  config.batch_size = 100
  config.schedule = 'constant'
  config.progress_bar = 'off'
  return config


# The fast tier (`pytest -m "not slow"`, for editing) leaves out every test on the real data set
# (it asks for one of these fixtures) and those marked slow by hand (subprocesses, Keras models).
REAL_DATA_FIXTURES = {'data_dir', 'builder', 'small_config'}


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: real data, subprocesses or Keras; left out of the '
                          'fast tier (pytest -m "not slow")')


def pytest_collection_modifyitems(items):
  for item in items:
    if REAL_DATA_FIXTURES & set(getattr(item, 'fixturenames', ())):
      item.add_marker(pytest.mark.slow)
