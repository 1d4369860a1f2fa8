"""TensorBoard and log writers through clu, without TensorFlow.

clu's `create_default_writer` writes TensorBoard events with TensorFlow's summary writer, and
importing clu's writers imports TensorFlow where it is installed (5 s of every start here). So the
same clu writer stack is used with `EventFileSummaryWriter` in its place: the tensorboard
package's own event file writer, which needs no TensorFlow, installed or not. Scalars and PNG
images are read back by TensorBoard's `EventAccumulator` and TensorFlow's summary iterator (tested).
"""
from __future__ import annotations

import functools
import io
import sys
import time
import types
from typing import Any, Mapping

import numpy as np



def create_default_writer(workdir: str, just_logging: bool = False):
  """clu's default writer (logging + TensorBoard events in `workdir`)."""
  register_tensorflow_free_summary_writer()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(workdir, just_logging=just_logging)


def register_tensorflow_free_summary_writer() -> None:
  """Makes clu's `SummaryWriter` ours before clu imports its own (and with it TensorFlow).

  Must run before anything imports `clu.metric_writers` (the package does it on import); where
  something did earlier, clu's own writer stays.
  """
  name = 'clu.metric_writers.tf.summary_writer'
  if name in sys.modules:
    return
  module = types.ModuleType(name)
  module.__getattr__ = lambda attr: _event_file_writer_class() if attr == 'SummaryWriter' else (
      _raise_attribute_error(attr))
  sys.modules[name] = module


def _raise_attribute_error(attr):
  raise AttributeError(attr)


def _png(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.clip(image * 255.0 if image.max() <= 1.0 else image, 0, 255).astype(np.uint8)
  mode = {1: 'L', 3: 'RGB', 4: 'RGBA'}[image.shape[-1]]
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if mode == 'L' else image, mode).save(buffer, format='PNG')
  return buffer.getvalue()


@functools.cache
def _event_file_writer_class():
  """Defined on first use: clu's MetricWriter interface is only importable once clu is loading."""
  from clu.metric_writers import interface  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
  from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top

  class EventFileSummaryWriter(interface.MetricWriter):
    """A clu MetricWriter on tensorboard's EventFileWriter: scalars, images, texts, hparams."""

    def __init__(self, logdir: str):
      super().__init__()
      # tensorboard's own switch to its TensorFlow stub (tensorboard/compat:no_tensorflow): its
      # file I/O would otherwise import TensorFlow where it is installed. Local paths only.
      sys.modules.setdefault('tensorboard.compat.notf', types.ModuleType('tensorboard.compat.notf'))
      self._writer = event_file_writer.EventFileWriter(str(logdir))

    def _add(self, step: int, values: list) -> None:
      self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary_pb2.Summary(value=values)))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
      self._add(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                       for k, v in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, Any]):
      values = []
      for key, value in images.items():
        value = np.asarray(value)
        batch = value if value.ndim == 4 else value[None]
        for i, image in enumerate(batch):
          tag = key if len(batch) == 1 else f'{key}/image/{i}'
          values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
              height=image.shape[0], width=image.shape[1], colorspace=image.shape[2],
              encoded_image_string=_png(image))))
      self._add(step, values)

    def write_texts(self, step: int, texts: Mapping[str, str]):
      from tensorboard.plugins.text import summary_v2  # pylint: disable=g-import-not-at-top
      self._add(step, [v for k, t in texts.items() for v in summary_v2.text_pb(k, t).value])

    def write_hparams(self, hparams: Mapping[str, Any]):
      from tensorboard.plugins.hparams import summary_v2  # pylint: disable=g-import-not-at-top
      self._add(0, list(summary_v2.hparams_pb(dict(hparams)).value))

    def write_summaries(self, step, values, metadata=None):
      del step, values, metadata  # raw tensor summaries are not used by this project.

    def write_videos(self, step, videos):
      del step, videos

    def write_audios(self, step, audios, *, sample_rate):
      del step, audios, sample_rate

    def write_histograms(self, step, arrays, num_buckets=None):
      del step, arrays, num_buckets

    def flush(self):
      self._writer.flush()

    def close(self):
      self._writer.close()

  return EventFileSummaryWriter
