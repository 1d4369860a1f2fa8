"""The real data set: archives rebuilt byte for byte, splits, shapes, class balance, pixel range."""
import os

import numpy as np
import pytest

from fmnist_jax import input_pipeline

pytestmark = pytest.mark.slow  # subprocesses, real data or Keras models: the full tier only


def test_rebuilt_archives_match_tfds_checksums(builder, tmp_path):
  # The sha256 and sizes are tfds' own registered values for fashion_mnist.
  assert len(builder.url_infos) == 4
  for info in builder.url_infos.values():
    out = tmp_path / info.filename
    input_pipeline.rebuild_archive(os.path.join(input_pipeline.DEBIAN_ARCHIVES_DIR,
                                                info.filename), str(out))
    assert out.stat().st_size == info.size
    assert input_pipeline.sha256(str(out)) == info.checksum


def test_train_and_test_splits(builder):
  train = input_pipeline.load_split(builder, 'train')
  test = input_pipeline.load_split(builder, 'test')
  assert train['image'].shape == (60000, 28, 28, 1)
  assert test['image'].shape == (10000, 28, 28, 1)
  for split in (train, test):
    assert split['image'].dtype == np.uint8 and split['label'].dtype == np.int32
    assert split['image'].min() == 0 and split['image'].max() == 255
    assert 0.25 < split['image'].mean() / 255 < 0.32  # Fashion-MNIST's mean is about 0.286.
  np.testing.assert_array_equal(np.bincount(train['label'], minlength=10), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(test['label'], minlength=10), [1000] * 10)


def test_validation_is_carved_out_of_train(builder):
  train = input_pipeline.load_split(builder, 'train[:90%]')
  val = input_pipeline.load_split(builder, 'train[90%:]')
  full = input_pipeline.load_split(builder, 'train')
  assert len(train['label']) == 54000 and len(val['label']) == 6000
  np.testing.assert_array_equal(np.concatenate([train['image'], val['image']]), full['image'])


def test_normalize_uses_training_statistics(builder):
  images = input_pipeline.load_split(builder, 'train[:10000]')['image']
  x = input_pipeline.normalize(images)
  assert x.dtype == np.float32
  assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05


def test_no_data_anywhere_fails_at_once_naming_both_remedies(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  with pytest.raises(input_pipeline.DataUnavailableError) as err:
    input_pipeline.prepare(str(tmp_path / 'tfds'), archives_dir=str(tmp_path / 'nothing'))
  message = str(err.value)
  assert 'internet' in message and 'apt-get install dataset-fashion-mnist' in message
  assert 'archives_dir' in message
  assert not (tmp_path / 'tfds' / 'fashion_mnist').exists() or not any(
      p.name.startswith('3.') for p in (tmp_path / 'tfds' / 'fashion_mnist').iterdir())


def test_altered_archive_is_named_and_nothing_is_prepared(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  archives = tmp_path / 'archives'
  archives.mkdir()
  for name in os.listdir(input_pipeline.DEBIAN_ARCHIVES_DIR):
    data = open(os.path.join(input_pipeline.DEBIAN_ARCHIVES_DIR, name), 'rb').read()
    if name == 't10k-labels-idx1-ubyte.gz':
      data = data[:-100]  # truncated
    (archives / name).write_bytes(data)
  with pytest.raises(input_pipeline.DataUnavailableError, match='t10k-labels-idx1-ubyte.gz'):
    input_pipeline.prepare(str(tmp_path / 'tfds'), archives_dir=str(archives))
  import tensorflow_datasets as tfds
  assert not tfds.builder('fashion_mnist', data_dir=str(tmp_path / 'tfds')).is_prepared()


def _archive_paths(data_dir):
  return input_pipeline.archive_paths(data_dir, input_pipeline.DEBIAN_ARCHIVES_DIR)


@pytest.mark.slow  # the real archives, four processes
def test_runs_started_together_on_one_data_dir_each_get_verified_archives(tmp_path):
  # Jobs started at once on one data_dir (three on a GPU) used to share one .tmp name and fail.
  import multiprocessing  # pylint: disable=g-import-not-at-top
  with multiprocessing.get_context('spawn').Pool(4) as pool:
    paths = pool.map(_archive_paths, [str(tmp_path)] * 4)
  assert all(p == paths[0] for p in paths) and len(paths[0]) == 4
  store = tmp_path / 'fashion_mnist_archives'
  assert sorted(os.listdir(store)) == sorted(paths[0])  # no .tmp left behind
  umask = os.umask(0)
  os.umask(umask)
  assert all(os.stat(p).st_mode & 0o777 == 0o666 & ~umask for p in paths[0].values())


@pytest.mark.parametrize('how', ['truncated', 'missing'])
def test_archive_that_cannot_be_had_is_named_and_leaves_no_temporary_file(tmp_path, monkeypatch,
                                                                          how):
  monkeypatch.setattr(input_pipeline, 'host_reachable', lambda url, timeout=3.0: False)
  archives = tmp_path / 'archives'
  archives.mkdir()
  if how == 'truncated':
    name = 't10k-images-idx3-ubyte.gz'
    data = open(os.path.join(input_pipeline.DEBIAN_ARCHIVES_DIR, name), 'rb').read()
    (archives / name).write_bytes(data[:-100])
  with pytest.raises(input_pipeline.DataUnavailableError,
                     match='truncated or altered' if how == 'truncated' else 'neither in'):
    input_pipeline.archive_paths(str(tmp_path / 'data'), str(archives))
  assert os.listdir(tmp_path / 'data' / 'fashion_mnist_archives') == []
