"""Loss and accuracy as clu metrics: summed on the device during an epoch, computed once at its end.

(No `from __future__ import annotations` here: clu reads the metric annotations as classes.)
"""
from clu import metrics
import flax
import optax


@flax.struct.dataclass
class Metrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  accuracy: metrics.Accuracy


def batch_metrics(logits, labels, mask=None) -> Metrics:
  """A batch's metrics; `mask` leaves out the padding of an evaluation batch."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return Metrics.single_from_model_output(loss=loss, logits=logits, labels=labels, mask=mask)
