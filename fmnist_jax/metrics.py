"""What a run measures: loss and accuracy as clu metrics (summed on the device during an epoch,
computed once at its end), and a registry of extra evaluation metrics found by name.

An extra metric is a function of a split's labels (N,) and class probabilities (N, 10) that returns
a float; `@register('name')` adds it, and `config.metrics = ('name',)` computes it on validation
after every epoch (history, TensorBoard) and on test for the best and the final weights
(results.json: `validation_<name>`, `test_<name>`, `final_test_<name>`; seed means included).

(No `from __future__ import annotations` here: clu reads the metric annotations as classes.)
"""
import dataclasses
from typing import Any, Callable, Dict, Sequence

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
HIGHER_IS_BETTER: Dict[str, bool] = {'accuracy': True, 'loss': False}


def register(name: str, higher_is_better: bool = True):
  """Decorator: fn(labels, probs) -> float becomes the extra metric `name` (config.metrics);
  `higher_is_better` is its direction when it selects the best epoch (config.best_by)."""
  def decorate(fn):
    if name in EVAL_METRICS or name in HIGHER_IS_BETTER:
      raise ValueError(f'metric {name!r} is registered already')
    EVAL_METRICS[name] = fn
    HIGHER_IS_BETTER[name] = higher_is_better
    return fn
  return decorate


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which validation metric picks the best epoch (config.best_by), and its direction.

  Every consumer of "best" asks this one object: the best epoch of results.json, orbax's
  best-checkpoint keeping, a sweep's early stopping and winner.
  """
  name: str = 'accuracy'
  higher_is_better: bool = True

  @property
  def key(self) -> str:
    """The history and results.json key: selection reads validation only."""
    return f'validation_{self.name}'

  @property
  def mode(self) -> str:
    return 'max' if self.higher_is_better else 'min'

  @property
  def worst(self) -> float:
    return -np.inf if self.higher_is_better else np.inf

  def better(self, new: float, old: float) -> bool:
    """Strictly better (ties keep the earlier epoch)."""
    return new > old if self.higher_is_better else new < old

  def best_index(self, values: Sequence[float]) -> int:
    """The index of the best value, the earliest among equals."""
    best = 0
    for i, v in enumerate(values):
      if self.better(v, values[best]):
        best = i
    return best

  def best_values(self, histories) -> list:
    """Each seed's best value so far, from its own history (`worst` before any epoch)."""
    out = []
    for history in histories:
      values = [h[self.key] for h in history if self.key in h]
      out.append(values[self.best_index(values)] if values else self.worst)
    return out

  def update(self, val_metrics, best_so_far):
    """(improved, best values): which seeds' new validation metrics beat their best so far."""
    improved = [self.better(m[self.name], b) for m, b in zip(val_metrics, best_so_far)]
    return np.array(improved), [m[self.name] if up else b
                                for m, b, up in zip(val_metrics, best_so_far, improved)]

  def as_json(self) -> Dict[str, str]:
    return {'metric': self.key, 'mode': self.mode}


def selection(name: str = 'accuracy') -> Selection:
  """The selection by validation metric `name` ('accuracy', 'loss' or a registered metric)."""
  return Selection(name, HIGHER_IS_BETTER[name])


def selection_of(results: Dict[str, Any]) -> Selection:
  """The selection a results.json (or record) was made with; older ones chose by accuracy."""
  chosen = results.get('selection') or {'metric': 'validation_accuracy', 'mode': 'max'}
  return Selection(chosen['metric'][len('validation_'):], chosen['mode'] == 'max')


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
