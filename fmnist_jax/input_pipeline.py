"""Fashion-MNIST, held whole in memory: one loader (`load`) with two sources of the same images in
the same order (config.data_source). `archives` (the default): the four original archives read
with gzip and numpy and put in tfds' stored order (`archive_paths`, `load_split_from_archives`;
no TensorFlow). `tfds`: tensorflow-datasets' own `fashion_mnist` builder, read with TensorFlow.

tfds' preparation order (once per `data_dir`):
1. an already prepared builder is used as is (tfds writes into a temporary folder and renames it
   only when complete, so a half-prepared directory never counts as prepared);
2. if the download host answers, tfds downloads and verifies the archives itself;
3. otherwise the four original archives are rebuilt byte for byte from the Debian package
   `dataset-fashion-mnist` (only their gzip header differs, see `rebuild_archive`) and handed to tfds
   as its manual directory; tfds checks their size and sha256 against its registered checksums.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.parse

from absl import logging
import numpy as np

from fmnist_jax import errors

DATASET = 'fashion_mnist'
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
               'Bag', 'Ankle boot')
# Pixel statistics of the 60,000 training images, scaled to [0, 1].
MEAN, STD = 0.2860, 0.3530
DEBIAN_ARCHIVES_DIR = '/usr/share/datasets/fashion-mnist'
# mtime of the original archives' gzip headers (docs/data.md).
_ORIGINAL_MTIME = {'train': 0x59a7e9de, 't10k': 0x59a7e9f3}


DataUnavailableError = errors.DataUnavailableError
DataDamagedError = errors.DataDamagedError


def have_tensorflow() -> bool:
  """Whether TensorFlow is installed (tfds' `as_dataset` and preparation need it); imports nothing.

  FMNIST_JAX_NO_TENSORFLOW=1 takes the TensorFlow-free paths even where it is installed.
  """
  if os.environ.get('FMNIST_JAX_NO_TENSORFLOW') == '1':
    return False
  try:
    return importlib.util.find_spec('tensorflow') is not None
  except (ImportError, ValueError):
    return False


def _import_tensorflow():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # TF must not grab accelerator memory JAX needs.
  return tf


def _import_tfds(with_tensorflow: bool = False):
  """tfds; its split parsing, key hashing and registered checksums need no TensorFlow. Kept out of
  module import so `--help` and config errors stay fast. `with_tensorflow` (preparing or reading
  tfds' own copy) imports TensorFlow first, to hide the GPU from it before tfds uses it."""
  if with_tensorflow:
    _import_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def rebuild_archive(debian_path: str, out_path: str) -> None:
  """Writes the original archive: Debian dropped the file name and changed the mtime in the header.

  original = 1f 8b 08 08 + mtime (LE) + Debian bytes 8-9 (XFL, OS) + file name + NUL + Debian
  bytes 10.. (the same deflate stream and trailer).
  """
  with open(debian_path, 'rb') as f:
    data = f.read()
  if data[:3] != b'\x1f\x8b\x08':
    raise DataUnavailableError(f'{debian_path} is not a gzip file; reinstall it with '
                               '`apt-get install --reinstall dataset-fashion-mnist`.')
  name = os.path.basename(debian_path)[:-len('.gz')]
  mtime = _ORIGINAL_MTIME[name.split('-')[0]]
  header = b'\x1f\x8b\x08\x08' + mtime.to_bytes(4, 'little') + data[8:10] + name.encode() + b'\0'
  with open(out_path, 'wb') as f:
    f.write(header + data[10:])


def sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def host_reachable(url: str, timeout: float = 3.0) -> bool:
  """tfds retries an unreachable host for minutes; a few seconds tell us first."""
  parts = urllib.parse.urlparse(url)
  port = parts.port or (443 if parts.scheme == 'https' else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True
  except OSError:
    return False


def _prepare_from_archives(builder, tfds, archives_dir: str) -> None:
  expected = builder.url_infos  # url -> UrlInfo(size, checksum, filename), tfds' registered values.
  missing = [i.filename for i in expected.values()
             if not os.path.isfile(os.path.join(archives_dir, i.filename))]
  if missing:
    raise FileNotFoundError(missing)
  manual_dir = tempfile.mkdtemp(prefix='fmnist_archives_')
  try:
    for info in expected.values():
      out = os.path.join(manual_dir, info.filename)
      rebuild_archive(os.path.join(archives_dir, info.filename), out)
      if sha256(out) != info.checksum:
        raise DataUnavailableError(
            f'{os.path.join(archives_dir, info.filename)} does not rebuild into the original '
            f'archive (sha256 {sha256(out)} != {info.checksum}): the file is truncated or altered. '
            'Reinstall it with `apt-get install --reinstall dataset-fashion-mnist`.')
    logging.info('Rebuilt the original archives from %s; preparing with tfds.', archives_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  finally:
    shutil.rmtree(manual_dir, ignore_errors=True)


def prepare(data_dir: str, archives_dir: str = DEBIAN_ARCHIVES_DIR):
  """Returns a prepared tfds builder for fashion_mnist in `data_dir`, preparing it if needed."""
  tfds = _import_tfds(with_tensorflow=True)
  data_dir = os.path.expanduser(data_dir)
  try:
    builder = tfds.builder(DATASET, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  (tfds raises its JSON parsers' errors)
    version_dir = os.path.join(data_dir, DATASET, str(tfds.builder_cls(DATASET).VERSION))
    if not os.path.isdir(version_dir):
      raise
    set_aside(version_dir, f'its metadata cannot be read ({type(e).__name__})')
    builder = tfds.builder(DATASET, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  url = next(iter(builder.url_infos))
  if host_reachable(url):
    logging.info('Downloading %s with tfds into %s.', DATASET, data_dir)
    builder.download_and_prepare()
    return builder
  archives_dir = os.path.expanduser(archives_dir)
  try:
    _prepare_from_archives(builder, tfds, archives_dir)
  except FileNotFoundError as e:
    raise DataUnavailableError(
        f'Fashion-MNIST is not prepared in {data_dir!r}, its download host cannot be reached, and '
        f'the local archives are missing from {archives_dir!r} ({e}). Either give this machine '
        'internet access so tfds can download it, or install the Debian package '
        '(`apt-get install dataset-fashion-mnist`, which puts the archives in '
        f'{DEBIAN_ARCHIVES_DIR}) or point --config.archives_dir at a folder holding the four '
        '*-ubyte.gz archives.') from None
  return builder


# Fashion-MNIST's split sizes, as tfds registers them: split strings are checked against these
# before anything is loaded.
SPLIT_SIZES = {'train': 60_000, 'test': 10_000}


def split_ranges(spec: str) -> list[tuple[str, int, int]]:
  """(split, start, stop) of every part of a tfds split string; ValueError when malformed."""
  import types  # pylint: disable=g-import-not-at-top
  tfds = _import_tfds()
  infos = {k: types.SimpleNamespace(num_examples=n) for k, n in SPLIT_SIZES.items()}
  ranges = []
  for part in tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos):
    n = SPLIT_SIZES[part.splitname]
    start, stop = part.from_ or 0, n if part.to is None else part.to
    if start >= stop:
      raise ValueError(f'{spec!r} selects no images ({part.splitname}[{start}:{stop}]).')
    ranges.append((part.splitname, start, stop))
  return ranges


def official_indices(builder, split: str) -> np.ndarray:
  """Each example's index in the original archive, for the examples of `split` in tfds' order.

  tfds stores a split sorted by md5(split name, key), and the fashion_mnist builder's key is the
  example's index in the original archive; tests check this against the archives themselves.
  """
  tfds = _import_tfds()
  splits = builder.info.splits
  instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(splits)
  orders = {}
  indices = []
  for ins in instructions:
    if ins.splitname not in orders:
      orders[ins.splitname] = tfds_order(ins.splitname, splits[ins.splitname].num_examples)
    indices.append(orders[ins.splitname][ins.from_:ins.to])
  return np.concatenate(indices)


def load_split(builder, split: str, official_order: bool = False) -> dict[str, np.ndarray]:
  """{'image': uint8 (N, 28, 28, 1), 'label': int32 (N,), 'index': int64 (N,)} for a split string.

  `index` is the position in the original archive. With `official_order` the examples are sorted by
  it (the test set as published); otherwise they stay in tfds' order, which training relies on for
  reproducing earlier runs.
  """
  tfds = _import_tfds(with_tensorflow=True)
  tf = _import_tensorflow()
  expected = builder.info.splits[split].num_examples
  try:
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
  except tf.errors.OpError as e:  # truncated or corrupted (CRC) records, missing ones, ...
    reason = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', e.message).strip()[:200]
    raise DataDamagedError(
        f'split {split!r} cannot be read whole ({type(e).__name__}: {reason})') from None
  if len(data['label']) != expected:
    raise DataDamagedError(f'split {split!r} holds {len(data["label"])} images instead of '
                           f'{expected}')
  out = {'image': np.asarray(data['image'], np.uint8),
         'label': np.asarray(data['label'], np.int32),
         'index': official_indices(builder, split)}
  return in_official_order(out) if official_order else out


# Without TensorFlow: the four archives read with gzip and numpy, in tfds' order.

_ARCHIVES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
             'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}


def archive_paths(data_dir: str, archives_dir: str) -> dict[str, str]:
  """file name -> a verified copy of each original archive, fetched or rebuilt if needed.

  Looked for in <data_dir>/fashion_mnist_archives (copies kept from an earlier run), then rebuilt
  from `archives_dir` (Debian's), then downloaded from tfds' registered URLs. Every one, kept
  copies included, is checked against tfds' registered sha256 each time (a damaged kept copy is
  made again), and a new copy is renamed into place only when it matches.
  """
  tfds = _import_tfds()
  builder = tfds.builder(DATASET, data_dir=os.path.expanduser(data_dir))  # registered checksums
  infos = {i.filename: (url, i) for url, i in builder.url_infos.items()}
  store = os.path.join(os.path.expanduser(data_dir), 'fashion_mnist_archives')
  os.makedirs(store, exist_ok=True)
  paths = {}
  for name, (url, info) in sorted(infos.items()):
    path = os.path.join(store, name)
    if not (os.path.isfile(path) and sha256(path) == info.checksum):
      local = os.path.join(os.path.expanduser(archives_dir), name)
      if not os.path.isfile(local) and not host_reachable(url):
        raise DataUnavailableError(
            f'{name} is neither in {archives_dir!r} nor downloadable ({url} did not answer). '
            'Install the Debian package (`apt-get install dataset-fashion-mnist`), point '
            '--config.archives_dir at a folder holding the four *-ubyte.gz archives, or give '
            'this machine internet access.')
      # A name of its own: runs started together on one data_dir each write their own copy.
      fd, tmp = tempfile.mkstemp(prefix=name + '.', suffix='.tmp', dir=store)
      os.close(fd)
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(tmp, 0o666 & ~umask)  # as open() would make it (mkstemp's is 0600)
      try:
        if os.path.isfile(local):
          rebuild_archive(local, tmp)
        else:
          import urllib.request  # pylint: disable=g-import-not-at-top
          urllib.request.urlretrieve(url, tmp)
        if sha256(tmp) != info.checksum:
          raise DataUnavailableError(f'{name} from {local if os.path.isfile(local) else url} is '
                                     'truncated or altered (its sha256 is not the registered '
                                     'one); reinstall or download it again.')
        os.replace(tmp, path)
      finally:
        if os.path.exists(tmp):
          os.remove(tmp)
    paths[name] = path
  return paths


def _read_archive(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  import gzip  # pylint: disable=g-import-not-at-top
  with gzip.open(images_path, 'rb') as f:
    data = f.read()
  n, rows, cols = (int.from_bytes(data[4 * i:4 * i + 4], 'big') for i in (1, 2, 3))
  images = np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols, 1)
  with gzip.open(labels_path, 'rb') as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
  return images, labels


@functools.lru_cache(maxsize=None)
def tfds_order(split: str, n: int) -> np.ndarray:
  """The archive index of each example of a tfds-prepared split, in tfds' stored order.

  tfds stores a split sorted by the hash of each example's key, and fashion_mnist's key is the
  example's index in its archive (tests check this against the prepared tfds copy).
  """
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top
  _import_tfds()
  order = np.array(sorted(range(n), key=hashing.Hasher(split).hash_key), np.int64)
  order.flags.writeable = False  # cached: shared by every caller
  return order


def load_split_from_archives(data_dir: str, archives_dir: str, split: str,
                             official_order: bool = False,
                             paths: dict[str, str] | None = None) -> dict[str, np.ndarray]:
  """`load_split` without TensorFlow: the same images, labels and indices in the same order.

  `paths`: the verified archives (`archive_paths`), when the caller already has them.
  """
  paths = paths or archive_paths(data_dir, archives_dir)
  parts, cache = [], {}
  for name, start, stop in split_ranges(split):
    if name not in cache:
      images, labels = _read_archive(*(paths[f] for f in _ARCHIVES[name]))
      order = tfds_order(name, len(labels))
      cache[name] = (images[order], labels[order], order)
    images, labels, order = cache[name]
    parts.append((images[start:stop], labels[start:stop], order[start:stop]))
  out = {'image': np.concatenate([p[0] for p in parts]),
         'label': np.concatenate([p[1] for p in parts]),
         'index': np.concatenate([p[2] for p in parts])}
  return in_official_order(out) if official_order else out


def in_official_order(split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A split's examples sorted by their index in the original archive (the test set as published)."""
  order = np.argsort(split['index'], kind='stable')
  return {k: v[order] for k, v in split.items()}


def set_aside(version_dir: str, reason: str) -> None:
  """Moves a damaged prepared copy out of tfds' way (kept for inspection), saying so."""
  aside = f'{version_dir}.damaged-{time.strftime("%Y%m%d-%H%M%S")}'
  os.rename(version_dir, aside)
  print(f'WARNING: the prepared Fashion-MNIST in {version_dir} is damaged: {reason}. Moved it to '
        f'{aside} and preparing it again.', flush=True)


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the images come from (the config fields of the same names)."""
  data_source: str = 'archives'
  data_dir: str = '~/tensorflow_datasets'
  archives_dir: str = DEBIAN_ARCHIVES_DIR


def load(source: Source, splits: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
  """Loads each named split (name -> tfds split string, e.g. {'train': 'train[:90%]'}), whole;
  'test' in official order.

  One loader, two sources of the same images in the same order (`source.data_source`): the four
  archives read with numpy (the default: no TensorFlow), or tfds' prepared copy read with
  TensorFlow.

  A prepared copy that cannot be read whole (a truncated or altered file, missing examples) is moved
  aside to <version dir>.damaged-<time> and prepared again, once; never is a partial split used.
  """
  read_all = lambda read: {name: in_official_order(read(split)) if name == 'test' else read(split)
                           for name, split in splits.items()}
  if source.data_source != 'tfds':  # 'archives', or 'auto' (its name in older configs)
    paths = archive_paths(source.data_dir, source.archives_dir)  # verified once per load
    return read_all(lambda split: load_split_from_archives(source.data_dir, source.archives_dir,
                                                           split, paths=paths))
  for attempt in range(2):
    builder = prepare(source.data_dir, source.archives_dir)
    try:
      return read_all(lambda split, builder=builder: load_split(builder, split))
    except DataDamagedError as e:
      if attempt:
        raise DataDamagedError(f'the prepared Fashion-MNIST in {builder.data_dir} is damaged ({e}) '
                               'even after preparing it again: check the disk, delete that folder '
                               'and run again.') from None
      set_aside(builder.data_dir, str(e))


def normalize(images):
  """uint8 images -> float32, standardised with the training set's statistics."""
  return (images.astype('float32') / 255.0 - MEAN) / STD
