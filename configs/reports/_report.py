"""Shared helper of the report configs: the default config plus the report's own fields."""
import ml_collections

from configs import default


def report_config(*, file: str, title: str, row: str, model: str, reported: float | None,
                  note: str = '', seeds: int = 3, params: int | None = None,
                  selected_on_test: str = 'no', protocol: str | None = None,
                  **fields) -> ml_collections.ConfigDict:
  """`reported` is the report's test accuracy for this row (None where it gives none).

  `seeds`: how many seeds experiments/reproduce_tables.py trains for the row by default (5 where a
  seed costs under about 10 minutes on a 2-core CPU, 3 otherwise). `params`: the report's own
  parameter count, where it gives one. `selected_on_test`: whether the report chose its epoch,
  model or hyperparameters on the test set (which inflates its figure), and how we know.
  `protocol`: which weights the report's figure comes from; all five reports trained a fixed
  number of epochs and tested the final weights (Keras: fit, then evaluate; the PyTorch report: its
  training loop, then its test loop, no checkpoint chosen), the default.

  Unless a report says otherwise: Keras/PyTorch Adam without a schedule (constant rate), the
  default 90/10 split of train (the reports that validated on test did so; we never do).
  """
  config = default.get_config()
  config.model = model
  config.schedule = 'constant'
  augment = fields.pop('augment', {})
  config.update(fields)
  config.augment.update(augment)
  config.report = ml_collections.ConfigDict({
      'file': file, 'title': title, 'row': row,
      'reported_test_accuracy': -1.0 if reported is None else reported, 'note': note,
      'num_seeds': seeds, 'num_params': -1 if params is None else params,
      'selected_on_test': selected_on_test,
      'protocol': protocol or (f'final weights after {config.num_epochs} epochs'
                               + (' (fit, then evaluate)' if file.startswith('keras')
                                  else ' (train loop, then test loop)'))})
  return config
