"""Evaluation of a model on a whole split held on the device, in fixed-size padded batches, and the
test report of a run's best variables."""

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fmnist_jax import augment
from fmnist_jax import input_pipeline
from fmnist_jax import metrics
from fmnist_jax import models
from fmnist_jax import parallel
from fmnist_jax import reporting
from fmnist_jax import results
from fmnist_jax import seeds


class Evaluator:
  """Holds one split on the device, padded to a multiple of the batch size, with a validity mask.

  The padded batches keep one compiled shape for every batch and every split size.
  """

  def __init__(self, model, images: np.ndarray, labels: np.ndarray, batch_size: int, mesh=None,
               extra_metrics: tuple[str, ...] = (), tta: str = ''):
    n = len(labels)
    self.model = model
    self.extra_metrics, self.host_labels = tuple(extra_metrics), np.asarray(labels)
    self.num_examples = n
    self.batch_size = min(batch_size, n)
    self.num_batches = -(-n // self.batch_size)
    pad = self.num_batches * self.batch_size - n
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
    self.mesh = parallel.create_mesh() if mesh is None else mesh
    self.images, self.labels, self.mask = parallel.replicate(
        (images, labels, np.arange(n + pad) < n), self.mesh)
    # Replicated logits: every process (host) can read them.
    self._logits = jax.jit(functools.partial(_logits, model, self.batch_size, self.mesh, tta),
                           out_shardings=parallel.replicated(self.mesh))

  def logits(self, variables: dict[str, Any], i: int) -> jax.Array:
    return self._logits(variables, self.images, np.int32(i))

  def run(self, variables: dict[str, Any]) -> tuple[dict[str, float], np.ndarray]:
    """Mean loss and accuracy over the split (and the extra metrics, `metrics.EVAL_METRICS`), and
    the class probabilities (N, 10) in its order."""
    total, probs = None, []
    for i in range(self.num_batches):
      sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
      logits = self.logits(variables, i)
      m = metrics.batch_metrics(logits, self.labels[sl], self.mask[sl])
      total = m if total is None else total.merge(m)
      probs.append(jax.nn.softmax(logits))
    probs = np.asarray(jnp.concatenate(probs))[:self.num_examples]
    out = {k: float(v) for k, v in total.compute().items()}
    out.update(metrics.evaluate(self.extra_metrics, self.host_labels, probs))
    return out, probs

  def __call__(self, variables: dict[str, Any]) -> dict[str, float]:
    return self.run(variables)[0]


def _logits(model, batch_size, mesh, tta, variables, images, i):
  """A batch's logits; with test-time augmentation the log of its views' mean probabilities (so
  the softmax, the accuracy and the loss are those of the averaged prediction)."""
  batch = jax.lax.dynamic_slice_in_dim(images, i * batch_size, batch_size)
  batch = parallel.shard_batch(batch, mesh)
  apply = lambda x: model.apply(variables, input_pipeline.normalize(x), train=False).astype(
      jnp.float32)
  if not tta:
    return apply(batch)
  views = augment.tta_views(batch, tta)
  log_probs = jnp.stack([jax.nn.log_softmax(apply(x)) for x in views])
  return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(len(views))  # log of the mean, stably


def report_on_test(tester: Evaluator, variables, test: dict[str, np.ndarray], workdir: str,
                   history, writer=None, step: int = 0) -> dict[str, float]:
  """Evaluates on the test split (`tester` holds it) and writes the report files; accuracy from
  the predictions."""
  metrics_, probs = tester.run(variables)
  if jax.process_index() != 0:  # several hosts: process 0 writes the files.
    return {**metrics_, 'accuracy': float(np.mean(probs.argmax(1) == test['label']))}
  report = reporting.write_all(workdir, test, probs, metrics_['loss'], history,
                               models.summary(tester.model), writer=writer, step=step)
  return {**metrics_, 'accuracy': report['accuracy']}


def test_seeds(tester: Evaluator | None, test, *, workdir: str, history, best, final, writer,
               selection, run_seeds: list[int], last_step: int) -> list[dict[str, Any]]:
  """Each seed's results.json figures: its best variables on the test split (its report files:
  the workdir for one seed, workdir/seed_<s>/ for several) and its final variables (the reports'
  protocol; selects nothing). Without a tester (test_split='', sweep trials) test is never read."""
  per_seed = []
  for k, seed in enumerate(run_seeds):
    own_history = seeds.history(history, k)
    if tester is None:
      per_seed.append(results.seed_results(own_history, {'accuracy': None, 'loss': None}, seed,
                                           selection=selection))
      continue
    report_dir = workdir if len(run_seeds) == 1 else os.path.join(workdir, f'seed_{seed}')
    os.makedirs(report_dir, exist_ok=True)
    test_metrics = report_on_test(tester, seeds.take(best, k), test, report_dir, own_history,
                                  writer if len(run_seeds) == 1 else None, last_step)
    per_seed.append(results.seed_results(own_history, test_metrics, seed,
                                         tester(seeds.take(final, k)), selection))
  return per_seed
