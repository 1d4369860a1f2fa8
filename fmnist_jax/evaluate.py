"""Evaluation of a model on a whole split held on the device, in fixed-size padded batches.

(No `from __future__ import annotations` here: clu reads the metric annotations as classes.)
"""

import functools
from typing import Any

from clu import metrics
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmnist_jax import input_pipeline


@flax.struct.dataclass
class Metrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  accuracy: metrics.Accuracy


def batch_metrics(logits, labels, mask=None) -> Metrics:
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return Metrics.single_from_model_output(loss=loss, logits=logits, labels=labels, mask=mask)


class Evaluator:
  """Holds one split on the device, padded to a multiple of the batch size, with a validity mask.

  The padded batches keep one compiled shape for every batch and every split size.
  """

  def __init__(self, model, images: np.ndarray, labels: np.ndarray, batch_size: int):
    n = len(labels)
    self.num_examples = n
    self.batch_size = min(batch_size, n)
    self.num_batches = -(-n // self.batch_size)
    pad = self.num_batches * self.batch_size - n
    self.images = jnp.asarray(np.concatenate([images, np.zeros((pad,) + images.shape[1:],
                                                                images.dtype)]))
    self.labels = jnp.asarray(np.concatenate([labels, np.zeros((pad,), labels.dtype)]))
    self.mask = jnp.asarray(np.arange(n + pad) < n)
    self._logits = jax.jit(functools.partial(_logits, model, self.batch_size))

  def logits(self, variables: dict[str, Any], i: int) -> jax.Array:
    return self._logits(variables, self.images, np.int32(i))

  def __call__(self, variables: dict[str, Any]) -> dict[str, float]:
    """Mean loss and accuracy over the split."""
    total = None
    for i in range(self.num_batches):
      sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
      m = batch_metrics(self.logits(variables, i), self.labels[sl], self.mask[sl])
      total = m if total is None else total.merge(m)
    return {k: float(v) for k, v in total.compute().items()}

  def predict(self, variables: dict[str, Any]) -> np.ndarray:
    """Class probabilities (N, 10), in the split's order."""
    probs = [jax.nn.softmax(self.logits(variables, i)) for i in range(self.num_batches)]
    return np.asarray(jnp.concatenate(probs))[:self.num_examples]


def _logits(model, batch_size, variables, images, i):
  batch = jax.lax.dynamic_slice_in_dim(images, i * batch_size, batch_size)
  return model.apply(variables, input_pipeline.normalize(batch), train=False)
