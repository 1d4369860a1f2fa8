"""What a run measures: loss and accuracy as clu metrics (summed on the device during an epoch,
computed once at its end), and a registry of extra evaluation metrics found by name.

An extra metric is a function of a split's labels (N,) and class probabilities (N, 10) that returns
a float; `@register('name')` adds it, and `config.metrics = ('name',)` computes it on validation
after every epoch (history, TensorBoard) and on test for the best and the final weights
(results.json: `validation_<name>`, `test_<name>`, `final_test_<name>`; seed means included).

(No `from __future__ import annotations` here: clu reads the metric annotations as classes.)
"""
from typing import Callable, Dict

from clu import metrics
import flax
import numpy as np
import optax


@flax.struct.dataclass
class Metrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  accuracy: metrics.Accuracy


def batch_metrics(logits, labels, mask=None) -> Metrics:
  """A batch's metrics; `mask` leaves out the padding of an evaluation batch."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return Metrics.single_from_model_output(loss=loss, logits=logits, labels=labels, mask=mask)


EVAL_METRICS: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}


def register(name: str):
  """Decorator: fn(labels, probs) -> float becomes the extra metric `name` (config.metrics)."""
  def decorate(fn):
    if name in EVAL_METRICS or name in ('loss', 'accuracy'):
      raise ValueError(f'metric {name!r} is registered already')
    EVAL_METRICS[name] = fn
    return fn
  return decorate


def evaluate(names, labels: np.ndarray, probs: np.ndarray) -> Dict[str, float]:
  """The extra metrics `names` of one split."""
  return {name: float(EVAL_METRICS[name](labels, probs)) for name in names}


@register('macro_f1')
def macro_f1(labels, probs) -> float:
  """The unweighted mean of the ten classes' F1 scores (scikit-learn)."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top  (1 s to import)
  return sk_metrics.f1_score(labels, probs.argmax(-1), average='macro')


@register('top2_accuracy')
def top2_accuracy(labels, probs) -> float:
  """How often the label is among the two most probable classes (scikit-learn)."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  return sk_metrics.top_k_accuracy_score(labels, probs, k=2, labels=np.arange(probs.shape[-1]))
